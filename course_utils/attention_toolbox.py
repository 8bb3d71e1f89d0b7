"""PyTorch's attention toolbox (notebook 10): which SDPA kernel runs, and FlexAttention's mask and score functions.

``F.scaled_dot_product_attention`` (SDPA) is one function with several kernels behind it. It
picks one per call; :func:`sdpa_kernel_used` tells which one ran, by watching the operators
that reach PyTorch's dispatcher. ``torch.nn.attention.sdpa_kernel`` restricts the choice.

FlexAttention (``torch.nn.attention.flex_attention``) describes a variant of attention by two
small functions of the indices ``(b, h, q_idx, kv_idx)``: a ``mask_mod`` returning True where
query ``q_idx`` may see key ``kv_idx``, and a ``score_mod`` rewriting one score. Here are the
ones notebook 10 uses, each with the explicit mask it must equal:

=====================  ==============================  ===================================
variant                FlexAttention function          explicit equivalent
=====================  ==============================  ===================================
causal                 :func:`causal`                  ``torch.ones(L, S).tril()``
sliding window of W    :func:`sliding_window` (W)      :func:`sliding_window_mask`
ALiBi                  :func:`alibi_score_mod`         :func:`~course_utils.positions.alibi_bias`
=====================  ==============================  ===================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["SDPA_KERNELS", "alibi_score_mod", "causal", "recorded_operators", "sdpa_kernel_used", "sliding_window", "sliding_window_mask"]

# The fused SDPA operators of PyTorch 2.13 and the backend (torch.nn.attention.SDPBackend name) each belongs to.
SDPA_KERNELS = {
    "_scaled_dot_product_flash_attention_for_cpu": "FLASH_ATTENTION",  # the CPU's own flash kernel
    "_scaled_dot_product_flash_attention": "FLASH_ATTENTION",  # CUDA
    "_scaled_dot_product_efficient_attention": "EFFICIENT_ATTENTION",  # CUDA (memory-efficient, xFormers)
    "_scaled_dot_product_cudnn_attention": "CUDNN_ATTENTION",  # CUDA (cuDNN)
    "_scaled_dot_product_fused_attention_overrideable": "OVERRIDEABLE",  # out-of-tree devices
}


class _OperatorRecorder(TorchDispatchMode):
    """Record every ATen operator that reaches the dispatcher, with the shapes of its tensor arguments."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, list[tuple[int, ...]]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        shapes = [tuple(a.shape) for a in args if isinstance(a, Tensor)]
        self.calls.append((func.overloadpacket.__name__, shapes))
        return func(*args, **(kwargs or {}))


def recorded_operators(fn: Callable[[], Any]) -> list[tuple[str, list[tuple[int, ...]]]]:
    """Run ``fn()`` and return the ATen operators it called, in order, each with its tensor arguments' shapes.

    Operators that PyTorch writes in terms of other operators (``F.scaled_dot_product_attention``
    itself, its math backend) do not appear: the operators they call do.
    """
    if not callable(fn):
        raise TypeError(f"recorded_operators: `fn` must be a zero-argument callable, got {type(fn).__name__}")
    with _OperatorRecorder() as recorder:
        fn()
    return recorder.calls


def sdpa_kernel_used(fn: Callable[[], Any]) -> str:
    """Run ``fn()`` and name the SDPA backend that did the work.

    The fused kernels are single ATen operators (:data:`SDPA_KERNELS`). The math backend is
    not: it is written in terms of ordinary operators (matmul, softmax), which is how it is
    recognised here.

    Args:
        fn: a zero-argument callable that calls ``F.scaled_dot_product_attention`` once.

    Returns:
        ``"FLASH_ATTENTION"``, ``"EFFICIENT_ATTENTION"``, ``"CUDNN_ATTENTION"``, ``"OVERRIDEABLE"``,
        ``"MATH"``, or ``"none"`` when no attention ran.
    """
    if not callable(fn):
        raise TypeError(f"sdpa_kernel_used: `fn` must be a zero-argument callable, got {type(fn).__name__}")
    names = [name for name, _ in recorded_operators(fn)]
    fused = [SDPA_KERNELS[name] for name in names if name in SDPA_KERNELS]
    if fused:
        return fused[0]
    if any("softmax" in name for name in names):
        return "MATH"
    return "none"


# ----------------------------------------------------------------------------------------------
# FlexAttention: mask_mod and score_mod functions
# ----------------------------------------------------------------------------------------------


def causal(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
    """FlexAttention ``mask_mod`` of causal attention: query ``q_idx`` sees keys ``0 .. q_idx``."""
    return q_idx >= kv_idx


def sliding_window(window: int) -> Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]:
    """FlexAttention ``mask_mod``: causal, and each query sees only its last ``window`` keys (itself included).

    Query i sees keys i - window + 1 .. i: ``0 <= q_idx - kv_idx < window``, the sliding window
    attention of Mistral 7B (Jiang et al. 2023).

    Args:
        window: how many keys each query sees (>= 1; 1 = only itself).
    """
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"sliding_window: `window` must be an int >= 1, got {window!r}")

    def sliding_window_mask_mod(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return (q_idx >= kv_idx) & (q_idx - kv_idx < window)

    return sliding_window_mask_mod


def sliding_window_mask(length: int, window: int, device=None) -> Tensor:
    """The explicit boolean mask of :func:`sliding_window` (True = may attend), built from two triangles.

    Shape:
        - output: :math:`(L, L)`, bool
    """
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(f"sliding_window_mask: `length` must be an int >= 1, got {length!r}")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"sliding_window_mask: `window` must be an int >= 1, got {window!r}")
    ones = torch.ones(length, length, dtype=torch.bool, device=device)  # (L, L)
    return ones.tril() & ones.triu(-(window - 1))  # (L, L): the band of the diagonal and window - 1 below


def alibi_score_mod(slopes: Tensor) -> Callable[[Tensor, Tensor, Tensor, Tensor, Tensor], Tensor]:
    """FlexAttention ``score_mod`` of ALiBi: score - slopes[h] * (q_idx - kv_idx).

    Combine it with the :func:`causal` mask (a ``block_mask``) for causal ALiBi; the future's
    distance is negative, so without a mask it would be *raised*.

    Args:
        slopes: one slope per head (:func:`course_utils.positions.alibi_slopes`).

    Shape:
        - slopes: :math:`(H,)`
    """
    if not isinstance(slopes, Tensor) or slopes.dim() != 1 or not slopes.is_floating_point():
        got = f"dtype {slopes.dtype}, shape {tuple(slopes.shape)}" if isinstance(slopes, Tensor) else type(slopes).__name__
        raise ValueError(f"alibi_score_mod: `slopes` must be a 1-D tensor of floats, one slope per head, got {got}")

    def alibi(score: Tensor, b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return score - slopes[h] * (q_idx - kv_idx)

    return alibi
