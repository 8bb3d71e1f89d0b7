"""Exercises of notebook 03 (registered on import): causal averaging, the causal softmax, the Head class."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..attention import Head
from ..i18n import N_
from .core import Case, Exercise, Mistake, register

# --------------------------------------------------------------------------- 03.causal_average


def causal_average(x: torch.Tensor) -> torch.Tensor:
    """Reference for 03.causal_average: out[b, t] = mean of x[b, 0..t], with one matrix product.

    Shape:
        - x: :math:`(B, T, C)`; output: the same shape.
    """
    T = x.shape[1]
    weights = torch.tril(torch.ones(T, T, dtype=x.dtype, device=x.device))  # (T, T)
    weights = weights / weights.sum(dim=1, keepdim=True)  # (T, T), each row sums to 1
    return weights @ x  # (T, T) @ (B, T, C) -> (B, T, C)


def _average_cases():
    g = torch.Generator().manual_seed(3)
    return [
        Case(N_("x of shape (2, 4, 3)"), (torch.randn(2, 4, 3, generator=g),)),
        Case(N_("x of shape (1, 6, 2), float64"), (torch.randn(1, 6, 2, generator=g, dtype=torch.float64),)),
    ]


def _avg_everything(x):
    return x.mean(dim=1, keepdim=True).expand_as(x)


def _avg_sum_only(x):
    T = x.shape[1]
    return torch.tril(torch.ones(T, T, dtype=x.dtype)) @ x


def _avg_divide_by_T(x):
    T = x.shape[1]
    return torch.tril(torch.ones(T, T, dtype=x.dtype)) @ x / T


def _avg_future(x):
    T = x.shape[1]
    w = torch.triu(torch.ones(T, T, dtype=x.dtype))
    return (w / w.sum(dim=1, keepdim=True)) @ x


def _avg_float32_weights(x):
    T = x.shape[1]
    w = torch.tril(torch.ones(T, T))  # float32, whatever x's dtype
    return (w / w.sum(dim=1, keepdim=True)) @ x


def _avg_column_sums(x):
    T = x.shape[1]
    w = torch.tril(torch.ones(T, T, dtype=x.dtype))
    return (w / w.sum(dim=0, keepdim=True)) @ x


register(
    Exercise(
        id="03.causal_average",
        title=N_("Average each token with the tokens before it, with one matrix product"),
        reference=causal_average,
        cases=_average_cases,
        mistakes=[
            Mistake("no mask", N_("every position got the average of the WHOLE sequence: token t may only see tokens 0..t (use torch.tril)"),
                    _avg_everything),
            Mistake("not normalised", N_("you summed the past tokens instead of averaging them: divide each row of the tril matrix by its row sum"),
                    _avg_sum_only),
            Mistake("divided by T", N_("you divided every row by T; row t averages t + 1 tokens, so divide by the row sums (weights.sum(dim=1, keepdim=True))"),
                    _avg_divide_by_T),
            Mistake("upper triangle", N_("your weights average the FUTURE (tokens t..T-1): use the lower triangle torch.tril, not torch.triu"),
                    _avg_future),
            Mistake("column sums", N_("you divided each column by its sum (dim=0); row t must average tokens 0..t, so divide "
                    "each ROW by its sum: weights.sum(dim=1, keepdim=True)"), _avg_column_sums),
            Mistake("float32 weights", N_("your (T, T) weights are float32 while x is float64: build them with "
                    "torch.ones(T, T, dtype=x.dtype, device=x.device)"), _avg_float32_weights),
        ],
        minutes=5,
        difficulty=1,
        vectorised=True,  # the prompt: one matrix product, no Python loop
    )
)

# --------------------------------------------------------------------------- 03.causal_softmax


def causal_softmax(scores: torch.Tensor) -> torch.Tensor:
    """Reference for 03.causal_softmax: block the future with -inf, then softmax over the keys.

    Shape:
        - scores: :math:`(B, T, T)` (queries down, keys across); output: the same shape.
    """
    T = scores.shape[-1]
    future = torch.ones(T, T, dtype=torch.bool, device=scores.device).triu(1)  # (T, T), True above the diagonal
    scores = scores.masked_fill(future, float("-inf"))  # (B, T, T)
    return F.softmax(scores, dim=-1)  # (B, T, T), each row sums to 1


def _softmax_cases():
    g = torch.Generator().manual_seed(5)
    return [
        Case(N_("scores of shape (2, 4, 4)"), (torch.randn(2, 4, 4, generator=g) * 2,)),
        Case(N_("scores of shape (1, 5, 5), float64"), (torch.randn(1, 5, 5, generator=g, dtype=torch.float64) * 3,)),
        Case(N_("scores of shape (2, 3, 3), float16"), ((torch.randn(2, 3, 3, generator=g) * 2).half(),)),
    ]


def _future(T):
    return torch.ones(T, T, dtype=torch.bool).triu(1)


def _sm_zero(scores):
    return F.softmax(scores.masked_fill(_future(scores.shape[-1]), 0.0), dim=-1)


def _sm_after(scores):
    return F.softmax(scores, dim=-1).masked_fill(_future(scores.shape[-1]), 0.0)


def _sm_wrong_axis(scores):
    return F.softmax(scores.masked_fill(_future(scores.shape[-1]), float("-inf")), dim=-2)


def _sm_diagonal(scores):
    T = scores.shape[-1]
    return F.softmax(scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(0), float("-inf")), dim=-1)


def _sm_past_masked(scores):
    T = scores.shape[-1]
    return F.softmax(scores.masked_fill(torch.ones(T, T, dtype=torch.bool).tril(), float("-inf")), dim=-1)


def _sm_minus_1e9(scores):
    return F.softmax(scores.masked_fill(_future(scores.shape[-1]), -1e9), dim=-1)


def _sm_no_mask(scores):
    return F.softmax(scores, dim=-1)


register(
    Exercise(
        id="03.causal_softmax",
        title=N_("Turn raw scores into causal attention weights"),
        reference=causal_softmax,
        cases=_softmax_cases,
        mistakes=[
            Mistake("0 instead of -inf", N_("you filled the future with 0, but exp(0) = 1: the future still gets weight. Fill with float('-inf')"),
                    _sm_zero),
            Mistake("masked after the softmax", N_("you masked AFTER the softmax: the rows no longer sum to 1. Mask the scores first, then softmax"),
                    _sm_after),
            Mistake("softmax over the wrong axis", N_("your softmax normalised over the queries (dim=-2); each query's weights over the keys must sum to 1: dim=-1"),
                    _sm_wrong_axis),
            Mistake("diagonal masked", N_("you also masked the diagonal (triu(0)), so token t cannot see itself and row 0 is all -inf (NaN): mask only above it, triu(1) / tril == 0"),
                    _sm_diagonal),
            Mistake("no mask", N_("nothing is masked: token t must not see tokens after it"), _sm_no_mask),
            Mistake("-1e9 instead of -inf", N_("you filled the future with -1e9, which a float16 tensor cannot hold: masked_fill "
                    "refuses the value. Fill with float('-inf'), which every floating dtype has"), _sm_minus_1e9),
            Mistake("past masked", N_("you put -inf where tril is True, i.e. on the past and the diagonal, so the future is what "
                    "stays visible (and the last row is all -inf: NaN): block where tril == 0 (the future), e.g. "
                    "scores.masked_fill(tril == 0, float('-inf'))"), _sm_past_masked),
        ],
        minutes=8,
        difficulty=2,
    )
)

# --------------------------------------------------------------------------- 03.head

HEAD_DROPOUT = 0.25  # the p the check builds every head with
HEAD_TRAIN_SEED = 1  # torch.manual_seed before the training-mode forward pass
# What the check compares, and what messages call it (with the two numbers above).
_TRAINING_OUTPUT = N_("output in training mode (dropout=0.25, torch.manual_seed(1))")
assert _TRAINING_OUTPUT == f"output in training mode (dropout={HEAD_DROPOUT}, torch.manual_seed({HEAD_TRAIN_SEED}))"


def _observe_head(cls, case):
    n_embd, head_size, block_size, x = case.args
    with torch.random.fork_rng(devices=[]):  # the seeds below never leak into the learner's RNG
        torch.manual_seed(0)
        reference = Head(n_embd, head_size, block_size)
        head = cls(n_embd, head_size, block_size, HEAD_DROPOUT)
        with torch.no_grad():  # the same weights whatever order the layers were created in
            for name in ("key", "query", "value"):
                getattr(head, name).weight.copy_(getattr(reference, name).weight)
        head.eval()
        out_eval = head(x)
        head.train()
        torch.manual_seed(HEAD_TRAIN_SEED)
        out_train = head(x)
    return {  # what the module holds first: an extra parameter is the cause, different outputs the symptom
        N_("parameters"): sorted(name for name, _parameter in head.named_parameters()),
        N_("number of parameters"): sum(p.numel() for p in head.parameters()),
        N_("buffers"): sorted(name for name, _buffer in head.named_buffers()),
        N_("output in eval mode"): out_eval,
        _TRAINING_OUTPUT: out_train,
    }


def _head_cases():
    # n_embd, head_size and their square roots all differ, so every scaling mistake is its own
    g = torch.Generator().manual_seed(7)
    return [
        Case(N_("n_embd=12, head_size=3, block_size=8, x of shape (2, 8, 12)"), (12, 3, 8, torch.randn(2, 8, 12, generator=g))),
        Case(N_("n_embd=20, head_size=5, block_size=8, a shorter x of shape (3, 5, 20)"), (20, 5, 8, torch.randn(3, 5, 20, generator=g))),
    ]


class _HeadBase(nn.Module):
    """The planted mistakes share Karpathy's layout and differ in one line of forward."""

    scale = "head_size ** -0.5"
    fill = float("-inf")
    softmax_dim = -1
    mask_after = False
    slice_tril = True
    keys_times_queries = False
    dropout_on = "weights"
    inverted_mask = False

    def __init__(self, n_embd, head_size, block_size, dropout=0.0):
        super().__init__()
        self.key = nn.Linear(n_embd, head_size, bias=False)
        self.query = nn.Linear(n_embd, head_size, bias=False)
        self.value = nn.Linear(n_embd, head_size, bias=False)
        self.register_buffer("tril", torch.tril(torch.ones(block_size, block_size)))
        self.dropout = nn.Dropout(dropout)

    def _drop(self, where, t):
        return self.dropout(t) if self.dropout_on == where else t

    def forward(self, x):
        B, T, C = x.shape
        k, q, v = self.key(x), self.query(x), self.value(x)
        hs = k.shape[-1]
        scores = k @ q.transpose(-2, -1) if self.keys_times_queries else q @ k.transpose(-2, -1)
        scores = {
            "head_size ** -0.5": lambda s: s * hs**-0.5,
            "C ** -0.5": lambda s: s * C**-0.5,
            "/ head_size": lambda s: s / hs,
            "/ C ** -0.5": lambda s: s / C**-0.5,
            "/ head_size ** -0.5": lambda s: s / hs**-0.5,
            "none": lambda s: s,
        }[self.scale](scores)
        scores = self._drop("raw scores", scores)
        tril = self.tril[:T, :T] if self.slice_tril else self.tril
        future = tril != 0 if self.inverted_mask else tril == 0  # (T, T): True where a query may not look
        if self.mask_after:
            wei = F.softmax(scores, dim=self.softmax_dim).masked_fill(future, 0.0)
        else:
            scores = self._drop("masked scores", scores.masked_fill(future, self.fill))
            wei = F.softmax(scores, dim=self.softmax_dim)
        return self._drop("output", self._drop("weights", wei) @ v)


