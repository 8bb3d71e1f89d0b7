"""Every activation of ``torch.nn``, written from elementary tensor operations.

Each function has the name, signature and defaults of its ``torch.nn.functional`` twin
and agrees with it in value *and* gradient (autograd differentiates these formulas), on
float64 grids that include the extreme values and the kinks. No function calls the torch
function it re-implements: the building blocks are comparisons, ``torch.where``,
arithmetic, ``exp``/``expm1``, ``log``/``log1p``, ``erf`` and reductions (``amax``,
``sum``). Where a function builds on another (``silu`` on ``sigmoid``, ``mish`` on
``tanh`` and ``softplus``) it uses the version in this module.

Three conventions make the gradients match PyTorch's exactly:

* **Kinks.** At a point where the function has no derivative, PyTorch picks one side:
  ``relu'(0) = 0``, ``leaky_relu'(0) = negative_slope``, ``elu'(0) = alpha``,
  ``hardtanh'`` is 0 *at* ``min_val`` and ``max_val``, ``hardshrink'(±lambd) = 0``...
  The comparison in each ``torch.where`` is written (``>`` or ``>=``) so that autograd
  takes the same side.
* **Safe branches.** ``torch.where`` evaluates both branches and sends a zero gradient
  into the one it did not pick, but ``0 * inf = nan``: the branch that is not used must
  not overflow. So ``elu`` exponentiates only the non-positive part of ``x``, ``softplus``
  only values below its threshold, and so on.
* **NaN goes through.** Like PyTorch, a NaN input gives a NaN output: the condition is
  written so that NaN (for which every comparison is False) falls into a branch that
  carries ``x``.

``inplace=True`` computes the result out of place, then copies it into ``input`` and
returns ``input``, so it fails in the same situations as PyTorch's in-place kernels (a leaf
that requires grad; a tensor that autograd saved for the backward pass).
"""

from __future__ import annotations

import math
import warnings

import torch

__all__ = [
    "relu", "threshold", "rrelu", "hardtanh", "relu6", "sigmoid", "hardsigmoid", "tanh", "silu", "mish",
    "hardswish", "elu", "celu", "selu", "glu", "gelu", "hardshrink", "leaky_relu", "logsigmoid", "softplus",
    "softshrink", "prelu", "softsign", "tanhshrink", "softmin", "softmax", "log_softmax",
]  # fmt: skip

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _check_tensor(name: str, input) -> None:
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"{name}: `input` must be a torch.Tensor, got {type(input).__name__}")


def _finish(input: torch.Tensor, result: torch.Tensor, inplace: bool) -> torch.Tensor:
    """Return ``result``, or write it into ``input`` and return ``input`` when ``inplace``."""
    return input.copy_(result) if inplace else result


def _neg_abs(x: torch.Tensor) -> torch.Tensor:
    """``-|x|`` whose gradient at 0 is -1 (the branch ``x >= 0`` is taken there)."""
    return torch.where(x < 0, x, -x)


# --------------------------------------------------------------------------- ReLU family


