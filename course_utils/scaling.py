"""How attention's cost grows with sequence length: time and peak memory (notebook 07, ``make bench``).

Peak memory is measured, not estimated:

* on CUDA with ``torch.cuda.max_memory_allocated`` (the caching allocator's own count), minus
  what was allocated before the call;
* on the CPU (and MPS), where PyTorch keeps no allocator statistics, by
  :class:`TensorMemoryTracker`: a ``TorchDispatchMode`` that sees every tensor each operator
  creates during the call, adds its storage's bytes when it appears and subtracts them when the
  last tensor using that storage is freed. Its peak is the largest number of bytes of tensors
  alive at once. It counts every tensor an operator returns (the attention weights included);
  it cannot see scratch memory a fused kernel allocates and frees inside itself (the small
  blocks of the flash kernel of ``F.scaled_dot_product_attention``, for instance).

Both count only what the call allocates: the inputs and the parameters are not included.
:func:`attention_weight_bytes` gives the analytic size of a materialised (N, h, L, S) weight
tensor, the quadratic term the plots show.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from .bench import time_side_by_side
from .i18n import _
from .synthesizer import SYNTHESIZER_KINDS, make_synthesizer
from .training import progress_bar

__all__ = [
    "TensorMemoryTracker",
    "peak_memory",
    "attention_weight_bytes",
    "naive_attention",
    "attention_candidates",
    "ScalingResult",
    "measure_scaling",
    "plot_scaling",
    "ratio_rows",
    "fit_exponent",
    "robust_exponent",
]


# ----------------------------------------------------------------------------------------------
# Memory
# ----------------------------------------------------------------------------------------------


class TensorMemoryTracker(TorchDispatchMode):
    """Count the bytes of the tensors that operators create, and their peak.

    Use as a context manager; afterwards ``.peak`` is the most bytes alive at once and
    ``.current`` the bytes still alive (e.g. the output). Views share their base's storage
    and are counted once.

    Example::

        with torch.no_grad(), TensorMemoryTracker() as tracker:
            y = torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v
        tracker.peak  # bytes
    """

    def __init__(self) -> None:
        super().__init__()
        self.current = 0
        self.peak = 0
        self._live: dict[tuple, list[int]] = {}  # storage key -> [nbytes, number of live tensors]

    def _release(self, key: tuple) -> None:
        entry = self._live.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.current -= entry[0]
            del self._live[key]

    @staticmethod
    def _key(t: Tensor) -> tuple:
        return (str(t.device), t.untyped_storage().data_ptr())

    def _track(self, t: Tensor, input_keys: set) -> None:
        nbytes = t.untyped_storage().nbytes()
        if nbytes == 0:
            return
        key = self._key(t)
        entry = self._live.get(key)
        if entry is None:
            if key in input_keys:  # a view of a tensor made before tracking began (a parameter, an input)
                return
            self._live[key] = [nbytes, 1]
            self.current += nbytes
            self.peak = max(self.peak, self.current)
        else:
            entry[1] += 1
        weakref.finalize(t, self._release, key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        input_keys = {self._key(t) for t in tree_leaves((args, kwargs)) if isinstance(t, Tensor)}
        out = func(*args, **kwargs)
        for leaf in tree_leaves(out):
            if isinstance(leaf, Tensor):
                self._track(leaf, input_keys)
        return out


def peak_memory(fn: Callable[[], Any], device: torch.device | str) -> int:
    """Peak bytes allocated while ``fn()`` runs, beyond what was allocated before.

    CUDA: the caching allocator's statistics (``torch.cuda.max_memory_allocated``). Other
    devices: :class:`TensorMemoryTracker` (the bytes of the tensors that operators create).
    The result of ``fn`` is dropped before returning.
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        out = fn()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - before
        del out
        return int(peak)
    with TensorMemoryTracker() as tracker:
        out = fn()
    del out
    return int(tracker.peak)


def attention_weight_bytes(N: int, num_heads: int, L: int, S: int | None = None, dtype: torch.dtype = torch.float32) -> int:
    """Bytes of one materialised attention-weight tensor of shape (N, num_heads, L, S)."""
    S = L if S is None else S
    return N * num_heads * L * S * torch.empty((), dtype=dtype).element_size()


# ----------------------------------------------------------------------------------------------
# What is measured
# ----------------------------------------------------------------------------------------------


