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

**Dtypes** follow PyTorch: most functions take floating-point input only; ``relu``,
``relu6``, ``hardtanh`` and ``threshold`` also take integers and keep their dtype;
``sigmoid``, ``tanh``, ``softsign`` and ``tanhshrink`` turn integers into the default
float dtype. float16 and bfloat16 are computed in float32 and rounded once at the end, as
PyTorch's kernels do (``exp(20)`` would overflow float16). Anything else (a wrong type, a
string where a number goes) is refused with an error that names the argument.

Differences from PyTorch:
    1. Complex input is refused; PyTorch accepts it for ``sigmoid``, ``tanh``, ``silu``,
       ``softsign`` and ``tanhshrink`` (the comparisons these formulas branch on do not
       exist for complex numbers).
    2. ``rrelu(..., training=True)`` accepts float16 on the CPU, where PyTorch's CPU kernel is
       not implemented for float16 (its CUDA kernel is).
"""

from __future__ import annotations

import math
import numbers
import warnings

import torch

from .i18n import _

__all__ = [
    "relu", "threshold", "rrelu", "hardtanh", "relu6", "sigmoid", "hardsigmoid", "tanh", "silu", "mish",
    "hardswish", "elu", "celu", "selu", "glu", "gelu", "hardshrink", "leaky_relu", "logsigmoid", "softplus",
    "softshrink", "prelu", "softsign", "tanhshrink", "softmin", "softmax", "log_softmax",
]  # fmt: skip

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


_REDUCED_PRECISION = (torch.float16, torch.bfloat16)


def _check_tensor(fn: str, input, arg: str = "input") -> None:
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"{fn}: `{arg}` must be a torch.Tensor, got {type(input).__name__}")


def _check_number(fn: str, arg: str, value) -> None:
    """A Python number or a 0-D tensor, as PyTorch's ``Scalar`` arguments accept."""
    if isinstance(value, torch.Tensor) and value.dim() == 0:
        return
    if not isinstance(value, numbers.Real):
        raise TypeError(f"{fn}: `{arg}` must be a number, got {type(value).__name__} {value!r}")


