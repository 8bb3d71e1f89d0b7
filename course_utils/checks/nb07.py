"""Exercises of notebook 07: attention at scale (registered on import)."""

from __future__ import annotations

import math

import torch

from ..i18n import N_
from ..scaling import TensorMemoryTracker, attention_weight_bytes, fit_exponent
from .core import Case, Exercise, Mistake, register

# ------------------------------------------------------------------ 07.weight_bytes


def _bytes_cases():
    return [
        Case(N_("N=2, h=3, L=S=128, float32"), (2, 3, 128)),
        Case(N_("N=3, h=2, L=10, S=20, float32"), (3, 2, 10, 20)),
        Case(N_("N=1, h=8, L=S=64, float16"), (1, 8, 64), {"dtype": torch.float16}),
        Case(N_("N=5, h=1, L=7, S=3, float64"), (5, 1, 7, 3), {"dtype": torch.float64}),
    ]


def _size(dtype):
    return torch.empty((), dtype=dtype).element_size()


register(
    Exercise(
        id="07.weight_bytes",
        title=N_("Bytes of a materialised attention-weight tensor"),
        reference=attention_weight_bytes,
        cases=_bytes_cases,
        mistakes=[
            Mistake("L squared", N_("you used L * L; the weights are (N, h, L, S): use S when it is given"),
                    lambda N, h, L, S=None, dtype=torch.float32: N * h * L * L * _size(dtype)),
            Mistake("always 4 bytes", N_("you assumed 4 bytes per number; use the dtype's size (torch.empty((), dtype=dtype).element_size())"),
                    lambda N, h, L, S=None, dtype=torch.float32: N * h * L * (L if S is None else S) * 4),
            Mistake("no heads", N_("you forgot the heads: every head has its own (L, S) matrix"),
                    lambda N, h, L, S=None, dtype=torch.float32: N * L * (L if S is None else S) * _size(dtype)),
            Mistake("no batch", N_("you forgot the batch: every sequence has its own weights"),
                    lambda N, h, L, S=None, dtype=torch.float32: h * L * (L if S is None else S) * _size(dtype)),
            Mistake("no bytes", N_("you returned the number of elements N * h * L * S; multiply by the bytes of one number "
                    "(torch.empty((), dtype=dtype).element_size())"),
                    lambda N, h, L, S=None, dtype=torch.float32: N * h * L * (L if S is None else S)),
        ],
        minutes=4,
        difficulty=1,
    )
)

# ------------------------------------------------------------------ 07.fit_exponent


def _exponent_cases():
    g = torch.Generator().manual_seed(0)
    noisy = [float(v) for v in (torch.tensor([64.0, 128, 256, 512]) ** 1.5 * (1 + 0.3 * torch.rand(4, generator=g)))]
    return [
        Case(N_("quadratic values"), ([128, 256, 512, 1024], [1.0, 4.0, 16.0, 64.0])),
        Case(N_("linear values plus a constant"), ([10, 20, 40, 80, 160], [15.0, 25.0, 45.0, 85.0, 165.0])),
        Case(N_("noisy measurements"), ([64, 128, 256, 512], noisy)),
    ]


def _slope(xs, ys):
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((a - mx) * (b - my) for a, b in zip(xs, ys)) / sum((a - mx) ** 2 for a in xs)


register(
    Exercise(
        id="07.fit_exponent",
        title=N_("The growth exponent: slope of a log-log least-squares line"),
        reference=fit_exponent,
        cases=_exponent_cases,
        observe=lambda fn, case: float(fn(*case.args)),
        mistakes=[
            Mistake("no logs", N_("you fitted the raw values; take the log of both the lengths and the values"),
                    lambda xs, ys: _slope(list(xs), list(ys))),
            Mistake("log of the values only", N_("you took the log of the values but not of the lengths (that is a semi-log fit)"),
                    lambda xs, ys: _slope(list(xs), [math.log(v) for v in ys])),
            Mistake("two end points", N_("you used only the first and last points; fit a least-squares line through all of them"),
                    lambda xs, ys: (math.log(ys[-1]) - math.log(ys[0])) / (math.log(xs[-1]) - math.log(xs[0]))),
        ],
        atol=1e-6,
        minutes=6,
        difficulty=2,
    )
)

# ------------------------------------------------------------------ 07.chunked_attention


