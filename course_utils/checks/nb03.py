"""Exercises of notebook 03 (registered on import): causal averaging, the causal softmax, the Head class."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..attention import Head
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
        Case("x of shape (2, 4, 3)", (torch.randn(2, 4, 3, generator=g),)),
        Case("x of shape (1, 6, 2), float64", (torch.randn(1, 6, 2, generator=g, dtype=torch.float64),)),
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
        title="Average each token with the tokens before it, with one matrix product",
        reference=causal_average,
        cases=_average_cases,
        mistakes=[
            Mistake("no mask", "every position got the average of the WHOLE sequence: token t may only see tokens 0..t (use torch.tril)",
                    _avg_everything),
            Mistake("not normalised", "you summed the past tokens instead of averaging them: divide each row of the tril matrix by its row sum",
                    _avg_sum_only),
            Mistake("divided by T", "you divided every row by T; row t averages t + 1 tokens, so divide by the row sums (weights.sum(dim=1, keepdim=True))",
                    _avg_divide_by_T),
            Mistake("upper triangle", "your weights average the FUTURE (tokens t..T-1): use the lower triangle torch.tril, not torch.triu",
                    _avg_future),
            Mistake("column sums", "you divided each column by its sum (dim=0); row t must average tokens 0..t, so divide "
                    "each ROW by its sum: weights.sum(dim=1, keepdim=True)", _avg_column_sums),
            Mistake("float32 weights", "your (T, T) weights are float32 while x is float64: build them with "
                    "torch.ones(T, T, dtype=x.dtype, device=x.device)", _avg_float32_weights),
        ],
        minutes=5,
        difficulty=1,
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
        Case("scores of shape (2, 4, 4)", (torch.randn(2, 4, 4, generator=g) * 2,)),
        Case("scores of shape (1, 5, 5), float64", (torch.randn(1, 5, 5, generator=g, dtype=torch.float64) * 3,)),
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


def _sm_no_mask(scores):
    return F.softmax(scores, dim=-1)


register(
    Exercise(
        id="03.causal_softmax",
        title="Turn raw scores into causal attention weights",
        reference=causal_softmax,
        cases=_softmax_cases,
        mistakes=[
            Mistake("0 instead of -inf", "you filled the future with 0, but exp(0) = 1: the future still gets weight. Fill with float('-inf')",
                    _sm_zero),
            Mistake("masked after the softmax", "you masked AFTER the softmax: the rows no longer sum to 1. Mask the scores first, then softmax",
                    _sm_after),
            Mistake("softmax over the wrong axis", "your softmax normalised over the queries (dim=-2); each query's weights over the keys must sum to 1: dim=-1",
                    _sm_wrong_axis),
            Mistake("diagonal masked", "you also masked the diagonal (triu(0)), so token t cannot see itself and row 0 is all -inf (NaN): mask only above it, triu(1) / tril == 0",
                    _sm_diagonal),
            Mistake("no mask", "nothing is masked: token t must not see tokens after it", _sm_no_mask),
            Mistake("past masked", "you put -inf where tril is True, i.e. on the past and the diagonal, so the future is what "
                    "stays visible (and the last row is all -inf: NaN): block where tril == 0 (the future), e.g. "
                    "scores.masked_fill(tril == 0, float('-inf'))", _sm_past_masked),
        ],
        minutes=8,
        difficulty=2,
    )
)

# --------------------------------------------------------------------------- 03.head


def _observe_head(cls, case):
    n_embd, head_size, block_size, x = case.args
    torch.manual_seed(0)
    reference = Head(n_embd, head_size, block_size)
    head = cls(n_embd, head_size, block_size)
    with torch.no_grad():  # the same weights whatever order the layers were created in
        for name in ("key", "query", "value"):
            getattr(head, name).weight.copy_(getattr(reference, name).weight)
    head.eval()
    out = head(x)
    return {
        "output": out.detach(),
        "buffers in the state_dict": sorted(name for name, _ in head.named_buffers()),
        "number of parameters": sum(p.numel() for p in head.parameters()),
    }


def _head_cases():
    g = torch.Generator().manual_seed(7)
    return [
        Case("n_embd=16, head_size=4, block_size=8, x of shape (2, 8, 16)", (16, 4, 8, torch.randn(2, 8, 16, generator=g))),
        Case("n_embd=12, head_size=3, block_size=8, a shorter x of shape (3, 5, 12)", (12, 3, 8, torch.randn(3, 5, 12, generator=g))),
    ]


class _HeadBase(nn.Module):
    """The planted mistakes share Karpathy's layout and differ in one line of forward."""

    scale_by = "head_size"
    fill = float("-inf")
    softmax_dim = -1
    mask_after = False
    slice_tril = True
    keys_times_queries = False

    def __init__(self, n_embd, head_size, block_size, dropout=0.0):
        super().__init__()
        self.key = nn.Linear(n_embd, head_size, bias=False)
        self.query = nn.Linear(n_embd, head_size, bias=False)
        self.value = nn.Linear(n_embd, head_size, bias=False)
        self.register_buffer("tril", torch.tril(torch.ones(block_size, block_size)))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        B, T, C = x.shape
        k, q, v = self.key(x), self.query(x), self.value(x)
        scale = {"head_size": k.shape[-1] ** -0.5, "C": C**-0.5, "none": 1.0}[self.scale_by]
        wei = (k @ q.transpose(-2, -1) if self.keys_times_queries else q @ k.transpose(-2, -1)) * scale
        tril = self.tril[:T, :T] if self.slice_tril else self.tril
        if self.mask_after:
            wei = F.softmax(wei, dim=self.softmax_dim).masked_fill(tril == 0, 0.0)
        else:
            wei = F.softmax(wei.masked_fill(tril == 0, self.fill), dim=self.softmax_dim)
        return self.dropout(wei) @ v