def _compute_dtype(x: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 in float32, like PyTorch's kernels (one rounding at the end); others as they are."""
    return x.float() if x.dtype in _REDUCED_PRECISION else x


def _float_input(fn: str, input) -> torch.Tensor:
    """Refuse what PyTorch refuses (non-tensors, integer, bool, complex); return the tensor to compute with."""
    _check_tensor(fn, input)
    if not input.is_floating_point():
        raise TypeError(
            f"{fn}: `input` must be a floating-point tensor (float16/32/64 or bfloat16), got dtype {input.dtype}; "
            f"convert it first, e.g. input.float()"
        )
    return _compute_dtype(input)


def _real_input(fn: str, input) -> torch.Tensor:
    """Integers or floats (``relu``, ``threshold``, ``hardtanh``): bool and complex are refused, as in PyTorch."""
    _check_tensor(fn, input)
    if input.dtype == torch.bool or input.is_complex():
        raise TypeError(f"{fn}: `input` must be an integer or floating-point tensor, got dtype {input.dtype}")
    return _compute_dtype(input)


def _as_integers(fn: str, input: torch.Tensor, **parameters) -> list[int]:
    """The parameters of an integer ``input``, truncated to integers as PyTorch does; they must fit its dtype."""
    info = torch.iinfo(input.dtype)
    values = []
    for arg, value in parameters.items():
        value = int(value)
        if not info.min <= value <= info.max:
            raise ValueError(f"{fn}: `{arg}`={value} does not fit the dtype of `input` ({input.dtype}: {info.min}..{info.max})")
        values.append(value)
    return values


def _promoted_input(fn: str, input, bool_ok: bool = True) -> torch.Tensor:
    """Integers (and bool, where PyTorch takes it) become the default float dtype, as in ``torch.sigmoid``."""
    _check_tensor(fn, input)
    if input.is_complex() or (input.dtype == torch.bool and not bool_ok):
        raise TypeError(f"{fn}: `input` must be a real (not complex{'' if bool_ok else ' or bool'}) tensor, got dtype {input.dtype}")
    if not input.is_floating_point():
        return input.to(torch.get_default_dtype())
    return _compute_dtype(input)


def _promoted_result(input: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
    return result.to(input.dtype) if input.is_floating_point() else result


def _finish(input: torch.Tensor, result: torch.Tensor, inplace: bool) -> torch.Tensor:
    """``result`` in ``input``'s dtype, or written into ``input`` (and ``input`` returned) when ``inplace``."""
    return input.copy_(result) if inplace else result.to(input.dtype)


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
    x = _real_input("relu", input)
    return _finish(input, torch.where(x <= 0, 0, x), inplace)


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
    x = _real_input("threshold", input)
    _check_number("threshold", "threshold", threshold)
    _check_number("threshold", "value", value)
    if not x.is_floating_point():  # integer input: the parameters are truncated to integers, as in PyTorch
        threshold, value = _as_integers("threshold", input, threshold=threshold, value=value)
    return _finish(input, torch.where(x <= threshold, value, x), inplace)


def leaky_relu(input: torch.Tensor, negative_slope: float = 0.01, inplace: bool = False) -> torch.Tensor:
    r"""LeakyReLU: ``x`` for ``x > 0``, else ``negative_slope * x`` (gradient ``negative_slope`` at 0).

    Args:
        input: any tensor.
        negative_slope: slope for negative inputs (any float; > 1 and < 0 are allowed).
        inplace: write the result into ``input``.

    Shape:
        - Input: :math:`(*)`; Output: the same shape.
    """
    x = _float_input("leaky_relu", input)
    _check_number("leaky_relu", "negative_slope", negative_slope)
    return _finish(input, torch.where(x > 0, x, x * negative_slope), inplace)


def rrelu(
    input: torch.Tensor, lower: float = 1.0 / 8, upper: float = 1.0 / 3, training: bool = False, inplace: bool = False
) -> torch.Tensor:
    r"""Randomized leaky ReLU: ``x`` for ``x > 0``, else ``a * x``.

    In training, ``a ~ U(lower, upper)`` is drawn afresh for every element on every call
    (and the gradient is that ``a``, also at exactly ``x = 0``, as in PyTorch). Otherwise ``a = (lower + upper) / 2``: note that the
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
    x = _float_input("rrelu", input)
    _check_number("rrelu", "lower", lower)
    _check_number("rrelu", "upper", upper)
    if not isinstance(training, bool):
        raise TypeError(f"rrelu: `training` must be a bool, got {type(training).__name__} {training!r}")
    if lower > upper:
        raise ValueError(f"rrelu: `lower` must be <= `upper`, got lower={lower} and upper={upper}")
    if not training:
        return leaky_relu(input, (lower + upper) / 2, inplace)
    slopes = torch.empty_like(x).uniform_(float(lower), float(upper))  # one slope per element
    return _finish(input, torch.where(x > 0, x, x * slopes), inplace)


def hardtanh(input: torch.Tensor, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> torch.Tensor:
    r"""Hardtanh: ``x`` clipped to ``[min_val, max_val]``; gradient 1 strictly inside, 0 elsewhere.

    Args:
        input: any tensor.
        min_val, max_val: the limits, ``min_val <= max_val``.
        inplace: write the result into ``input``.

    Shape:
        - Input: :math:`(*)`; Output: the same shape.
    """
    x = _real_input("hardtanh", input)
    _check_number("hardtanh", "min_val", min_val)
    _check_number("hardtanh", "max_val", max_val)
    if min_val > max_val:
        raise ValueError(f"hardtanh: `min_val` must not be greater than `max_val`, got min_val={min_val} and max_val={max_val}")
    if not x.is_floating_point():  # integer input: the limits are truncated to integers, as in PyTorch
        if input.dtype == torch.uint8 and min(min_val, max_val) < 0:
            raise ValueError(f"hardtanh: an unsigned (uint8) `input` needs limits >= 0, got min_val={min_val} and max_val={max_val}")
        min_val, max_val = _as_integers("hardtanh", input, min_val=min_val, max_val=max_val)
    clipped = torch.where(x <= min_val, min_val, torch.where(x >= max_val, max_val, x))
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
    x = _float_input("prelu", input)
    _check_tensor("prelu", weight, "weight")
    if weight.dtype != input.dtype:
        raise TypeError(f"prelu: `weight` must have the dtype of the input ({input.dtype}), got dtype {weight.dtype}")
    if weight.device != input.device:
        raise ValueError(f"prelu: `weight` must be on the device of the input ({input.device}), got {weight.device}")
    if weight.dim() > 1:
        raise ValueError(f"prelu: `weight` must be 0-D or 1-D, got shape {tuple(weight.shape)}")
    channels = input.size(1) if input.dim() >= 2 else 1
    if weight.numel() not in (1, channels):
        raise ValueError(
            f"prelu: `weight` must have 1 element or one per channel (input.size(1) = {channels}), "
            f"got {weight.numel()} elements for input of shape {tuple(input.shape)}"
        )
    weight = _compute_dtype(weight)
    if weight.numel() > 1:
        weight = weight.reshape(1, channels, *([1] * (input.dim() - 2)))  # (1, C, 1, ...)
    else:
        weight = weight.reshape(())
    return torch.where(x > 0, x, weight * x).to(input.dtype)


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
    x = _float_input("elu", input)
    _check_number("elu", "alpha", alpha)
    negative_part = torch.where(x > 0, 0.0, x)  # only <= 0 reaches expm1: no overflow
    return _finish(input, torch.where(x > 0, x, alpha * torch.expm1(negative_part)), inplace)


def celu(input: torch.Tensor, alpha: float = 1.0, inplace: bool = False) -> torch.Tensor:
    r"""CELU: :math:`\max(0,x) + \min(0, \alpha (e^{x/\alpha} - 1))` (continuously differentiable; slope 1 at 0).

    Args:
        input: any tensor.
        alpha: must not be 0.
        inplace: write the result into ``input``.

    Shape:
        - Input: :math:`(*)`; Output: the same shape.
    """
    x = _float_input("celu", input)
    _check_number("celu", "alpha", alpha)
    if alpha == 0:
        raise ValueError("celu: `alpha` must not be 0 (it divides x), got alpha=0")
    negative_part = torch.where(x > 0, 0.0, x)
    return _finish(input, torch.where(x > 0, x, alpha * torch.expm1(negative_part / alpha)), inplace)


def selu(input: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    r"""SELU: ``scale * elu(x, alpha)`` with the self-normalising constants ``alpha ≈ 1.6733``, ``scale ≈ 1.0507``.

    Shape:
        - Input: :math:`(*)`; Output: the same shape.
    """
    x = _float_input("selu", input)
    negative_part = torch.where(x > 0, 0.0, x)
    result = SELU_SCALE * torch.where(x > 0, x, SELU_ALPHA * torch.expm1(negative_part))
    return _finish(input, result, inplace)


# --------------------------------------------------------------------------- squashing


def sigmoid(input: torch.Tensor) -> torch.Tensor:
    r"""Sigmoid: :math:`1 / (1 + e^{-x})`, computed without overflow as ``e / (1 + e)`` for ``x < 0``.

    Shape:
        - Input: :math:`(*)`; Output: the same shape.
    """
    x = _promoted_input("sigmoid", input)
    e = torch.exp(_neg_abs(x))  # e^{-|x|} <= 1: never overflows
    return _promoted_result(input, torch.where(x < 0, e / (1 + e), 1 / (1 + e)))


def tanh(input: torch.Tensor) -> torch.Tensor:
    r"""Tanh: :math:`(e^x - e^{-x}) / (e^x + e^{-x})`, as ``sign(x) (1 - e^{-2|x|}) / (1 + e^{-2|x|})``.

    Shape:
        - Input: :math:`(*)`; Output: the same shape.
    """
    x = _promoted_input("tanh", input)
    e = torch.exp(2 * _neg_abs(x))  # e^{-2|x|}, in (0, 1]
    magnitude = -torch.expm1(2 * _neg_abs(x)) / (1 + e)  # tanh(|x|), accurate near 0
    return _promoted_result(input, torch.where(x < 0, -magnitude, magnitude))


def hardsigmoid(input: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    r"""Hardsigmoid: 0 for ``x <= -3``, 1 for ``x >= 3``, else :math:`x/6 + 1/2` (not ``x/6``).

    Shape:
        - Input: :math:`(*)`; Output: the same shape.
    """
    x = _float_input("hardsigmoid", input)
    result = torch.where(x <= -3, 0.0, torch.where(x >= 3, 1.0, x / 6 + 0.5))
    return _finish(input, result, inplace)


def softsign(input: torch.Tensor) -> torch.Tensor:
    r"""Softsign: :math:`x / (1 + |x|)`.

    Shape:
        - Input: :math:`(*)`; Output: the same shape.
    """
    _promoted_input("softsign", input, bool_ok=False)
    x = _compute_dtype(input)  # integers stay integers up to the division, as in PyTorch (uint8: 255 + 1 wraps to 0)
    return _promoted_result(input, x / (1 + x.abs()))


def logsigmoid(input: torch.Tensor) -> torch.Tensor:
    r"""LogSigmoid: :math:`\log \sigma(x)`, computed stably as :math:`\min(0, x) - \log(1 + e^{-|x|})`.

    Shape:
        - Input: :math:`(*)`; Output: the same shape.
    """
    x = _float_input("logsigmoid", input)
    return (torch.where(x < 0, x, 0.0) - torch.log1p(torch.exp(_neg_abs(x)))).to(input.dtype)


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
    x = _float_input("softplus", input)
    _check_number("softplus", "beta", beta)
    _check_number("softplus", "threshold", threshold)
    scaled = x * beta
    linear = scaled > threshold
    safe = torch.where(linear, 0.0, scaled)  # keep exp() away from the values it would overflow on
    return torch.where(linear, x, torch.log1p(torch.exp(safe)) / beta).to(input.dtype)


def silu(input: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    r"""SiLU (Swish): :math:`x \sigma(x)`.

    Shape:
        - Input: :math:`(*)`; Output: the same shape.
    """
    x = _float_input("silu", input)
    return _finish(input, x * sigmoid(x), inplace)


def mish(input: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    r"""Mish: :math:`x \tanh(\mathrm{softplus}(x))`.

    Shape:
        - Input: :math:`(*)`; Output: the same shape.
    """
    x = _float_input("mish", input)
    return _finish(input, x * tanh(softplus(x)), inplace)


def hardswish(input: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    r"""Hardswish: :math:`x \cdot \mathrm{hardsigmoid}(x)`: 0 for ``x <= -3``, ``x`` for ``x >= 3``, else ``x (x + 3) / 6``.

    Shape:
        - Input: :math:`(*)`; Output: the same shape.
    """
    x = _float_input("hardswish", input)
    return _finish(input, x * hardsigmoid(x), inplace)


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
    x = _float_input("gelu", input)
    if not isinstance(approximate, str):
        raise TypeError(f"gelu: `approximate` must be the string 'none' or 'tanh', got {type(approximate).__name__} {approximate!r}")
    if approximate == "none":
        return (x * 0.5 * (1 + torch.erf(x * (1 / math.sqrt(2))))).to(input.dtype)
    if approximate == "tanh":
        inner = math.sqrt(2 / math.pi) * (x + 0.044715 * x * x * x)
        return (0.5 * x * (1 + tanh(inner))).to(input.dtype)
    raise ValueError(f"gelu: `approximate` must be 'none' or 'tanh', got {approximate!r}")


# --------------------------------------------------------------------------- shrinkage


def hardshrink(input: torch.Tensor, lambd: float = 0.5) -> torch.Tensor:
    r"""Hardshrink: ``x`` where :math:`|x| > \lambda`, else 0 (``|x| = lambd`` gives 0).

    Shape:
        - Input: :math:`(*)`; Output: the same shape.
    """
    x = _float_input("hardshrink", input)
    _check_number("hardshrink", "lambd", lambd)
    inside = (x >= -lambd) & (x <= lambd)
    return torch.where(inside, 0.0, x).to(input.dtype)


def softshrink(input: torch.Tensor, lambd: float = 0.5) -> torch.Tensor:
    r"""Softshrink: :math:`x - \lambda` for :math:`x > \lambda`, :math:`x + \lambda` for :math:`x < -\lambda`, else 0.

    Args:
        input: any tensor.
        lambd: the half-width of the dead zone, ``>= 0``.

    Shape:
        - Input: :math:`(*)`; Output: the same shape.
    """
    x = _float_input("softshrink", input)
    _check_number("softshrink", "lambd", lambd)
    if lambd < 0:
        raise ValueError(f"softshrink: `lambd` must be >= 0, got {lambd}")
    inside = (x >= -lambd) & (x <= lambd)
    return torch.where(inside, 0.0, torch.where(x > 0, x - lambd, x + lambd)).to(input.dtype)


def tanhshrink(input: torch.Tensor) -> torch.Tensor:
    r"""Tanhshrink: :math:`x - \tanh(x)`.

    Shape:
        - Input: :math:`(*)`; Output: the same shape.
    """
    x = _promoted_input("tanhshrink", input, bool_ok=False)
    return _promoted_result(input, x - tanh(x))


# --------------------------------------------------------------------------- gating


def glu(input: torch.Tensor, dim: int = -1) -> torch.Tensor:
    r"""Gated linear unit: split ``input`` in halves ``a, b`` along ``dim``; return :math:`a \otimes \sigma(b)`.

    Args:
        input: a tensor with an even size along ``dim``.
        dim: the dimension to split.

    Shape:
        - Input: :math:`(*_1, 2M, *_2)`; Output: :math:`(*_1, M, *_2)`.
    """
    x = _float_input("glu", input)
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"glu: `dim` must be an int, got {type(dim).__name__} {dim!r}")
    if input.dim() == 0:
        raise ValueError("glu: `input` must have at least one dimension, got a 0-D tensor")
    if not -input.dim() <= dim < input.dim():
        raise ValueError(f"glu: `dim` must be in [{-input.dim()}, {input.dim() - 1}] for a {input.dim()}-D input, got {dim}")
    size = input.size(dim)
    if size % 2:
        raise ValueError(
            _("glu: `input` must have an even size along dim {dim} (it is split in two halves), "
              "got size {size} (input shape {shape})").format(dim=dim, size=size, shape=tuple(input.shape))
        )
    half = size // 2
    a, b = x.narrow(dim, 0, half), x.narrow(dim, half, half)  # each (*, M, *)
    return (a * sigmoid(b)).to(input.dtype)


# --------------------------------------------------------------------------- softmax family


def _softmax_dim(name: str, input: torch.Tensor, dim: int | None, stacklevel: int) -> int:
    if dim is None:
        warnings.warn(
            f"Implicit dimension choice for {name} has been deprecated. Change the call to include dim=X as an argument.",
            stacklevel=stacklevel,
        )
        return 0 if input.dim() in (0, 1, 3) else 1
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"{name}: `dim` must be an int, got {type(dim).__name__} {dim!r}")
    n = max(input.dim(), 1)
    if not -n <= dim < n:
        raise ValueError(f"{name}: `dim` must be in [{-n}, {n - 1}] for a {input.dim()}-D input, got {dim}")
    return dim


def _softmax_input(name: str, input, dim, dtype: torch.dtype | None) -> torch.Tensor:
    """Cast to ``dtype`` first (as PyTorch does), then require floating point; float16/bfloat16 computed in float32."""
    _check_tensor(name, input)
    if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int)):
        raise TypeError(f"{name}: `dim` must be an int, got {type(dim).__name__} {dim!r}")
    if dtype is not None:
        if not isinstance(dtype, torch.dtype):
            raise TypeError(f"{name}: `dtype` must be a torch.dtype such as torch.float64, got {type(dtype).__name__} {dtype!r}")
        input = input.to(dtype)
    if input.numel() == 0 and not (name == "softmin" and input.dtype == torch.bool):
        return input  # nothing to compute: PyTorch returns an empty tensor of any dtype (softmin negates first)
    if not input.is_floating_point():
        raise TypeError(
            f"{name}: `input` must be a floating-point tensor (or pass a float `dtype=`), got dtype {input.dtype}"
        )
    return input


def _shifted(input: torch.Tensor, dim: int) -> torch.Tensor:
    """``x - max(x)`` along ``dim``: the largest value becomes 0, so ``exp`` cannot overflow."""
    if input.dim() == 0 or input.numel() == 0:  # nothing to take the max of (an empty dim gives an empty result)
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
    input = _softmax_input("softmax", input, dim, dtype)
    dim = _softmax_dim("softmax", input, dim, _stacklevel)
    e = torch.exp(_shifted(_compute_dtype(input), dim))  # every entry in (0, 1]
    return (e / e.sum(dim=dim, keepdim=True)).to(input.dtype)


def softmin(input: torch.Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: torch.dtype | None = None) -> torch.Tensor:
    r"""Softmin along ``dim``: ``softmax(-x)``.

    Shape:
        - Input: :math:`(*)`; Output: the same shape.
    """
    input = _softmax_input("softmin", input, dim, dtype)
    dim = _softmax_dim("softmin", input, dim, _stacklevel)
    return softmax(-input, dim)


def log_softmax(input: torch.Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: torch.dtype | None = None) -> torch.Tensor:
    r"""LogSoftmax along ``dim``: :math:`x_i - \log \sum_j e^{x_j}`, with the max subtracted first.

    Finite even where ``log(softmax(x))`` gives ``-inf``.

    Shape:
        - Input: :math:`(*)`; Output: the same shape.
    """
    input = _softmax_input("log_softmax", input, dim, dtype)
    dim = _softmax_dim("log_softmax", input, dim, _stacklevel)
    shifted = _shifted(_compute_dtype(input), dim)
    return (shifted - torch.log(torch.exp(shifted).sum(dim=dim, keepdim=True))).to(input.dtype)
