"""Exercises of notebook 07: attention at scale (registered on import)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

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

    # More queries than keys (L > S) in every case with several chunks, so that a block of keys for all
    # the queries, (N, h, L, c), is bigger than a block of queries for all the keys, (N, h, c, S).
    return [
        Case(N_("q (3, 2, 30, 5), k and v (3, 2, 20, 5), chunk_size=16 (two chunks)"), (*qkv(3, 2, 30, 20, 5), 16)),
        Case(N_("q (1, 3, 100, 4), k and v (1, 3, 80, 4), chunk_size=12 (the last chunk has 4 queries)"), (*qkv(1, 3, 100, 80, 4), 12)),
        Case(N_("q (2, 3, 64, 6), k and v (2, 3, 40, 6), chunk_size=8"), (*qkv(2, 3, 64, 40, 6), 8)),
        Case(N_("q (2, 1, 24, 8), k and v (2, 1, 36, 8), chunk_size=48 (one chunk holds every query)"), (*qkv(2, 1, 24, 36, 8), 48)),
    ]


#: At its peak a solution may hold this many (N, h, chunk_size, S) blocks of scores, besides the output counted twice
#: (the blocks' outputs and their concatenation). The query-chunked reference holds at most 2.6 on the cases.
BLOCKS_ALLOWED = 3
LARGEST_KEY = N_("no score tensor bigger than one (N, h, chunk_size, S) block")
ATTENTION_KEY = N_("every attention call sees at most chunk_size queries")
MEMORY_KEY = N_("peak memory within 3 blocks of scores besides the output")


class _MemoryTracker(TensorMemoryTracker):
    """The course's tracker, without the import of torch._dynamo (seconds) that a dispatch mode costs on first use."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False

    __torch_dispatch__ = getattr(TensorMemoryTracker.__torch_dispatch__, "__wrapped__", TensorMemoryTracker.__torch_dispatch__)