def naive_attention(q: Tensor, k: Tensor, v: Tensor, is_causal: bool = False) -> Tensor:
    """Attention written out: the full (L, S) score and weight matrices are materialised.

    Shape:
        - q: :math:`(N, h, L, d_h)`; k, v: :math:`(N, h, S, d_h)`; output: :math:`(N, h, L, d_h)`.
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (N, h, L, S)
    if is_causal:
        L, S = scores.shape[-2:]
        future = torch.ones(L, S, dtype=torch.bool, device=q.device).triu(1)  # (L, S)
        scores = scores.masked_fill(future, float("-inf"))  # (N, h, L, S)
    weights = torch.softmax(scores, dim=-1)  # (N, h, L, S)
    return weights @ v  # (N, h, L, d_h)


def _split_heads(x: Tensor, num_heads: int) -> Tensor:
    N, L, E = x.shape
    return x.view(N, L, num_heads, E // num_heads).transpose(1, 2)  # (N, h, L, d_h)


def attention_candidates(
    embed_dim: int,
    num_heads: int,
    max_len: int,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    synthesizers: Sequence[str] = SYNTHESIZER_KINDS,
    include_course_mha: bool = True,
    include_mha_weights: bool = True,
    seed: int = 0,
) -> dict[str, Callable[[Tensor], Any]]:
    """Name -> function of x (N, L, E) that runs one self-attention forward pass on x.

    * ``naive attention`` and ``F.scaled_dot_product_attention``: the attention core only,
      on x split into heads (q = k = v, no projections);
    * ``nn.MultiheadAttention``, ``course MultiheadAttention`` and every synthesizer: the whole
      layer (projections included), called as ``layer(x, x, x, need_weights=False)``, in eval mode;
    * ``nn.MultiheadAttention, need_weights`` (with ``include_mha_weights``): the same
      ``nn.MultiheadAttention`` asked for its (N, h, L, L) weights, which it must then materialise.

    All run under ``torch.no_grad()`` (inference); the modules are ``batch_first``.
    """
    device = torch.device(device)
    torch.manual_seed(seed)
    kw = {"batch_first": True, "device": device, "dtype": dtype}
    modules: dict[str, nn.Module] = {"nn.MultiheadAttention": nn.MultiheadAttention(embed_dim, num_heads, **kw)}
    if include_course_mha:
        try:
            from .attention import MultiheadAttention
        except ImportError:  # pragma: no cover - written by another part of the course
            MultiheadAttention = None
        if MultiheadAttention is not None:
            modules["course MultiheadAttention"] = MultiheadAttention(embed_dim, num_heads, **kw)
    for kind in synthesizers:
        modules[kind] = make_synthesizer(kind, embed_dim, num_heads, max_len, **kw)

    def core(fn):
        def run(x):
            with torch.no_grad():
                h = _split_heads(x, num_heads)  # (N, h, L, d_h)
                return fn(h, h, h)  # (N, h, L, d_h)

        return run

    def layer(module):
        module.eval()

        def run(x):
            with torch.no_grad():
                return module(x, x, x, need_weights=False)[0]  # (N, L, E)

        return run

    candidates: dict[str, Callable[[Tensor], Any]] = {
        "naive attention": core(naive_attention),
        "F.scaled_dot_product_attention": core(F.scaled_dot_product_attention),
    }
    candidates.update({name: layer(m) for name, m in modules.items()})
    if include_mha_weights:
        mha = modules["nn.MultiheadAttention"]

        def mha_with_weights(x):
            with torch.no_grad():
                return mha(x, x, x, need_weights=True, average_attn_weights=False)

        candidates = {**dict(list(candidates.items())[:3]), "nn.MultiheadAttention, need_weights": mha_with_weights, **dict(list(candidates.items())[3:])}
    return candidates


@dataclass
class ScalingResult:
    """Times (seconds) and peak memory (bytes) per candidate, one value per sequence length."""

    lengths: list[int]
    seconds: dict[str, list[float]] = field(default_factory=dict)
    peak_bytes: dict[str, list[int]] = field(default_factory=dict)
    device: str = "cpu"
    batch: int = 1
    embed_dim: int = 0
    num_heads: int = 1


def measure_scaling(
    candidates: Mapping[str, Callable[[Tensor], Any]],
    lengths: Sequence[int],
    *,
    batch: int = 2,
    embed_dim: int = 64,
    num_heads: int = 4,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    warmup: int = 2,
    repeats: int = 5,
    seed: int = 0,
    progress: bool = False,
) -> ScalingResult:
    """Time and peak memory of every candidate at every sequence length.

    For each length: a seeded input x (batch, L, embed_dim); ``warmup`` untimed rounds, then the
    median time of ``repeats`` interleaved rounds (:func:`course_utils.bench.time_side_by_side`),
    so that a busy machine slows every candidate alike and one disturbed round does not move the
    median; then one call per candidate under :func:`peak_memory`.

    Args:
        candidates: name -> function of x (N, L, E), e.g. from :func:`attention_candidates`.
        lengths: the sequence lengths L to measure.
        batch, embed_dim: the shape of x.
        num_heads: recorded in the result (for the analytic weight size of the plots).
        device, dtype: where and how x is made.
        warmup: untimed rounds per length.
        repeats: timed rounds per length (the median is reported).
        seed: x is drawn with seed ``seed + L``.
        progress: show a progress bar over the lengths.

    Returns:
        :class:`ScalingResult`.
    """
    device = torch.device(device)
    result = ScalingResult(list(lengths), {n: [] for n in candidates}, {n: [] for n in candidates}, str(device), batch, embed_dim, num_heads)
    for L in progress_bar(lengths, desc=_("lengths"), disable=not progress):
        g = torch.Generator().manual_seed(seed + L)
        x = torch.randn(batch, L, embed_dim, generator=g, dtype=dtype).to(device)  # (N, L, E)
        calls = {name: (lambda fn=fn, x=x: fn(x)) for name, fn in candidates.items()}
        times = time_side_by_side(calls, warmup=warmup, repeats=repeats, device=device)
        for name, call in calls.items():
            result.seconds[name].append(times[name])
            result.peak_bytes[name].append(peak_memory(call, device))
    return result


def fit_exponent(lengths: Sequence[int], values: Sequence[float]) -> float:
    """Least-squares slope of log(value) against log(length): ~1 for linear growth, ~2 for quadratic.

    Every point pulls on a least-squares line, so one disturbed measurement can tilt it; see
    :func:`robust_exponent` for noisy timings.
    """
    xs = [math.log(v) for v in lengths]
    ys = [math.log(max(v, 1e-30)) for v in values]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((a - mx) * (b - my) for a, b in zip(xs, ys)) / sum((a - mx) ** 2 for a in xs)


def robust_exponent(lengths: Sequence[int], values: Sequence[float]) -> float:
    """Median of the log-log slopes between every pair of points (the Theil-Sen estimator).

    If value = c * L**p exactly, every pairwise slope is p. With one disturbed measurement
    among n points, only the n - 1 slopes through it are wrong, and the median of all
    n (n - 1) / 2 slopes ignores them (for n >= 4): a robust growth exponent for timings
    taken on a busy machine.

    Args:
        lengths: at least two distinct positive lengths.
        values: one positive measurement per length.
    """
    if len(lengths) != len(values) or len(set(lengths)) < 2:
        raise ValueError(f"robust_exponent: needs at least two distinct lengths and one value per length, "
                         f"got {len(lengths)} lengths and {len(values)} values")
    points = [(math.log(L), math.log(max(v, 1e-30))) for L, v in zip(lengths, values)]
    slopes = sorted((y2 - y1) / (x2 - x1) for i, (x1, y1) in enumerate(points) for x2, y2 in points[i + 1 :] if x2 != x1)
    middle = len(slopes) // 2
    return slopes[middle] if len(slopes) % 2 else (slopes[middle - 1] + slopes[middle]) / 2


def ratio_rows(result: ScalingResult, baseline: str = "nn.MultiheadAttention", length: int | None = None) -> list[tuple[str, ...]]:
    """Rows (name, time, time / baseline, peak MiB, memory / baseline) at one length (default: the longest)."""
    i = result.lengths.index(length) if length is not None else len(result.lengths) - 1
    t0, m0 = result.seconds[baseline][i], max(result.peak_bytes[baseline][i], 1)
    rows = []
    for name in result.seconds:
        t, m = result.seconds[name][i], result.peak_bytes[name][i]
        rows.append((name, f"{t * 1e3:.2f} ms", f"{t / t0:.2f}x", f"{m / 2**20:.2f}", f"{m / m0:.2f}x"))
    return rows


# Ten tab10 colours, then six more that differ from all of them (and from the black reference line).
_LINE_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
                 "navy", "gold", "lime", "magenta", "teal", "saddlebrown")


def line_colours(n: int) -> list[str]:
    """``n`` different colours for ``n`` lines (at most 16), none of them black."""
    if n > len(_LINE_COLOURS):
        raise ValueError(f"line_colours: at most {len(_LINE_COLOURS)} distinct colours, asked for {n}")
    return list(_LINE_COLOURS[:n])


def plot_scaling(result: ScalingResult, title: str | None = None, reference_bytes: bool = True):
    """Two log-log panels: time and peak memory against sequence length, one line per candidate.

    Args:
        result: from :func:`measure_scaling`.
        title: figure title.
        reference_bytes: also draw the analytic size of one (N, h, L, L) float32 weight tensor
            (black, dotted).

    Every candidate gets its own colour and marker, the same in both panels.

    Returns:
        matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(12, 4.6))
    names = list(result.seconds)
    colours = line_colours(len(names))
    markers = "osv^D<>pPX*hH8d"
    for k, name in enumerate(names):
        style = {"color": colours[k], "marker": markers[k % len(markers)], "ms": 4, "label": name}
        ax_t.loglog(result.lengths, [t * 1e3 for t in result.seconds[name]], **style)
        ax_m.loglog(result.lengths, [max(m, 1) / 2**20 for m in result.peak_bytes[name]], **style)
    if reference_bytes:
        weights = [attention_weight_bytes(result.batch, result.num_heads, L) / 2**20 for L in result.lengths]
        ax_m.loglog(result.lengths, weights, color="black", linestyle=":", lw=2, label=_("one (N, h, L, L) weight tensor"))
    ax_t.set(xlabel=_("sequence length L"), ylabel=_("milliseconds per forward pass"), title=_("time"))
    ax_m.set(xlabel=_("sequence length L"), ylabel=_("peak MiB allocated by the call"), title=_("peak memory"))
    for ax in (ax_t, ax_m):
        ax.grid(True, which="both", alpha=0.3)
    ax_m.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(title or _("self-attention forward, N={batch}, E={embed_dim}, h={num_heads}, device {device}").format(
        batch=result.batch, embed_dim=result.embed_dim, num_heads=result.num_heads, device=result.device))
    fig.tight_layout()
    return fig
