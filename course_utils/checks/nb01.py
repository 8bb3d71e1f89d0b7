"""Exercises of notebook 01 (registered on import): softmax, ELU, Hardsigmoid."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from .. import activations as A
from ..i18n import N_
from .core import Case, Exercise, Mistake, register


class _KernelSpy(TorchDispatchMode):
    """Notes which of the ``watched`` ATen operators run while it is active (every route reaches them)."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False  # nothing here is compiled: spares the import of torch._dynamo (seconds) on first use

    def __init__(self, watched):
        super().__init__()
        self.watched = frozenset(watched)
        self.called = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in self.watched:
            self.called.add(name.rstrip("_"))
        return func(*args, **(kwargs or {}))


# --------------------------------------------------------------------------- 01.softmax


def softmax(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Reference for 01.softmax: a numerically stable softmax along ``dim``.

    Shape:
        - x: :math:`(*)`; output: the same shape, summing to 1 along ``dim``.
    """
    return A.softmax(x, dim=dim)


# F.softmax, torch.softmax, Tensor.softmax, nn.Softmax, F.softmin, torch.special.softmax, log_softmax(...).exp()
# all reach one of these ATen operators, whatever name or alias called them.
_TORCH_SOFTMAX_KERNELS = ("softmax", "_softmax", "log_softmax", "_log_softmax", "_safe_softmax", "_masked_softmax",
                          "special_softmax", "special_log_softmax")
_TORCH_SOFTMAX = N_("PyTorch's softmax (F.softmax, torch.softmax, Tensor.softmax, nn.Softmax...)")


def _observe_softmax(candidate, case):
    spy = _KernelSpy(_TORCH_SOFTMAX_KERNELS)
    with spy:
        y = candidate(*case.args, **dict(case.kwargs))
    if spy.called:  # the output does not matter then: whatever the route, the exercise was to write it
        return {_TORCH_SOFTMAX: "called"}
    return {_TORCH_SOFTMAX: "not called", N_("output"): y}


def _softmax_cases():
    g = torch.Generator().manual_seed(1)
    offsets = torch.tensor([[1000.0], [0.0]])  # (2, 1): one row near 1000, one near 0
    return [
        Case(N_("a (3, 4) tensor, dim=-1"), (torch.randn(3, 4, generator=g), -1)),
        Case(N_("a (4, 3) tensor, dim=0"), (torch.randn(4, 3, generator=g), 0)),
        Case(N_("x = [[1000, 1000, 999]], dim=-1"), (torch.tensor([[1000.0, 1000.0, 999.0]]), -1)),
        Case(N_("rows near 1000 and near 0, dim=-1"), (torch.randn(2, 5, generator=g) + offsets, -1)),
        Case(N_("a (2, 3, 4) float64 tensor, dim=1"), (torch.randn(2, 3, 4, generator=g, dtype=torch.float64) * 5, 1)),
        Case(N_("x = [0, 100], dim=0"), (torch.tensor([0.0, 100.0]), 0)),
        Case(N_("x = [[-10000, 0, 10000], [5000, -5000, 0]], dim=-1"),
             (torch.tensor([[-1e4, 0.0, 1e4], [5e3, -5e3, 0.0]]), -1)),
    ]


def _softmax_no_max(x, dim):
    e = torch.exp(x)
    return e / e.sum(dim=dim, keepdim=True)


def _softmax_min(x, dim):
    e = torch.exp(x - x.amin(dim=dim, keepdim=True))
    return e / e.sum(dim=dim, keepdim=True)


def _softmax_last_dim(x, dim):
    return A.softmax(x, dim=-1)


def _softmax_global_max(x, dim):
    e = torch.exp(x - x.max())
    return e / e.sum(dim=dim, keepdim=True)


def _softmax_sum_all(x, dim):
    e = torch.exp(x - x.amax(dim=dim, keepdim=True))
    return e / e.sum()


def _softmax_no_keepdim(x, dim):
    e = torch.exp(x - x.amax(dim=dim, keepdim=True))
    return e / e.sum(dim=dim)


register(
    Exercise(
        id="01.softmax",
        title=N_("A numerically stable softmax along a given dim"),
        reference=softmax,
        cases=_softmax_cases,
        observe=_observe_softmax,
        mistakes=[
            Mistake("called torch's softmax", N_("you called PyTorch's own softmax (F.softmax, torch.softmax, x.softmax or a "
                    "relative such as log_softmax); the exercise is to write it yourself with exp, amax and sum"),
                    lambda x, dim: torch.softmax(x, dim=dim)),
            Mistake("subtracted the minimum",
                    N_("you subtracted the minimum along `dim`: then the largest entry becomes max - min, and exp(100) "
                    "already overflows float32 to inf (inf/inf = NaN). Subtract the maximum, so every exponent is <= 0"),
                    _softmax_min),
            Mistake("no max subtraction",
                    N_("exp(1000) overflows to inf and inf/inf is NaN: subtract the maximum along `dim` before exp "
                    "(softmax does not change when you shift all its inputs by the same amount)"), _softmax_no_max),
            Mistake("wrong dim", N_("you took the softmax over the last dimension whatever `dim` was: pass `dim` to the "
                    "max and the sum"), _softmax_last_dim),
            Mistake("global max", N_("you subtracted the maximum of the whole tensor, so a row far below it underflows to "
                    "0/0 = NaN: subtract each row's own maximum (amax along `dim`, keepdim=True)"), _softmax_global_max),
            Mistake("no keepdim", N_("the sum lost its dimension, so it does not broadcast back against x: use "
                    "keepdim=True in the sum (and in the max)"), _softmax_no_keepdim),
            Mistake("sum of everything", N_("you divided by the sum of the WHOLE tensor, so the entries sum to 1 "
                    "altogether instead of along `dim`: use e.sum(dim=dim, keepdim=True)"), _softmax_sum_all),
        ],
        minutes=10,
        difficulty=2,
    )
)

# --------------------------------------------------------------------------- 01.elu


def elu(x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Reference for 01.elu: ``x`` for ``x > 0``, else ``alpha * (exp(x) - 1)``; gradient ``alpha`` at 0, no NaN.

    Shape:
        - x: :math:`(*)`; output: the same shape.
    """
    return A.elu(x, alpha)


def _observe_value_and_grad(candidate, case):
    x = case.args[0].clone().requires_grad_(True)
    y = candidate(x, *case.args[1:], **dict(case.kwargs))
    (grad,) = torch.autograd.grad(y.sum(), x)
    return {N_("output"): y.detach(), N_("gradient"): grad}


# F.elu, nn.ELU, torch._C._nn.elu, torch.ops.aten.elu, F.celu and F.selu all reach one of these.
_TORCH_ELU_KERNELS = ("elu", "elu_", "celu", "celu_", "selu", "selu_")
_TORCH_ELU = N_("PyTorch's ELU kernels (F.elu, nn.ELU, F.celu, F.selu...)")


def _observe_elu(candidate, case):
    spy = _KernelSpy(_TORCH_ELU_KERNELS)
    with spy:
        observed = _observe_value_and_grad(candidate, case)
    if spy.called:  # the outputs do not matter then: whichever kernel it was, the exercise was to write it
        return {_TORCH_ELU: "called"}
    return {_TORCH_ELU: "not called"} | observed


def _elu_cases():
    g = torch.Generator().manual_seed(2)
    return [
        Case(N_("x = -3..3 (step 0.5), alpha=1"), (torch.linspace(-3, 3, 13), 1.0)),
        Case(N_("x = -3..3 (step 0.5), alpha=0.5"), (torch.linspace(-3, 3, 13), 0.5)),
        Case(N_("x = [-1000, -1, 1, 100, 1000], alpha=1"), (torch.tensor([-1000.0, -1.0, 1.0, 100.0, 1000.0]), 1.0)),
        Case(N_("a (3, 4) float64 tensor, alpha=2"), (torch.randn(3, 4, generator=g, dtype=torch.float64) * 3, 2.0)),
    ]


register(
    Exercise(
        id="01.elu",
        title=N_("ELU, value and gradient"),
        reference=elu,
        cases=_elu_cases,
        observe=_observe_elu,
        mistakes=[
            Mistake("called torch's ELU", N_("you called PyTorch's own ELU (F.elu, nn.ELU or one of their relatives); "
                    "the exercise is to write it yourself with torch.where and torch.exp (or torch.expm1)"),
                    lambda x, alpha=1.0: F.elu(x, alpha)),
            Mistake("wrong sign", N_("your negative branch has the wrong sign: it is alpha * (exp(x) - 1), which goes "
                    "down to -alpha, not alpha * (1 - exp(x))"),
                    lambda x, alpha=1.0: torch.where(x > 0, x, alpha * (1 - torch.exp(torch.where(x > 0, 0.0, x))))),
            Mistake("no -1", N_("your negative branch is alpha * exp(x): subtract 1, or ELU jumps from alpha to 0 at x = 0"),
                    lambda x, alpha=1.0: torch.where(x > 0, x, alpha * torch.exp(torch.where(x > 0, 0.0, x)))),
            Mistake("no alpha", N_("you forgot to multiply the negative branch by alpha"),
                    lambda x, alpha=1.0: torch.where(x > 0, x, torch.expm1(torch.where(x > 0, 0.0, x)))),
            Mistake("kink side", N_("your values are right but the gradient at x = 0 is 1; PyTorch (and the reference) "
                    "use the negative branch there, whose slope is alpha: write the condition as x > 0, not x >= 0"),
                    lambda x, alpha=1.0: torch.where(x >= 0, x, alpha * torch.expm1(torch.where(x >= 0, 0.0, x)))),
            Mistake("NaN gradient", N_("your gradient is NaN at large x: torch.where evaluates both branches, exp(1000) "
                    "is inf, and the zero gradient of the unused branch times inf is NaN. Exponentiate only the "
                    "non-positive part: torch.where(x > 0, 0.0, x)"),
                    lambda x, alpha=1.0: torch.where(x > 0, x, alpha * (torch.exp(x) - 1))),
        ],
        minutes=10,
        difficulty=2,
    )
)

# --------------------------------------------------------------------------- 01.hardsigmoid


def hardsigmoid(x: torch.Tensor) -> torch.Tensor:
    """Reference for 01.hardsigmoid: 0 for ``x <= -3``, 1 for ``x >= 3``, else ``x / 6 + 1 / 2``.

    Shape:
        - x: :math:`(*)`; output: the same shape.
    """
    return A.hardsigmoid(x)


def _hardsigmoid_cases():
    g = torch.Generator().manual_seed(3)
    return [
        Case(N_("x = -5..5 (step 0.5), kinks -3 and 3 included"), (torch.linspace(-5, 5, 21),)),
        Case(N_("a (4, 5) float64 tensor"), (torch.randn(4, 5, generator=g, dtype=torch.float64) * 4,)),
    ]


register(
    Exercise(
        id="01.hardsigmoid",
        title=N_("Hardsigmoid, as PyTorch defines it"),
        reference=hardsigmoid,
        cases=_hardsigmoid_cases,
        observe=_observe_value_and_grad,
        mistakes=[
            Mistake("x/6", N_("the middle piece is x/6 + 1/2, not x/6: with x/6 the function jumps at -3 and 3 and is 0 "
                    "at x = 0, where a sigmoid is 1/2"),
                    lambda x: torch.where(x <= -3, 0.0, torch.where(x >= 3, 1.0, x / 6))),
            Mistake("no clipping", N_("x/6 + 1/2 must be clipped: 0 for x <= -3 and 1 for x >= 3"),
                    lambda x: x / 6 + 0.5),
            Mistake("smooth sigmoid", N_("that is the smooth sigmoid 1/(1 + exp(-x)); the hard version is piecewise "
                    "linear: 0, then x/6 + 1/2, then 1"), lambda x: 1 / (1 + torch.exp(-x))),
            Mistake("gradient at the kinks", N_("your values are right, but at x = -3 and x = 3 your gradient is 1/6 where "
                    "PyTorch's is 0: PyTorch counts the kinks as part of the flat pieces. With torch.where, put them in "
                    "the flat branches (x <= -3, x >= 3); clamp(x / 6 + 1/2, 0, 1) passes the gradient at its limits, "
                    "so it has the same problem"), lambda x: torch.clamp(x / 6 + 0.5, 0, 1)),
            Mistake("clamp(x/6)", N_("you clamped x/6 to [0, 1], which is 0 for every negative x and reaches 1 only at x = 6: "
                    "the middle piece is x/6 + 1/2, i.e. clamp(x/6 + 1/2, 0, 1)"), lambda x: torch.clamp(x / 6, 0, 1)),
        ],
        minutes=5,
        difficulty=1,
    )
)