class _HeadScaledByC(_HeadBase):
    scale_by = "C"


class _HeadNotScaled(_HeadBase):
    scale_by = "none"


class _HeadZeroFill(_HeadBase):
    fill = 0.0


class _HeadMaskAfter(_HeadBase):
    mask_after = True


class _HeadWrongAxis(_HeadBase):
    softmax_dim = 1


class _HeadTrilUnsliced(_HeadBase):
    slice_tril = False


class _HeadKeysTimesQueries(_HeadBase):
    keys_times_queries = True


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
        title="The causal self-attention Head class",
        reference=Head,
        cases=_head_cases,
        observe=_observe_head,
        mistakes=[
            Mistake("scaled by C", "you scaled by C (n_embd) instead of head_size: the dot product q·k sums head_size terms, so scale by head_size ** -0.5",
                    _HeadScaledByC),
            Mistake("not scaled", "the scores are not scaled: multiply q @ k^T by head_size ** -0.5", _HeadNotScaled),
            Mistake("0 instead of -inf", "you filled the future with 0, but exp(0) = 1: fill with float('-inf')", _HeadZeroFill),
            Mistake("masked after the softmax", "you masked AFTER the softmax, so rows no longer sum to 1: mask the scores, then softmax",
                    _HeadMaskAfter),
            Mistake("softmax over the wrong axis", "your softmax runs over the queries (dim=1); normalise over the keys, dim=-1",
                    _HeadWrongAxis),
            Mistake("k @ q^T", "your scores are k @ q^T, the transpose of q @ k^T: row t must hold query t's scores for every "
                    "key, so compute q @ k.transpose(-2, -1)", _HeadKeysTimesQueries),
            Mistake("tril not sliced", "for a sequence shorter than block_size, slice the mask to the sequence: self.tril[:T, :T]",
                    _HeadTrilUnsliced),
            Mistake("tril as a plain attribute", "`tril` is a plain attribute: register it with self.register_buffer('tril', ...) so it "
                    "follows .to(device) and is saved in the state_dict", _HeadTrilAttribute),
            Mistake("tril as a parameter", "`tril` is an nn.Parameter, so the optimizer would train it: register it as a buffer instead",
                    _HeadTrilParameter),
        ],
        minutes=15,
        difficulty=3,
    )
)
