"""Where a token is: sinusoidal and rotary position encodings, and ALiBi's biases (notebook 08).

Attention on its own is permutation-equivariant: shuffle the tokens and the outputs shuffle the
same way. A model learns about order only through what these functions add:

==========================  ================================================  ====================
scheme                      what it does                                      used by
==========================  ================================================  ====================
:func:`sinusoidal_positions`  adds sin/cos waves of the position to the input   Vaswani et al. 2017
learned (``nn.Embedding``)  adds a learned vector per position < block_size   GPT-2 (see gpt.py)
:func:`apply_rope`          rotates queries and keys by position-dependent   RoFormer, LLaMA
                            angles, so q·k depends only on the offset
:func:`alibi_bias`          adds ``-slope * distance`` to the scores          ALiBi (Press et al.)
==========================  ================================================  ====================
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["alibi_bias", "alibi_slopes", "apply_rope", "rope_angles", "sinusoidal_positions"]


def _check_positive_int(who: str, name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{who}: `{name}` must be a positive int, got {value!r}")


def _check_float_dtype(who: str, dtype) -> None:
    if dtype is not None and (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point):
        raise TypeError(f"{who}: `dtype` must be a floating-point torch.dtype or None, got {dtype!r}")


def _check_base(who: str, base) -> None:
    if isinstance(base, bool) or not isinstance(base, (int, float)) or not 1 < base < math.inf:
        raise ValueError(f"{who}: `base` must be a finite number > 1, got {base!r}")


def _check_positions(who: str, positions) -> None:
    if not isinstance(positions, Tensor) or positions.dim() < 1:
        raise ValueError(f"{who}: `positions` must be a tensor of shape (..., T), got {_describe(positions)}")
    if positions.dtype == torch.bool or positions.is_complex():
        raise TypeError(f"{who}: `positions` must hold int or float positions, got dtype {positions.dtype}")


def sinusoidal_positions(num_positions: int, d_model: int, *, start: int = 0, device=None, dtype=None) -> Tensor:
    r"""The sinusoidal position table of "Attention Is All You Need" (section 3.5).

    .. math::
        PE_{(p, 2i)} = \sin(p / 10000^{2i/d_{model}}), \qquad PE_{(p, 2i+1)} = \cos(p / 10000^{2i/d_{model}})

    Column pair (2i, 2i+1) is a point on a circle turning with frequency
    :math:`\omega_i = 10000^{-2i/d_{model}}`: moving k positions further rotates every pair by
    :math:`k\omega_i`, the same linear map whatever p is.

    Args:
        num_positions: how many positions (rows).
        d_model: width of each encoding (an odd width ends with a sine column).
        start: the first position (rows are positions ``start .. start + num_positions - 1``).
        device, dtype: of the result (default: the default device and float dtype).

    Shape:
        - output: :math:`(\text{num\_positions}, d_{model})`
    """
    _check_positive_int("sinusoidal_positions", "num_positions", num_positions)
    _check_positive_int("sinusoidal_positions", "d_model", d_model)
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise ValueError(f"sinusoidal_positions: `start` must be a non-negative int, got {start!r}")
    _check_float_dtype("sinusoidal_positions", dtype)
    position = torch.arange(start, start + num_positions, dtype=torch.float64, device=device)[:, None]  # (P, 1)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64, device=device)  # (ceil(d/2),): 0, 2, 4, ...
    angle = position / 10000.0 ** (two_i / d_model)  # (P, ceil(d/2))
    table = torch.empty(num_positions, d_model, dtype=torch.float64, device=device)  # (P, d)
    table[:, 0::2] = torch.sin(angle)  # even columns: sin
    table[:, 1::2] = torch.cos(angle[:, : d_model // 2])  # odd columns: the matching cos
    return table.to(dtype or torch.get_default_dtype())


def rope_angles(positions: Tensor, dim: int, base: float = 10000.0, dtype: torch.dtype = torch.float32) -> Tensor:
    r"""The rotation angles of RoPE: ``positions[..., None] * base ** (-2i / dim)``, i = 0 .. dim/2 - 1.

    Args:
        positions: the position of each vector (int or float).
        dim: the feature width d (even: one angle per pair of features).
        base: the frequency base (> 1, finite).
        dtype: the floating-point dtype of the angles.

    Shape:
        - positions: :math:`(..., T)`; output: :math:`(..., T, \text{dim}/2)`, of ``dtype``
    """
    _check_positions("rope_angles", positions)
    _check_positive_int("rope_angles", "dim", dim)
    if dim % 2 != 0:
        raise ValueError(f"rope_angles: `dim` must be even (one angle per pair of features), got {dim}")
    _check_base("rope_angles", base)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"rope_angles: `dtype` must be a floating-point torch.dtype, got {dtype!r}")
    inverse_frequency = base ** (-torch.arange(0, dim, 2, dtype=dtype, device=positions.device) / dim)  # (dim/2,)
    return positions.to(dtype)[..., None] * inverse_frequency  # (..., T, dim/2)


def apply_rope(x: Tensor, positions: Tensor | None = None, base: float = 10000.0) -> Tensor:
    r"""Rotary position embedding (Su et al., RoFormer): rotate each pair of features by its position.

    Features (2i, 2i+1) of the vector at position p are rotated by the angle
    :math:`p \cdot \text{base}^{-2i/d}`. Rotations keep lengths, and the dot product of a query
    rotated by angle :math:`m\theta` and a key rotated by :math:`n\theta` depends only on
    :math:`(m - n)\theta`: apply it to queries and keys (never to values) and the attention
    scores see only relative positions. Adjacent pairs are the layout of the paper and of
    Meta's LLaMA code; some libraries pair feature i with feature i + d/2 instead (a fixed
    permutation of the features, equivalent after training).

    Args:
        x: queries or keys, the position axis second to last.
        positions: the position of each of the T vectors (int or float); its leading dims
            must broadcast to x's leading dims without enlarging them (the output has x's
            shape); default ``0 .. T-1``.
        base: the frequency base (10000 in RoFormer and LLaMA).

    Shape:
        - x: :math:`(..., T, d)`, d even
        - positions: :math:`(T,)` or :math:`(..., T)`
        - output: :math:`(..., T, d)`, like x
    """
    if not isinstance(x, Tensor) or x.dim() < 2:
        raise ValueError(f"apply_rope: `x` must be a tensor of shape (..., T, d), got {_describe(x)}")
    if not x.is_floating_point():
        raise TypeError(f"apply_rope: `x` must be a floating-point tensor, got dtype {x.dtype}")
    T, d = x.shape[-2], x.shape[-1]
    if d % 2 != 0:
        raise ValueError(f"apply_rope: the last dim of `x` must be even (features are rotated in pairs), got shape {tuple(x.shape)}")
    if positions is None:
        positions = torch.arange(T, device=x.device)  # (T,)
    else:
        _check_positions("apply_rope", positions)
        leading = tuple(x.shape[:-2])
        if positions.shape[-1] != T or not _broadcasts_into(tuple(positions.shape[:-1]), leading):
            raise ValueError(f"apply_rope: `positions` must have shape (T,) or (..., T) with T={T} and leading dims that "
                             f"broadcast to x's {leading} (one position per vector of x), got shape {tuple(positions.shape)}")
    _check_base("apply_rope", base)
    angle_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32  # float32 angles for half precision too
    angle = rope_angles(positions.to(x.device), d, base, angle_dtype)  # (..., T, d/2)
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)  # (..., T, d/2)
    even, odd = x[..., 0::2], x[..., 1::2]  # (..., T, d/2) each: the pairs (x_2i, x_2i+1)
    rotated = torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1)  # (..., T, d/2, 2)
    return rotated.flatten(-2)  # (..., T, d): pairs back in place


def alibi_slopes(n_head: int) -> Tensor:
    r"""ALiBi's head slopes (Press et al., "Train Short, Test Long", 2022).

    For n heads, n a power of two: the geometric sequence starting at :math:`2^{-8/n}` with that
    same ratio, :math:`m_h = 2^{-8h/n}`, h = 1..n (8 heads: 1/2, 1/4, ..., 1/256). Otherwise the
    paper's recipe: the slopes of the largest power of two below n, then every other slope of
    twice that power, until there are n.

    Shape:
        - output: :math:`(n\_head,)`, float32
    """
    _check_positive_int("alibi_slopes", "n_head", n_head)

    def power_of_two(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (h + 1) for h in range(n)]

    if math.log2(n_head).is_integer():
        slopes = power_of_two(n_head)
    else:
        closest = 2 ** math.floor(math.log2(n_head))
        slopes = power_of_two(closest) + alibi_slopes(2 * closest).tolist()[0::2][: n_head - closest]
    return torch.tensor(slopes, dtype=torch.float32)


def alibi_bias(n_head: int, length: int, causal: bool = True, device=None, dtype=None) -> Tensor:
    r"""ALiBi's additive attention bias: ``-slope_h * (i - j)`` for query i and key j.

    Add it to the scores ``q·k / sqrt(d)`` before the softmax (a float ``attn_mask``): the further
    back a key is, the more its score is lowered, at each head's own rate. With ``causal=True``
    the future (j > i) is ``-inf``; with ``causal=False`` the distance ``|i - j|`` is used both ways.

    Args:
        n_head: number of heads (one slope each, :func:`alibi_slopes`).
        length: sequence length L (queries and keys).
        causal: block the future with ``-inf``.
        device, dtype: of the result (default float32).

    Shape:
        - output: :math:`(n\_head, L, L)`; for ``nn.MultiheadAttention``'s 3-D float mask repeat
          it over the batch, ``bias.repeat(N, 1, 1)`` -> :math:`(N \cdot n\_head, L, L)`.
    """
    _check_positive_int("alibi_bias", "length", length)
    if not isinstance(causal, bool):
        raise TypeError(f"alibi_bias: `causal` must be a bool, got {causal!r}")
    _check_float_dtype("alibi_bias", dtype)
    slopes = alibi_slopes(n_head).to(device=device, dtype=dtype or torch.float32)  # (h,)
    position = torch.arange(length, device=device)
    offset = position[None, :] - position[:, None]  # (L, L): j - i, integers (<= 0 at and below the diagonal)
    if not causal:
        offset = -offset.abs()  # (L, L): -|i - j|
    bias = slopes[:, None, None] * offset.to(slopes.dtype)  # (h, L, L): -m_h * distance
    if causal:
        future = torch.ones(length, length, dtype=torch.bool, device=device).triu(1)  # (L, L)
        bias = bias.masked_fill(future, float("-inf"))  # (h, L, L)
    return bias


def _broadcasts_into(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    """Whether a tensor of ``shape`` broadcasts to ``target`` without making it bigger."""
    if len(shape) > len(target):
        return False
    return all(s in (1, t) for s, t in zip(reversed(shape), reversed(target)))


def _describe(x) -> str:
    return f"shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