def relu(input: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    r"""ReLU: :math:`\max(0, x)`. Gradient 0 at ``x = 0``.

    Args:
        input: any tensor.
        inplace: write the result into ``input``.

    Shape:
        - Input: :math:`(*)`; Output: the same shape.
    """
    _check_tensor("relu", input)
    return _finish(input, torch.where(input <= 0, 0.0, input), inplace)


def threshold(input: torch.Tensor, threshold: float, value: float, inplace: bool = False) -> torch.Tensor:
    r"""Threshold: ``x`` where ``x > threshold``, else ``value`` (strict: ``x = threshold`` gives ``value``).

    Args:
        input: any tensor.
        threshold: the value to compare with.
        value: what replaces the entries ``<= threshold``.
        inplace: write the result into ``input``.

    Shape:
        - Input: :math:`(*)`; Output: the same shape.
    """
    _check_tensor("threshold", input)
    return _finish(input, torch.where(input <= threshold, value, input), inplace)


def leaky_relu(input: torch.Tensor, negative_slope: float = 0.01, inplace: bool = False) -> torch.Tensor:
    r"""LeakyReLU: ``x`` for ``x > 0``, else ``negative_slope * x`` (gradient ``negative_slope`` at 0).

    Args:
        input: any tensor.
        negative_slope: slope for negative inputs (any float; > 1 and < 0 are allowed).
        inplace: write the result into ``input``.

    Shape:
        - Input: :math:`(*)`; Output: the same shape.
    """
    _check_tensor("leaky_relu", input)
    return _finish(input, torch.where(input > 0, input, input * negative_slope), inplace)


def rrelu(
    input: torch.Tensor, lower: float = 1.0 / 8, upper: float = 1.0 / 3, training: bool = False, inplace: bool = False
) -> torch.Tensor:
    r"""Randomized leaky ReLU: ``x`` for ``x >= 0``, else ``a * x``.

    In training, ``a ~ U(lower, upper)`` is drawn afresh for every element on every call
    (and the gradient is that ``a``). Otherwise ``a = (lower + upper) / 2``: note that the
    functional form defaults to ``training=False``, while ``nn.RReLU`` passes its
    ``self.training``.

    Args:
        input: any tensor.
        lower, upper: bounds of the slope, ``lower <= upper``.
        training: sample the slopes.
        inplace: write the result into ``input``.

    Shape:
        - Input: :math:`(*)`; Output: the same shape.
    """
    _check_tensor("rrelu", input)
    if lower > upper:
        raise ValueError(f"rrelu: `lower` must be <= `upper`, got lower={lower} and upper={upper}")
    if not training:
        return leaky_relu(input, (lower + upper) / 2, inplace)
    slopes = torch.empty_like(input).uniform_(lower, upper)  # one slope per element
    return _finish(input, torch.where(input >= 0, input, input * slopes), inplace)


def hardtanh(input: torch.Tensor, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> torch.Tensor:
    r"""Hardtanh: ``x`` clipped to ``[min_val, max_val]``; gradient 1 strictly inside, 0 elsewhere.

    Args:
        input: any tensor.
        min_val, max_val: the limits, ``min_val < max_val``.
        inplace: write the result into ``input``.

    Shape:
        - Input: :math:`(*)`; Output: the same shape.
    """
    _check_tensor("hardtanh", input)
    if not max_val > min_val:
        raise ValueError(f"hardtanh: `max_val` must be greater than `min_val`, got min_val={min_val} and max_val={max_val}")
    clipped = torch.where(input <= min_val, min_val, torch.where(input >= max_val, max_val, input))
    return _finish(input, clipped, inplace)


def relu6(input: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    r"""ReLU6: :math:`\min(\max(0, x), 6)`, which is ``hardtanh(x, 0, 6)``.

    Shape:
        - Input: :math:`(*)`; Output: the same shape.
    """
    return hardtanh(input, 0.0, 6.0, inplace)


def prelu(input: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    r"""PReLU: ``x`` for ``x > 0``, else ``weight * x``, with one learnable slope per channel.

    Args:
        input: tensor whose channels are along dim 1 (a 0-D or 1-D input has one channel).
        weight: 1 slope, or ``C = input.size(1)`` slopes.

    Shape:
        - Input: :math:`(N, C, *)`, :math:`(C)` or :math:`()`; weight: :math:`(1)` or :math:`(C)`.
        - Output: the shape of the input.
    """
    _check_tensor("prelu", input)
    _check_tensor("prelu", weight)
    if weight.dim() > 1:
        raise ValueError(f"prelu: `weight` must be 0-D or 1-D, got shape {tuple(weight.shape)}")
    channels = input.size(1) if input.dim() >= 2 else 1
    if weight.numel() not in (1, channels):
        raise ValueError(
            f"prelu: `weight` must have 1 element or one per channel (input.size(1) = {channels}), "
            f"got {weight.numel()} elements for input of shape {tuple(input.shape)}"
        )
    if weight.numel() > 1:
        weight = weight.reshape(1, channels, *([1] * (input.dim() - 2)))  # (1, C, 1, ...)
    else:
        weight = weight.reshape(())
    return torch.where(input > 0, input, weight * input)


# --------------------------------------------------------------------------- exponential family (ELU...)


def elu(input: torch.Tensor, alpha: float = 1.0, inplace: bool = False) -> torch.Tensor:
    r"""ELU: ``x`` for ``x > 0``, else :math:`\alpha (e^x - 1)` (gradient ``alpha`` at 0).

    Args:
        input: any tensor.
        alpha: the value ELU tends to is ``-alpha`` for large negative ``x``.
        inplace: write the result into ``input``.

    Shape:
        - Input: :math:`(*)`; Output: the same shape.
    """
    _check_tensor("elu", input)
    negative_part = torch.where(input > 0, 0.0, input)  # only <= 0 reaches expm1: no overflow
    return _finish(input, torch.where(input > 0, input, alpha * torch.expm1(negative_part)), inplace)


def celu(input: torch.Tensor, alpha: float = 1.0, inplace: bool = False) -> torch.Tensor:
    r"""CELU: :math:`\max(0,x) + \min(0, \alpha (e^{x/\alpha} - 1))` (continuously differentiable; slope 1 at 0).

    Args:
        input: any tensor.
        alpha: must not be 0.
        inplace: write the result into ``input``.

    Shape:
        - Input: :math:`(*)`; Output: the same shape.
    """
    _check_tensor("celu", input)
    if alpha == 0:
        raise ValueError("celu: `alpha` must not be 0 (it divides x), got alpha=0")
    negative_part = torch.where(input > 0, 0.0, input)
    return _finish(input, torch.where(input > 0, input, alpha * torch.expm1(negative_part / alpha)), inplace)


def selu(input: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    r"""SELU: ``scale * elu(x, alpha)`` with the self-normalising constants ``alpha ≈ 1.6733``, ``scale ≈ 1.0507``.

    Shape:
        - Input: :math:`(*)`; Output: the same shape.
    """
    _check_tensor("selu", input)
    negative_part = torch.where(input > 0, 0.0, input)
    result = SELU_SCALE * torch.where(input > 0, input, SELU_ALPHA * torch.expm1(negative_part))
    return _finish(input, result, inplace)


# --------------------------------------------------------------------------- squashing


def sigmoid(input: torch.Tensor) -> torch.Tensor:
    r"""Sigmoid: :math:`1 / (1 + e^{-x})`, computed without overflow as ``e / (1 + e)`` for ``x < 0``.

    Shape:
        - Input: :math:`(*)`; Output: the same shape.
    """
    _check_tensor("sigmoid", input)
    e = torch.exp(_neg_abs(input))  # e^{-|x|} <= 1: never overflows
    return torch.where(input < 0, e / (1 + e), 1 / (1 + e))


def tanh(input: torch.Tensor) -> torch.Tensor:
    r"""Tanh: :math:`(e^x - e^{-x}) / (e^x + e^{-x})`, as ``sign(x) (1 - e^{-2|x|}) / (1 + e^{-2|x|})``.

    Shape:
        - Input: :math:`(*)`; Output: the same shape.
    """
    _check_tensor("tanh", input)
    e = torch.exp(2 * _neg_abs(input))  # e^{-2|x|}, in (0, 1]
    magnitude = -torch.expm1(2 * _neg_abs(input)) / (1 + e)  # tanh(|x|), accurate near 0
    return torch.where(input < 0, -magnitude, magnitude)


def hardsigmoid(input: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    r"""Hardsigmoid: 0 for ``x <= -3``, 1 for ``x >= 3``, else :math:`x/6 + 1/2` (not ``x/6``).

    Shape:
        - Input: :math:`(*)`; Output: the same shape.
    """
    _check_tensor("hardsigmoid", input)
    result = torch.where(input <= -3, 0.0, torch.where(input >= 3, 1.0, input / 6 + 0.5))
    return _finish(input, result, inplace)


def softsign(input: torch.Tensor) -> torch.Tensor:
    r"""Softsign: :math:`x / (1 + |x|)`.

    Shape:
        - Input: :math:`(*)`; Output: the same shape.
    """
    _check_tensor("softsign", input)
    return input / (1 + input.abs())


def logsigmoid(input: torch.Tensor) -> torch.Tensor:
    r"""LogSigmoid: :math:`\log \sigma(x)`, computed stably as :math:`\min(0, x) - \log(1 + e^{-|x|})`.

    Shape:
        - Input: :math:`(*)`; Output: the same shape.
    """
    _check_tensor("logsigmoid", input)
    return torch.where(input < 0, input, 0.0) - torch.log1p(torch.exp(_neg_abs(input)))


# --------------------------------------------------------------------------- smooth ReLUs


def softplus(input: torch.Tensor, beta: float = 1.0, threshold: float = 20.0) -> torch.Tensor:
    r"""Softplus: :math:`\frac{1}{\beta}\log(1 + e^{\beta x})`, and exactly ``x`` once ``beta * x > threshold``.

    Args:
        input: any tensor.
        beta: sharpness.
        threshold: above ``beta * x > threshold`` the function is the identity (gradient 1).

    Shape:
        - Input: :math:`(*)`; Output: the same shape.
    """
    _check_tensor("softplus", input)
    scaled = input * beta
    linear = scaled > threshold
    safe = torch.where(linear, 0.0, scaled)  # keep exp() away from the values it would overflow on
    return torch.where(linear, input, torch.log1p(torch.exp(safe)) / beta)


def silu(input: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    r"""SiLU (Swish): :math:`x \sigma(x)`.

    Shape:
        - Input: :math:`(*)`; Output: the same shape.
    """
    _check_tensor("silu", input)
    return _finish(input, input * sigmoid(input), inplace)


def mish(input: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    r"""Mish: :math:`x \tanh(\mathrm{softplus}(x))`.

    Shape:
        - Input: :math:`(*)`; Output: the same shape.
    """
    _check_tensor("mish", input)
    return _finish(input, input * tanh(softplus(input)), inplace)


def hardswish(input: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    r"""Hardswish: :math:`x \cdot \mathrm{hardsigmoid}(x)`: 0 for ``x <= -3``, ``x`` for ``x >= 3``, else ``x (x + 3) / 6``.

    Shape:
        - Input: :math:`(*)`; Output: the same shape.
    """
    _check_tensor("hardswish", input)
    return _finish(input, input * hardsigmoid(input), inplace)


def gelu(input: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    r"""GELU: :math:`x \Phi(x) = \frac{x}{2}(1 + \mathrm{erf}(x/\sqrt{2}))`.

    With ``approximate='tanh'``: :math:`\frac{x}{2}(1 + \tanh(\sqrt{2/\pi}(x + 0.044715 x^3)))`,
    a different function (they differ by up to 4.7e-4).

    Args:
        input: any tensor.
        approximate: ``'none'`` or ``'tanh'``.

    Shape:
        - Input: :math:`(*)`; Output: the same shape.
    """
    _check_tensor("gelu", input)
    if approximate == "none":
        return input * 0.5 * (1 + torch.erf(input * (1 / math.sqrt(2))))
    if approximate == "tanh":
        inner = math.sqrt(2 / math.pi) * (input + 0.044715 * input * input * input)
        return 0.5 * input * (1 + tanh(inner))
    raise ValueError(f"gelu: `approximate` must be 'none' or 'tanh', got {approximate!r}")


# --------------------------------------------------------------------------- shrinkage


def hardshrink(input: torch.Tensor, lambd: float = 0.5) -> torch.Tensor:
    r"""Hardshrink: ``x`` where :math:`|x| > \lambda`, else 0 (``|x| = lambd`` gives 0).

    Shape:
        - Input: :math:`(*)`; Output: the same shape.
    """
    _check_tensor("hardshrink", input)
    inside = (input >= -lambd) & (input <= lambd)
    return torch.where(inside, 0.0, input)


def softshrink(input: torch.Tensor, lambd: float = 0.5) -> torch.Tensor:
    r"""Softshrink: :math:`x - \lambda` for :math:`x > \lambda`, :math:`x + \lambda` for :math:`x < -\lambda`, else 0.

    Args:
        input: any tensor.
        lambd: the half-width of the dead zone, ``>= 0``.

    Shape:
        - Input: :math:`(*)`; Output: the same shape.
    """
    _check_tensor("softshrink", input)
    if lambd < 0:
        raise ValueError(f"softshrink: `lambd` must be >= 0, got {lambd}")
    inside = (input >= -lambd) & (input <= lambd)
    return torch.where(inside, 0.0, torch.where(input > 0, input - lambd, input + lambd))


def tanhshrink(input: torch.Tensor) -> torch.Tensor:
    r"""Tanhshrink: :math:`x - \tanh(x)`.

    Shape:
        - Input: :math:`(*)`; Output: the same shape.
    """
    _check_tensor("tanhshrink", input)
    return input - tanh(input)


# --------------------------------------------------------------------------- gating


def glu(input: torch.Tensor, dim: int = -1) -> torch.Tensor:
    r"""Gated linear unit: split ``input`` in halves ``a, b`` along ``dim``; return :math:`a \otimes \sigma(b)`.

    Args:
        input: a tensor with an even size along ``dim``.
        dim: the dimension to split.

    Shape:
        - Input: :math:`(*_1, 2M, *_2)`; Output: :math:`(*_1, M, *_2)`.
    """
    _check_tensor("glu", input)
    if input.dim() == 0:
        raise ValueError("glu: `input` must have at least one dimension, got a 0-D tensor")
    if not -input.dim() <= dim < input.dim():
        raise ValueError(f"glu: `dim` must be in [{-input.dim()}, {input.dim() - 1}] for a {input.dim()}-D input, got {dim}")
    size = input.size(dim)
    if size % 2:
        raise ValueError(
            f"glu: `input` must have an even size along dim {dim} (it is split in two halves), "
            f"got size {size} (input shape {tuple(input.shape)})"
        )
    a, b = input.split(size // 2, dim=dim)  # each (*, M, *)
    return a * sigmoid(b)


# --------------------------------------------------------------------------- softmax family


def _softmax_dim(name: str, input: torch.Tensor, dim: int | None, stacklevel: int) -> int:
    if dim is None:
        warnings.warn(
            f"Implicit dimension choice for {name} has been deprecated. Change the call to include dim=X as an argument.",
            stacklevel=stacklevel,
        )
        return 0 if input.dim() in (0, 1, 3) else 1
    if not isinstance(dim, int):
        raise TypeError(f"{name}: `dim` must be an int, got {type(dim).__name__}")
    n = max(input.dim(), 1)
    if not -n <= dim < n:
        raise ValueError(f"{name}: `dim` must be in [{-n}, {n - 1}] for a {input.dim()}-D input, got {dim}")
    return dim


def _shifted(input: torch.Tensor, dim: int) -> torch.Tensor:
    """``x - max(x)`` along ``dim``: the largest value becomes 0, so ``exp`` cannot overflow."""
    if input.dim() == 0:
        return input - input.detach()
    # The shift does not change softmax, so it needs no gradient: detach it.
    return input - input.detach().amax(dim=dim, keepdim=True)


def softmax(input: torch.Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: torch.dtype | None = None) -> torch.Tensor:
    r"""Softmax along ``dim``: :math:`e^{x_i} / \sum_j e^{x_j}`, computed as :math:`e^{x_i - m} / \sum_j e^{x_j - m}`, ``m = max x``.

    Args:
        input: any tensor.
        dim: the dimension that sums to 1. Always pass it (``None`` warns and guesses).
        _stacklevel: where the ``dim=None`` warning points (as in PyTorch).
        dtype: cast ``input`` to this dtype first.

    Shape:
        - Input: :math:`(*)`; Output: the same shape.
    """
    _check_tensor("softmax", input)
    dim = _softmax_dim("softmax", input, dim, _stacklevel)
    if dtype is not None:
        input = input.to(dtype)
    e = torch.exp(_shifted(input, dim))  # every entry in (0, 1]
    return e / e.sum(dim=dim, keepdim=True)


def softmin(input: torch.Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: torch.dtype | None = None) -> torch.Tensor:
    r"""Softmin along ``dim``: ``softmax(-x)``.

    Shape:
        - Input: :math:`(*)`; Output: the same shape.
    """
    _check_tensor("softmin", input)
    dim = _softmax_dim("softmin", input, dim, _stacklevel)
    if dtype is not None:
        input = input.to(dtype)
    return softmax(-input, dim)


def log_softmax(input: torch.Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: torch.dtype | None = None) -> torch.Tensor:
    r"""LogSoftmax along ``dim``: :math:`x_i - \log \sum_j e^{x_j}`, with the max subtracted first.

    Finite even where ``log(softmax(x))`` gives ``-inf``.

    Shape:
        - Input: :math:`(*)`; Output: the same shape.
    """
    _check_tensor("log_softmax", input)
    dim = _softmax_dim("log_softmax", input, dim, _stacklevel)
    if dtype is not None:
        input = input.to(dtype)
    shifted = _shifted(input, dim)
    return shifted - torch.log(torch.exp(shifted).sum(dim=dim, keepdim=True))