def _head_variant(**changes):
    return type("PlantedHead", (_HeadBase,), changes)


class _HeadNoSuper(_HeadBase):
    def __init__(self, n_embd, head_size, block_size, dropout=0.0):  # super().__init__() forgotten
        self.key = nn.Linear(n_embd, head_size, bias=False)
        self.query = nn.Linear(n_embd, head_size, bias=False)
        self.value = nn.Linear(n_embd, head_size, bias=False)
        self.register_buffer("tril", torch.tril(torch.ones(block_size, block_size)))
        self.dropout = nn.Dropout(dropout)


class _HeadTrilAttribute(_HeadBase):
    def __init__(self, n_embd, head_size, block_size, dropout=0.0):
        super().__init__(n_embd, head_size, block_size, dropout)
        del self.tril
        self.tril = torch.tril(torch.ones(block_size, block_size))  # a plain attribute: not a buffer


class _HeadTrilParameter(_HeadBase):
    def __init__(self, n_embd, head_size, block_size, dropout=0.0):
        super().__init__(n_embd, head_size, block_size, dropout)
        del self.tril
        self.tril = nn.Parameter(torch.tril(torch.ones(block_size, block_size)))


register(
    Exercise(
        id="03.head",
        title=N_("The causal self-attention Head class"),
        reference=Head,
        cases=_head_cases,
        observe=_observe_head,
        mistakes=[
            Mistake("scaled by C", N_("you scaled by C ** -0.5 (C = n_embd); the dot product q·k sums head_size terms, so scale "
                    "by head_size ** -0.5"), _head_variant(scale="C ** -0.5")),
            Mistake("divided by head_size", N_("you divided the scores by head_size; scale by head_size ** -0.5, i.e. divide by "
                    "the SQUARE ROOT of head_size"), _head_variant(scale="/ head_size")),
            Mistake("divided by C ** -0.5", N_("you divided by C ** -0.5, which multiplies the scores by sqrt(C): larger scores, "
                    "not smaller. MULTIPLY by the factor, and use head_size, not C: q @ k^T * head_size ** -0.5"),
                    _head_variant(scale="/ C ** -0.5")),
            Mistake("divided by head_size ** -0.5", N_("you divided by head_size ** -0.5, which multiplies the scores by "
                    "sqrt(head_size): MULTIPLY by head_size ** -0.5 instead"), _head_variant(scale="/ head_size ** -0.5")),
            Mistake("not scaled", N_("the scores are not scaled: multiply q @ k^T by head_size ** -0.5"), _head_variant(scale="none")),
            Mistake("0 instead of -inf", N_("you filled the future with 0, but exp(0) = 1: fill with float('-inf')"),
                    _head_variant(fill=0.0)),
            Mistake("masked after the softmax", N_("you masked AFTER the softmax, so rows no longer sum to 1: mask the scores, then softmax"),
                    _head_variant(mask_after=True)),
            Mistake("softmax over the wrong axis", N_("your softmax runs over the queries (dim=1, i.e. dim=-2); normalise over the keys, dim=-1"),
                    _head_variant(softmax_dim=1)),
            Mistake("k @ q^T", N_("your scores are k @ q^T, the transpose of q @ k^T: row t must hold query t's scores for every "
                    "key, so compute q @ k.transpose(-2, -1)"), _head_variant(keys_times_queries=True)),
            Mistake("inverted mask", N_("your mask is inverted: you blocked where tril is 1 (the past and the token itself) and "
                    "left the future open, so the last row has nothing left to look at (NaN); fill with -inf where tril == 0"),
                    _head_variant(inverted_mask=True)),
            Mistake("no super().__init__()", N_("call super().__init__() first thing in __init__: it creates the dictionaries "
                    "(_parameters, _modules, _buffers) that self.key = nn.Linear(...) and register_buffer write into"), _HeadNoSuper),
            Mistake("tril not sliced", N_("for a sequence shorter than block_size, slice the mask to the sequence: self.tril[:T, :T]"),
                    _head_variant(slice_tril=False)),
            Mistake("tril as a plain attribute", N_("`tril` is a plain attribute: register it with self.register_buffer('tril', ...) so it "
                    "follows .to(device) and is saved in the state_dict"), _HeadTrilAttribute),
            Mistake("tril as a parameter", N_("`tril` is an nn.Parameter, so the optimizer would train it: register it as a buffer instead"),
                    _HeadTrilParameter),
            Mistake("dropout on the raw scores", N_("in training mode your head applies dropout to the scores before the mask and "
                    "the softmax; dropout belongs on the WEIGHTS, after the softmax: wei = self.dropout(F.softmax(...))"),
                    _head_variant(dropout_on="raw scores")),
            Mistake("dropout on the masked scores", N_("in training mode your head applies dropout to the masked scores, before the "
                    "softmax: dropout multiplies some -inf by 0, which is NaN. Dropout belongs on the WEIGHTS, after the softmax"),
                    _head_variant(dropout_on="masked scores")),
            Mistake("dropout on the output", N_("in training mode your head applies dropout to the output (wei @ v); dropout "
                    "belongs on the WEIGHTS, after the softmax and before the product with v"), _head_variant(dropout_on="output")),
            Mistake("no dropout", N_("in training mode your head never applies dropout: build self.dropout = nn.Dropout(dropout) and "
                    "apply it to the weights after the softmax"), _head_variant(dropout_on="none")),
        ],
        minutes=15,
        difficulty=3,
    )
)