def chunked_attention(q, k, v, chunk_size):
    """Exact softmax attention computed ``chunk_size`` queries at a time (reference for 07.chunked_attention).

    Only a (N, h, chunk_size, S) block of scores exists at any moment, instead of the whole
    (N, h, L, S) matrix.

    Shape:
        - q: :math:`(N, h, L, d)`; k, v: :math:`(N, h, S, d)`; output: :math:`(N, h, L, d)`.
    """
    outputs = []
    for start in range(0, q.shape[-2], chunk_size):
        block = q[..., start : start + chunk_size, :]  # (N, h, c, d)
        scores = block @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (N, h, c, S)
        outputs.append(torch.softmax(scores, dim=-1) @ v)  # (N, h, c, d)
    return torch.cat(outputs, dim=-2)  # (N, h, L, d)


def _chunk_cases():
    g = torch.Generator().manual_seed(7)

    def qkv(N, h, L, S, d):
        return (torch.randn(N, h, L, d, generator=g), torch.randn(N, h, S, d, generator=g), torch.randn(N, h, S, d, generator=g))

    return [
        Case(N_("q (2, 2, 64, 4), k and v (2, 2, 64, 4), chunk_size=8"), (*qkv(2, 2, 64, 64, 4), 8)),
        Case(N_("q (1, 3, 100, 4), k and v (1, 3, 80, 4), chunk_size=12 (the last chunk has 4 queries)"), (*qkv(1, 3, 100, 80, 4), 12)),
        Case(N_("q (2, 1, 32, 8), k and v (2, 1, 32, 8), chunk_size=48 (one chunk holds every query)"), (*qkv(2, 1, 32, 32, 8), 48)),
    ]


MEMORY_KEY = N_("peak memory below one whole (N, h, L, S) score matrix")


def _observe_chunked(fn, case):
    """The output, and whether the peak bytes stayed below one whole score matrix (when there are several chunks).

    The query-chunked reference peaks near three (N, h, chunk_size, S) blocks plus the output,
    well under the whole matrix on these cases; so does any solution that keeps only the
    current block's scores alive.
    """
    q, k, v, chunk = case.args
    with torch.set_grad_enabled(q.requires_grad), TensorMemoryTracker() as tracker:
        out = fn(q, k, v, chunk)
    full = attention_weight_bytes(q.shape[0], q.shape[1], q.shape[2], k.shape[2], dtype=q.dtype)
    several_chunks = q.shape[2] > chunk
    return {N_("output"): out, MEMORY_KEY: (tracker.peak < full) if several_chunks else True}


def _naive(q, k, v, chunk_size):
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1) @ v


def _key_chunks(q, k, v, chunk_size):
    out = 0
    for start in range(0, k.shape[-2], chunk_size):
        scores = q @ k[..., start : start + chunk_size, :].transpose(-2, -1) / math.sqrt(q.shape[-1])
        out = out + torch.softmax(scores, dim=-1) @ v[..., start : start + chunk_size, :]
    return out


def _drop_remainder(q, k, v, chunk_size):
    outputs = []
    for start in range(0, q.shape[-2] - chunk_size + 1, chunk_size):
        scores = q[..., start : start + chunk_size, :] @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        outputs.append(torch.softmax(scores, dim=-1) @ v)
    return torch.cat(outputs, dim=-2)


def _no_scale(q, k, v, chunk_size):
    return chunked_attention(q * math.sqrt(q.shape[-1]), k, v, chunk_size)


def _softmax_over_queries(q, k, v, chunk_size):
    outputs = []
    for start in range(0, q.shape[-2], chunk_size):
        scores = q[..., start : start + chunk_size, :] @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        outputs.append(torch.softmax(scores, dim=-2) @ v)
    return torch.cat(outputs, dim=-2)


register(
    Exercise(
        id="07.chunked_attention",
        title=N_("Exact attention in query chunks, without the whole (L, S) matrix"),
        reference=chunked_attention,
        cases=_chunk_cases,
        observe=_observe_chunked,
        mistakes=[
            Mistake("no chunks", N_("the output is right, but at its peak your code held at least as many bytes as one whole "
                    "(N, h, L, S) score matrix; compute the scores of chunk_size queries at a time, so that only a "
                    "(N, h, chunk_size, S) block exists at once"), _naive),
            Mistake("key chunks", N_("you split the KEYS into chunks and soft-maxed each chunk separately: each query's weights must be "
                    "normalised over ALL keys at once (splitting the queries is exact)"), _key_chunks),
            Mistake("dropped the remainder", N_("the last, shorter chunk is missing: range(0, L, chunk_size) covers every query"),
                    _drop_remainder),
            Mistake("no scaling", N_("you forgot to divide the scores by sqrt(d)"), _no_scale),
            Mistake("softmax over queries", N_("you took the softmax over the queries (dim=-2); each query's row over the keys must sum to 1 (dim=-1)"),
                    _softmax_over_queries),
        ],
        atol=1e-5,
        minutes=12,
        difficulty=2,
    )
)
