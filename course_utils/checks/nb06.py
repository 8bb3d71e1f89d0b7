"""Exercises of notebook 06: the Dense Synthesizer (registered on import)."""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from ..i18n import N_
from .core import Case, Exercise, Mistake, register

# ------------------------------------------------------------------ shared helpers


def _fill(model: nn.Module, seed: int, first: tuple[str, ...] = ()) -> None:
    """Give every parameter (and the tensors named in ``first``) seeded values, by sorted name."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in first:
            t = getattr(model, name)
            t.copy_(torch.randn(t.shape, generator=g))
        for _, p in sorted(model.named_parameters()):
            if any(p is getattr(model, n, None) for n in first):
                continue
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)


def _future(L: int) -> torch.Tensor:
    return torch.ones(L, L, dtype=torch.bool).triu(1)  # (L, L): True above the diagonal


# ------------------------------------------------------------------ 06.dense_head


class DenseSynthesizerHead(nn.Module):
    """One Dense Synthesizer head, as the paper writes it (reference for exercise 06.dense_head).

    ``linear1``: d -> d, ReLU, ``linear2``: d -> max_len (the logits of each token, truncated
    to the length L), softmax over the keys, then the weights mix ``value(x)``.

    Shape:
        - x: (N, L, d) with L <= max_len; output: (N, L, d); weights: (N, L, L).
    """

    def __init__(self, d_model: int, max_len: int):
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_model)
        self.linear2 = nn.Linear(d_model, max_len)
        self.value = nn.Linear(d_model, d_model)

    def forward(self, x, causal=False):
        L = x.shape[1]
        logits = self.linear2(torch.relu(self.linear1(x)))[..., :L]  # (N, L, L)
        if causal:
            logits = logits.masked_fill(_future(L).to(x.device), float("-inf"))  # (N, L, L)
        weights = torch.softmax(logits, dim=-1)  # (N, L, L)
        return weights @ self.value(x), weights  # (N, L, d), (N, L, L)


def _dense_cases():
    return [
        Case(N_("d_model=8, max_len=6, N=2 sequences of length 6"), (8, 6, (2, 6), False)),
        Case(N_("d_model=8, max_len=6, N=3 sequences of length 4, causal=True"), (8, 6, (3, 4), True)),
        Case(N_("d_model=4, max_len=5, N=1 sequence of length 5, causal=True"), (4, 5, (1, 5), True)),
    ]


def _observe_dense(cls, case):
    d, max_len, (N, L), causal = case.args
    torch.manual_seed(0)
    model = cls(d, max_len)
    _fill(model, seed=1)
    x = torch.randn(N, L, d, generator=torch.Generator().manual_seed(2))  # (N, L, d)
    out, weights = model(x, causal=causal) if causal else model(x)
    return {N_("number of parameters"): sum(p.numel() for p in model.parameters()), N_("weights"): weights, N_("output"): out}


class _ForumHiddenWidth(DenseSynthesizerHead):
    def __init__(self, d_model, max_len):
        nn.Module.__init__(self)
        self.linear1 = nn.Linear(d_model, max_len)  # d -> l (the forum's width)
        self.linear2 = nn.Linear(max_len, max_len)  # l -> l
        self.value = nn.Linear(d_model, d_model)


class _SoftmaxNoDim(DenseSynthesizerHead):
    def forward(self, x, causal=False):
        L = x.shape[1]
        logits = self.linear2(torch.relu(self.linear1(x)))[..., :L]
        if causal:
            logits = logits.masked_fill(_future(L), float("-inf"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            weights = F.softmax(logits)  # implicit dim: 0 for a 3-D tensor, the batch axis
        return weights @ self.value(x), weights


class _SoftmaxOverQueries(DenseSynthesizerHead):
    def forward(self, x, causal=False):
        L = x.shape[1]
        logits = self.linear2(torch.relu(self.linear1(x)))[..., :L]
        if causal:
            logits = logits.masked_fill(_future(L), float("-inf"))
        weights = torch.softmax(logits, dim=1)  # (N, L, L) normalised down each column: over the queries
        return weights @ self.value(x), weights


class _CausalIgnored(DenseSynthesizerHead):
    def forward(self, x, causal=False):
        L = x.shape[1]
        weights = torch.softmax(self.linear2(torch.relu(self.linear1(x)))[..., :L], dim=-1)  # no mask, causal or not
        return weights @ self.value(x), weights


class _NoValueProjection(DenseSynthesizerHead):
    def __init__(self, d_model, max_len):
        nn.Module.__init__(self)
        self.linear1 = nn.Linear(d_model, d_model)
        self.linear2 = nn.Linear(d_model, max_len)

    def forward(self, x, causal=False):
        L = x.shape[1]
        logits = self.linear2(torch.relu(self.linear1(x)))[..., :L]
        if causal:
            logits = logits.masked_fill(_future(L), float("-inf"))
        weights = torch.softmax(logits, dim=-1)
        return weights @ x, weights


class _MaskZeroedAfterSoftmax(DenseSynthesizerHead):
    def forward(self, x, causal=False):
        L = x.shape[1]
        weights = torch.softmax(self.linear2(torch.relu(self.linear1(x)))[..., :L], dim=-1)
        if causal:
            weights = weights.masked_fill(_future(L), 0.0)
        return weights @ self.value(x), weights


class _MaskAddedAfterSoftmax(DenseSynthesizerHead):
    def forward(self, x, causal=False):
        L = x.shape[1]
        weights = torch.softmax(self.linear2(torch.relu(self.linear1(x)))[..., :L], dim=-1)
        if causal:
            weights = weights + torch.zeros(L, L).masked_fill(_future(L), float("-inf"))
        return weights @ self.value(x), weights


class _MaskWithZero(DenseSynthesizerHead):
    def forward(self, x, causal=False):
        L = x.shape[1]
        logits = self.linear2(torch.relu(self.linear1(x)))[..., :L]
        if causal:
            logits = logits.masked_fill(_future(L), 0.0)
        weights = torch.softmax(logits, dim=-1)
        return weights @ self.value(x), weights


class _NoTruncation(DenseSynthesizerHead):
    def forward(self, x, causal=False):
        L = x.shape[1]
        logits = self.linear2(torch.relu(self.linear1(x)))  # (N, L, max_len)
        if causal:
            logits = logits.masked_fill(_future(L), float("-inf"))
        weights = torch.softmax(logits, dim=-1)
        return weights @ self.value(x), weights


register(
    Exercise(
        id="06.dense_head",
        title=N_("A Dense Synthesizer head, as the paper writes it"),
        reference=DenseSynthesizerHead,
        cases=_dense_cases,
        observe=_observe_dense,
        mistakes=[
            Mistake("forum hidden width", N_("your MLP is d -> max_len -> max_len (the forum question's shapes); the paper's F is "
                    "d -> d -> max_len: linear1 = nn.Linear(d_model, d_model), linear2 = nn.Linear(d_model, max_len)"), _ForumHiddenWidth),
            Mistake("softmax over dim 0", N_("your softmax normalised over dim=0, the BATCH axis (written as dim=0, or by leaving `dim` "
                    "out: on a 3-D tensor PyTorch then picks dim=0); each query's row must sum to 1 over the keys, so use dim=-1"),
                    _SoftmaxNoDim),
            Mistake("softmax over the queries", N_("you took the softmax over dim=1, the forum question's bug: for the post's "
                    "unbatched (L, L) logits dim=1 is the keys, but on batched (N, L, L) logits it is the QUERY axis, so each "
                    "column sums to 1 instead of each row; normalise over the keys, the last axis: dim=-1"), _SoftmaxOverQueries),
            Mistake("values not projected", N_("you mixed x itself; the paper mixes G(x), a learned projection of the same x: "
                    "add self.value = nn.Linear(d_model, d_model) and use self.value(x)"), _NoValueProjection),
            Mistake("ignored the causal mask", N_("you ignored causal=True: query 0 sees the future (its weights on keys 1, 2, ... "
                    "are not 0); when causal, fill the logits above the diagonal (key j > query i) with -inf before the softmax"),
                    _CausalIgnored),
            Mistake("mask zeroed after softmax", N_("you zeroed the future AFTER the softmax, so the rows no longer sum to 1; "
                    "fill the logits with -inf BEFORE the softmax"), _MaskZeroedAfterSoftmax),
            Mistake("mask added after softmax", N_("you added the -inf mask AFTER the softmax, which puts -inf (and NaN) into the "
                    "output; add it to the logits BEFORE the softmax"), _MaskAddedAfterSoftmax),
            Mistake("masked with 0", N_("you set the future logits to 0, which still gives the future weight exp(0); use -inf"),
                    _MaskWithZero),
            Mistake("no truncation", N_("for sequences shorter than max_len keep only the first L logits of each row: [..., :L]"),
                    _NoTruncation),
        ],
        atol=1e-5,
        minutes=15,
        difficulty=2,
    )
)

# ------------------------------------------------------------------ 06.random_head


class RandomSynthesizerHead(nn.Module):
    """One Random Synthesizer head (reference for exercise 06.random_head).

    ``R`` (max_len x max_len) is a Parameter when ``trainable``, else a buffer (saved in the
    ``state_dict``, not returned by ``parameters()``). ``value``: a Linear(d, d).

    Shape:
        - x: (N, L, d) with L <= max_len; output: (N, L, d); weights: (L, L).
    """

    def __init__(self, d_model: int, max_len: int, trainable: bool = True):
        super().__init__()
        R = torch.randn(max_len, max_len)
        if trainable:
            self.R = nn.Parameter(R)
        else:
            self.register_buffer("R", R)
        self.value = nn.Linear(d_model, d_model)

    def forward(self, x):
        L = x.shape[1]
        weights = torch.softmax(self.R[:L, :L], dim=-1)  # (L, L): the same for every input
        return weights @ self.value(x), weights  # (N, L, d), (L, L)


def _random_cases():
    return [
        Case(N_("trainable, d_model=8, max_len=5, sequences of length 5"), (8, 5, True, (2, 5))),
        Case(N_("fixed (trainable=False), d_model=8, max_len=5, sequences of length 5"), (8, 5, False, (2, 5))),
        Case(N_("trainable, d_model=4, max_len=7, sequences of length 3"), (4, 7, True, (3, 3))),
    ]


def _observe_random(cls, case):
    d, max_len, trainable, (N, L) = case.args
    torch.manual_seed(0)
    model = cls(d, max_len, trainable)
    R = getattr(model, "R", None)
    facts = {
        N_("R is trained (in parameters())"): any(p is R for p in model.parameters()),
        N_("R is saved (in state_dict())"): "R" in model.state_dict(),
    }
    _fill(model, seed=1, first=("R",))
    x = torch.randn(N, L, d, generator=torch.Generator().manual_seed(2))  # (N, L, d)
    out, weights = model(x)
    return {**facts, N_("weights"): weights, N_("output"): out}


class _RandomNoSoftmax(RandomSynthesizerHead):
    def forward(self, x):
        L = x.shape[1]
        weights = self.R[:L, :L]
        return weights @ self.value(x), weights


class _FixedAsFrozenParameter(RandomSynthesizerHead):
    def __init__(self, d_model, max_len, trainable=True):
        nn.Module.__init__(self)
        self.R = nn.Parameter(torch.randn(max_len, max_len), requires_grad=trainable)
        self.value = nn.Linear(d_model, d_model)


class _PlainTensor(RandomSynthesizerHead):
    def __init__(self, d_model, max_len, trainable=True):
        nn.Module.__init__(self)
        self.R = torch.randn(max_len, max_len, requires_grad=trainable)
        self.value = nn.Linear(d_model, d_model)


class _RandomNoTruncation(RandomSynthesizerHead):
    def forward(self, x):
        weights = torch.softmax(self.R, dim=-1)
        return weights @ self.value(x), weights


class _RandomSoftmaxDim0(RandomSynthesizerHead):
    def forward(self, x):
        L = x.shape[1]
        weights = torch.softmax(self.R[:L, :L], dim=0)
        return weights @ self.value(x), weights


register(
    Exercise(
        id="06.random_head",
        title=N_("A Random Synthesizer head, trainable or fixed"),
        reference=RandomSynthesizerHead,
        cases=_random_cases,
        observe=_observe_random,
        mistakes=[
            Mistake("plain tensor", N_("R is a plain tensor attribute: it is neither trained nor saved in the state_dict; "
                    "use nn.Parameter (trainable) or self.register_buffer('R', ...) (fixed)"), _PlainTensor),
            Mistake("no softmax", N_("you used R itself as the weights; the weights are softmax(R) over the last dimension "
                    "(raw R rows do not sum to 1 and can be negative)"), _RandomNoSoftmax),
            Mistake("softmax over dim 0", N_("you took the softmax over dim 0 (the queries); each query's row must sum to 1: dim=-1"),
                    _RandomSoftmaxDim0),
            Mistake("frozen parameter", N_("for trainable=False you made R an nn.Parameter with requires_grad=False: it still "
                    "shows up in parameters() (and in parameter counts and optimizers); register it as a buffer instead"),
                    _FixedAsFrozenParameter),
            Mistake("no truncation", N_("for sequences shorter than max_len use the top-left corner R[:L, :L]"), _RandomNoTruncation),
        ],
        atol=1e-5,
        minutes=10,
        difficulty=2,
    )
)

# ------------------------------------------------------------------ 06.factorized_logits


def factorized_dense_logits(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """Compose the two factors of a Factorized Dense Synthesizer (reference for 06.factorized_logits).

    ``C[..., j] = A[..., j // b] * B[..., j % b]``: A repeated element-wise b times, B tiled a times.

    Shape:
        - A: :math:`(*, a)`; B: :math:`(*, b)`; output: :math:`(*, a b)`.
    """
    b = B.shape[-1]
    return A.repeat_interleave(b, dim=-1) * B.repeat(*([1] * (B.dim() - 1)), A.shape[-1])  # (*, a*b)


def _factor_cases():
    g = torch.Generator().manual_seed(0)
    return [
        Case(N_("a=3, b=4, one token"), (torch.randn(3, generator=g), torch.randn(4, generator=g))),
        Case(N_("a=4, b=4, shape (2, 5, .)"), (torch.randn(2, 5, 4, generator=g), torch.randn(2, 5, 4, generator=g))),
        Case(N_("a=2, b=6, shape (3, .)"), (torch.randn(3, 2, generator=g), torch.randn(3, 6, generator=g))),
    ]


def _tile(t, n):
    return t.repeat(*([1] * (t.dim() - 1)), n)


register(
    Exercise(
        id="06.factorized_logits",
        title=N_("Factorized Dense: compose A (a values) and B (b values) into a*b logits"),
        reference=factorized_dense_logits,
        cases=_factor_cases,
        mistakes=[
            Mistake("tiled both", N_("you tiled BOTH factors (C[j] = A[j % a] * B[j % b]); then only lcm(a, b) logits differ. "
                    "Repeat A element-wise (repeat_interleave) and tile B"), lambda A, B: _tile(A, B.shape[-1]) * _tile(B, A.shape[-1])),
            Mistake("roles swapped", N_("you tiled A and repeated B; the convention is C[j] = A[j // b] * B[j % b]: repeat A, tile B"),
                    lambda A, B: _tile(A, B.shape[-1]) * B.repeat_interleave(A.shape[-1], dim=-1)),
            Mistake("outer product not flattened", N_("you built the (a, b) outer product but did not flatten its last two "
                    "dimensions into a*b logits"), lambda A, B: A[..., :, None] * B[..., None, :]),
            Mistake("dot product", N_("you took a dot product of A and B (one number); the logits are element-wise products, a*b of them"),
                    lambda A, B: (A[..., : min(A.shape[-1], B.shape[-1])] * B[..., : min(A.shape[-1], B.shape[-1])]).sum(-1)),
        ],
        minutes=6,
        difficulty=1,
    )
)