class _BlockSpy(TorchDispatchMode):
    """Notes the largest score-like tensor created (last dimension not d) and the most queries an attention operator saw."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False

    def __init__(self, d: int):
        super().__init__()
        self.d = d
        self.largest = 0
        self.most_queries = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if "scaled_dot_product" in name or "flash_attention" in name or "efficient_attention" in name:
            query = args[0] if args and isinstance(args[0], torch.Tensor) else None
            self.most_queries = max(self.most_queries, query.shape[-2] if query is not None and query.dim() >= 2 else 0)
        inputs = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.dim() >= 1 and t.shape[-1] != self.d and t.untyped_storage().data_ptr() not in inputs:
                self.largest = max(self.largest, t.numel())
        return out


def _observe_chunked(fn, case):
    """The output; whether no score tensor exceeded one block, attention ran on chunks, and the peak stayed within the rule."""
    q, k, v, chunk = case.args
    N, h, L, d = q.shape
    block = N * h * min(chunk, L) * k.shape[2]  # numbers in one (N, h, chunk_size, S) block of scores
    if q.requires_grad:  # the check's gradient run: autograd keeps every block, which is not the rule's case
        return {N_("output"): fn(q, k, v, chunk)}
    spy = _BlockSpy(d)
    with torch.no_grad(), _MemoryTracker() as tracker, spy:
        out = fn(q, k, v, chunk)
    output_bytes = q.numel() * q.element_size()
    within = tracker.peak <= 2 * output_bytes + BLOCKS_ALLOWED * block * q.element_size()
    return {N_("output"): out, LARGEST_KEY: spy.largest <= block, ATTENTION_KEY: spy.most_queries <= chunk, MEMORY_KEY: within}


def _naive(q, k, v, chunk_size):
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1) @ v


def _one_sdpa_call(q, k, v, chunk_size):
    return F.scaled_dot_product_attention(q, k, v)


def _blocks_kept(q, k, v, chunk_size):
    scores = [q[..., s : s + chunk_size, :] @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]) for s in range(0, q.shape[-2], chunk_size)]
    return torch.cat([torch.softmax(block, dim=-1) @ v for block in scores], dim=-2)


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
            Mistake("no chunks", N_("the output is right, but your code computed the whole (N, h, L, S) score matrix at once; "
                    "compute the scores of chunk_size queries at a time, so that only a (N, h, chunk_size, S) block exists"), _naive),
            Mistake("one SDPA call", N_("the output is right, but you handed all the queries to one attention call "
                    "(F.scaled_dot_product_attention): the exercise is to do the chunking yourself, chunk_size queries at a time"),
                    _one_sdpa_call),
            Mistake("blocks kept alive", N_("each block is right, but you kept every block's scores alive until the end, so the "
                    "peak grows with the number of chunks: let each block's scores go before computing the next"), _blocks_kept),
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

# ------------------------------------------------------------------ 07.online_attention


def online_attention(q, k, v, block_size):
    """Exact softmax attention in ONE pass over blocks of keys, with an online softmax (reference for 07.online_attention).

    FlashAttention's recurrence: for each block of ``block_size`` keys, the (N, h, L, block_size)
    scores update a running maximum ``m``, a running sum ``l`` of exponentials and an unnormalised
    output ``acc``; what was accumulated under the old maximum is rescaled by ``exp(m_old - m_new)``.
    No (L, S) matrix ever exists.

    Shape:
        - q: :math:`(N, h, L, d)`; k, v: :math:`(N, h, S, d)`; output: :math:`(N, h, L, d)`.
    """
    N, h, L, d = q.shape
    m = torch.full((N, h, L, 1), float("-inf"), dtype=q.dtype)  # (N, h, L, 1): the largest score so far
    l = torch.zeros(N, h, L, 1, dtype=q.dtype)  # (N, h, L, 1): the sum of exp(score - m) so far
    acc = torch.zeros(N, h, L, d, dtype=q.dtype)  # (N, h, L, d): the sum of exp(score - m) * value so far
    for start in range(0, k.shape[-2], block_size):
        scores = q @ k[..., start : start + block_size, :].transpose(-2, -1) / math.sqrt(d)  # (N, h, L, b)
        m_new = torch.maximum(m, scores.amax(dim=-1, keepdim=True))  # (N, h, L, 1)
        rescale = torch.exp(m - m_new)  # (N, h, L, 1): old sums were taken under the old maximum
        p = torch.exp(scores - m_new)  # (N, h, L, b)
        l = l * rescale + p.sum(dim=-1, keepdim=True)
        acc = acc * rescale + p @ v[..., start : start + block_size, :]  # (N, h, L, d)
        m = m_new
    return acc / l  # (N, h, L, d)


def _online_cases():
    g = torch.Generator().manual_seed(17)

    def qkv(N, h, L, S, d, scale=1.0):
        return (torch.randn(N, h, L, d, generator=g) * scale, torch.randn(N, h, S, d, generator=g) * scale,
                torch.randn(N, h, S, d, generator=g))

    # S > L in every case with several blocks, so that a (N, h, L, S) matrix is bigger than any (N, h, L, block_size) tile.
    return [
        Case(N_("q (2, 3, 5, 4), k and v (2, 3, 40, 4), block_size=8"), (*qkv(2, 3, 5, 40, 4), 8)),
        Case(N_("q (1, 2, 6, 8), k and v (1, 2, 50, 8), block_size=16 (the last block has 2 keys)"), (*qkv(1, 2, 6, 50, 8), 16)),
        Case(N_("large scores: q and k times 30, q (3, 1, 4, 6), k and v (3, 1, 36, 6), block_size=5"),
             (*qkv(3, 1, 4, 36, 6, scale=30.0), 5)),
        Case(N_("q (2, 1, 7, 3), k and v (2, 1, 9, 3), block_size=12 (one block holds every key)"), (*qkv(2, 1, 7, 9, 3), 12)),
    ]


TILE_KEY = N_("no score tensor bigger than one (N, h, L, block_size) tile")


def _observe_online(fn, case):
    """The output, whether no score-like tensor exceeded one tile, and whether no attention operator did the work."""
    q, k, v, block = case.args
    N, h, L, d = q.shape
    spy = _BlockSpy(d)
    with torch.set_grad_enabled(q.requires_grad), spy:
        out = fn(q, k, v, block)
    return {
        N_("output"): out,
        TILE_KEY: spy.largest <= N * h * L * min(block, k.shape[2]),
        N_("no attention function (F.scaled_dot_product_attention...) called"): spy.most_queries == 0,
    }


def _online(q, k, v, block_size, *, rescale=True, subtract_max=True, scale=True, each_block_normalised=False, last_block=True,
            rescale_sum_only=False):
    N, h, L, d = q.shape
    S = k.shape[-2]
    m = torch.full((N, h, L, 1), float("-inf"), dtype=q.dtype)
    l = torch.zeros(N, h, L, 1, dtype=q.dtype)
    acc = torch.zeros(N, h, L, d, dtype=q.dtype)
    stop = S if last_block else S - S % block_size if S % block_size else S - block_size
    for start in range(0, max(stop, 1), block_size):
        scores = q @ k[..., start : start + block_size, :].transpose(-2, -1) / (math.sqrt(d) if scale else 1.0)
        if each_block_normalised:
            acc = acc + torch.softmax(scores, dim=-1) @ v[..., start : start + block_size, :]
            continue
        m_new = torch.maximum(m, scores.amax(dim=-1, keepdim=True)) if subtract_max else torch.zeros_like(m)
        factor = torch.exp(m - m_new) if subtract_max else torch.ones_like(m)
        p = torch.exp(scores - m_new)
        l = (l * factor if rescale else l) + p.sum(dim=-1, keepdim=True)
        acc = (acc * factor if rescale and not rescale_sum_only else acc) + p @ v[..., start : start + block_size, :]
        m = m_new
    return acc if each_block_normalised else acc / l


def _online_sdpa(q, k, v, block_size):
    return F.scaled_dot_product_attention(q, k, v)


register(
    Exercise(
        id="07.online_attention",
        title=N_("One FlashAttention-style pass: an online softmax over blocks of keys"),
        reference=online_attention,
        cases=_online_cases,
        observe=_observe_online,
        mistakes=[
            Mistake("no rescaling", N_("when the running maximum grows you did not rescale what was already summed: multiply both l "
                    "and acc by exp(m_old - m_new) before adding the new block"), lambda q, k, v, b: _online(q, k, v, b, rescale=False)),
            Mistake("only l rescaled", N_("you rescaled the running sum l but not the accumulated output acc: both were summed under "
                    "the old maximum, so both get the factor exp(m_old - m_new)"),
                    lambda q, k, v, b: _online(q, k, v, b, rescale_sum_only=True)),
            Mistake("no running maximum", N_("you exponentiated the raw scores: with large scores exp overflows to inf (inf/inf = NaN); "
                    "keep a running maximum m and exponentiate scores - m"), lambda q, k, v, b: _online(q, k, v, b, subtract_max=False)),
            Mistake("softmax per block", N_("you soft-maxed each block of keys on its own and added the results: each block's "
                    "weights then sum to 1, so the output sums several attentions; carry m and l across blocks and divide "
                    "once at the end"), lambda q, k, v, b: _online(q, k, v, b, each_block_normalised=True)),
            Mistake("not scaled", N_("you forgot to divide the scores by sqrt(d)"), lambda q, k, v, b: _online(q, k, v, b, scale=False)),
            Mistake("last block dropped", N_("the last, shorter block of keys is missing: range(0, S, block_size) covers every key"),
                    lambda q, k, v, b: _online(q, k, v, b, last_block=False)),
            Mistake("whole matrix", N_("the output is right, but your code built the whole (N, h, L, S) score matrix: compute "
                    "the scores of block_size keys at a time and fold each block into m, l and acc"), _naive),
            Mistake("SDPA", N_("the output is right, but you called an attention function (F.scaled_dot_product_attention): "
                    "the exercise is to write the online softmax yourself"), _online_sdpa),
        ],
        atol=1e-5,
        rtol=1e-4,
        minutes=25,
        difficulty=3,
    )
)
