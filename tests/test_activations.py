"""course_utils.activations against torch.nn.functional: value and gradient, every function, every parameter."""

from __future__ import annotations

import ast
import inspect
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from conftest import DEVICES

from course_utils import activations as A

NAMES = [
    "relu", "threshold", "rrelu", "hardtanh", "relu6", "sigmoid", "hardsigmoid", "tanh", "silu", "mish",
    "hardswish", "elu", "celu", "selu", "glu", "gelu", "hardshrink", "leaky_relu", "logsigmoid", "softplus",
    "softshrink", "prelu", "softsign", "tanhshrink", "softmin", "softmax", "log_softmax",
]  # fmt: skip

# Element-wise functions and the parameter settings swept for each (kwargs).
ELEMENTWISE: dict[str, list[dict]] = {
    "relu": [{}],
    "threshold": [{"threshold": 0.0, "value": 0.0}, {"threshold": 0.5, "value": -2.0}, {"threshold": -1.0, "value": 3.0},
                  {"threshold": 2.0, "value": 2.0}],
    "rrelu": [{}, {"lower": 0.1, "upper": 0.3}, {"lower": 0.0, "upper": 0.0}, {"lower": 0.5, "upper": 0.5}],
    "hardtanh": [{}, {"min_val": 0.0, "max_val": 6.0}, {"min_val": -2.5, "max_val": 0.5}],
    "relu6": [{}],
    "sigmoid": [{}],
    "hardsigmoid": [{}],
    "tanh": [{}],
    "silu": [{}],
    "mish": [{}],
    "hardswish": [{}],
    "elu": [{}, {"alpha": 0.5}, {"alpha": 2.0}, {"alpha": -1.0}, {"alpha": 0.0}],
    "celu": [{}, {"alpha": 0.5}, {"alpha": 2.0}, {"alpha": -1.0}],
    "selu": [{}],
    "gelu": [{}, {"approximate": "none"}, {"approximate": "tanh"}],
    "hardshrink": [{}, {"lambd": 0.0}, {"lambd": 1.0}, {"lambd": 2.5}],
    "leaky_relu": [{}, {"negative_slope": 0.2}, {"negative_slope": 0.0}, {"negative_slope": 1.5}, {"negative_slope": -0.5}],
    "logsigmoid": [{}],
    "softplus": [{}, {"beta": 2.0}, {"beta": 0.5, "threshold": 5.0}, {"beta": 2.0, "threshold": 1.0},
                 {"threshold": 0.0}, {"beta": -1.0}],
    "softshrink": [{}, {"lambd": 0.0}, {"lambd": 1.0}, {"lambd": 2.5}],
    "softsign": [{}],
    "tanhshrink": [{}],
}

EXTREMES = [20.0, 30.0, 40.0, 50.0, 88.0, 89.0, 100.0, 104.0, 200.0, 700.0, 710.0, 1000.0, 1e4]
KINKS = [0.0, 0.5, 1.0, 2.0, 3.0, 6.0, 10.0, 10.5, 20.0, 1e-8, 1e-300]


def grid(kwargs: dict, dtype=torch.float64) -> torch.Tensor:
    """A dense grid on [-8, 8], the kinks (and the parameters themselves, and threshold / beta), the extremes."""
    points = set(KINKS + EXTREMES)
    for value in kwargs.values():
        if isinstance(value, float):
            points.add(value)
    if "threshold" in kwargs or "beta" in kwargs:  # softplus switches at beta * x = threshold
        beta = kwargs.get("beta", 1.0)
        points.add(kwargs.get("threshold", 20.0) / beta)
    signed = sorted({s * p for p in points for s in (1.0, -1.0)})
    x = torch.cat([torch.linspace(-8, 8, 321, dtype=torch.float64), torch.tensor(signed, dtype=torch.float64)])
    return x.to(dtype)


def call(module, name: str, x: torch.Tensor, kwargs: dict) -> torch.Tensor:
    if name == "threshold":  # threshold's two parameters are positional in PyTorch's signature
        return module.threshold(x, kwargs["threshold"], kwargs["value"])
    return getattr(module, name)(x, **kwargs)


def value_and_grad(module, name, x, kwargs, upstream):
    x = x.detach().clone().requires_grad_(True)
    y = call(module, name, x, kwargs)
    (dx,) = torch.autograd.grad(y, x, upstream)
    return y.detach(), dx


def test_all_27_functions_exist_and_are_tested():
    assert len(NAMES) == 27 and sorted(A.__all__) == sorted(NAMES)
    tested = set(ELEMENTWISE) | {"glu", "prelu", "softmax", "softmin", "log_softmax"}
    assert tested == set(NAMES)


def _torch_signature(name: str) -> inspect.Signature:
    fn = getattr(F, name)
    try:
        return inspect.signature(fn)
    except ValueError:  # a C builtin: its docstring starts with the signature
        line = next(line for line in (fn.__doc__ or "").splitlines() if line.strip().startswith(f"{name}("))
        source = "def " + line.strip().split("->")[0].strip() + ": pass"
        return inspect.signature(_function_from_source(source, name))


def _function_from_source(source: str, name: str):
    namespace: dict = {}
    exec(compile(ast.parse(source), "<signature>", "exec"), namespace)
    return namespace[name]


@pytest.mark.parametrize("name", NAMES)
def test_signature_matches_torch(name):
    ours = inspect.signature(getattr(A, name)).parameters
    theirs = _torch_signature(name).parameters
    assert list(ours) == list(theirs)
    for key, parameter in theirs.items():
        expected = parameter.default
        got = ours[key].default
        if isinstance(expected, float) or isinstance(got, float):
            assert math.isclose(got, expected), (key, got, expected)
        else:
            assert got == expected, (key, got, expected)


@pytest.mark.parametrize(
    "name, kwargs",
    [pytest.param(n, kw, id=f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'defaults'}") for n, ks in ELEMENTWISE.items() for kw in ks],
)
def test_elementwise_value_and_gradient_float64(name, kwargs):
    x = grid(kwargs)
    upstream = torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y_ref, dx_ref = value_and_grad(F, name, x, kwargs, upstream)
    y, dx = value_and_grad(A, name, x, kwargs, upstream)
    assert y.dtype == torch.float64 and y.shape == x.shape
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-14, equal_nan=True)
    # PyTorch's hardsigmoid backward multiplies by the float32 constant 1.0f / 6.0f, even in float64
    # (see test_pytorch_hardsigmoid_backward_uses_a_float32_constant): 3e-8 relative, not a bug of ours.
    rtol = 1e-7 if name == "hardsigmoid" else 1e-10
    torch.testing.assert_close(dx, dx_ref, rtol=rtol, atol=1e-14, equal_nan=True)


def test_pytorch_hardsigmoid_backward_uses_a_float32_constant():
    x = torch.tensor([0.5], dtype=torch.float64, requires_grad=True)
    F.hardsigmoid(x).backward()
    assert x.grad.item() == float(torch.tensor(1 / 6, dtype=torch.float32)) != 1 / 6
    x.grad = None
    A.hardsigmoid(x).backward()
    assert x.grad.item() == pytest.approx(1 / 6, rel=1e-15)


@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_elementwise_float32_extremes(name):
    """float32 saturates much earlier (exp(89) overflows): still no NaN or inf where PyTorch has none."""
    kwargs = ELEMENTWISE[name][0]
    x = grid(kwargs, dtype=torch.float32)
    upstream = torch.ones_like(x)
    y_ref, dx_ref = value_and_grad(F, name, x, kwargs, upstream)
    y, dx = value_and_grad(A, name, x, kwargs, upstream)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, y_ref, rtol=2e-6, atol=1e-6, equal_nan=True)
    torch.testing.assert_close(dx, dx_ref, rtol=2e-6, atol=1e-6, equal_nan=True)


@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_nan_propagates_like_torch(name):
    x = torch.tensor([float("nan"), -1.0, 0.0, 2.0], dtype=torch.float64)
    kwargs = ELEMENTWISE[name][-1]
    torch.testing.assert_close(call(A, name, x, kwargs), call(F, name, x, kwargs), equal_nan=True)


def test_the_kinks_take_pytorchs_subgradient():
    """Spelled out for the reader: the one-sided derivatives PyTorch picks."""
    def d(fn, at, **kw):
        x = torch.tensor(at, dtype=torch.float64, requires_grad=True)
        fn(x, **kw).backward()
        return float(x.grad)

    assert d(A.relu, 0.0) == 0.0
    assert d(A.leaky_relu, 0.0, negative_slope=0.1) == pytest.approx(0.1)
    assert d(A.elu, 0.0, alpha=2.0) == pytest.approx(2.0)
    assert d(A.celu, 0.0, alpha=2.0) == pytest.approx(1.0)
    assert d(A.hardtanh, 1.0) == 0.0 and d(A.hardtanh, -1.0) == 0.0
    assert d(A.relu6, 6.0) == 0.0
    assert d(A.hardsigmoid, 3.0) == 0.0 and d(A.hardsigmoid, -3.0) == 0.0
    assert d(A.hardswish, 3.0) == 1.0 and d(A.hardswish, -3.0) == 0.0
    assert d(A.hardshrink, 0.5) == 0.0 and d(A.softshrink, -0.5) == 0.0
    assert d(A.softplus, 20.0) == pytest.approx(1.0) and d(A.softplus, 20.5) == 1.0
    assert d(A.logsigmoid, 0.0) == pytest.approx(0.5)
    assert d(A.tanh, 0.0) == pytest.approx(1.0)
    assert d(A.softsign, 0.0) == pytest.approx(1.0)


# --------------------------------------------------------------------------- glu, prelu, softmax family


@pytest.mark.parametrize("shape, dim", [((6,), 0), ((4, 6), -1), ((4, 6), 0), ((2, 4, 3), 1), ((2, 3, 8), -1), ((2, 4, 3), -2)])
def test_glu(shape, dim):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 20
    x.view(-1)[0] = 800.0  # extreme gate and value
    x.view(-1)[-1] = -800.0
    out_shape = list(shape)
    out_shape[dim] //= 2
    upstream = torch.randn(out_shape, dtype=torch.float64)
    y_ref, dx_ref = value_and_grad(F, "glu", x, {"dim": dim}, upstream)
    y, dx = value_and_grad(A, "glu", x, {"dim": dim}, upstream)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-14)
    # For a saturated gate (b ~ 30) PyTorch computes sigma * (1 - sigma), which cancels; autograd of our
    # e / (1 + e) does not: the two differ by ~1e-13 absolute there.
    torch.testing.assert_close(dx, dx_ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "input_shape, n_weights",
    [((), 1), ((5,), 1), ((4, 3), 1), ((4, 3), 3), ((2, 3, 5), 3), ((2, 4, 3, 3), 4), ((2, 4, 3, 3), 1)],
)
def test_prelu_value_and_gradients(input_shape, n_weights):
    g = torch.Generator().manual_seed(2)
    x = (torch.randn(input_shape, generator=g, dtype=torch.float64) * 5).requires_grad_(True)
    if x.dim() >= 1:
        x.data.view(-1)[0] = 0.0  # the kink
    w = (torch.rand(n_weights, generator=g, dtype=torch.float64) - 0.3).requires_grad_(True)
    upstream = torch.randn(input_shape, generator=g, dtype=torch.float64)
    grads = []
    for module in (A, F):
        y = module.prelu(x, w)
        grads.append((y.detach(), *torch.autograd.grad(y, (x, w), upstream)))
    for ours, theirs in zip(*grads):
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-14)


def softmax_inputs():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 4, 5, generator=g, dtype=torch.float64) * 3
    big = x.clone()
    big[0, 0] = torch.tensor([1000.0, 1000.0, 999.0, -1000.0, 0.0], dtype=torch.float64)  # naive exp overflows
    big[1, 2] = torch.tensor([-1000.0, -1001.0, -999.0, -1000.0, -1e4], dtype=torch.float64)  # naive exp underflows
    masked = x.clone()
    masked[2, 1, 1:] = float("-inf")  # masked entries, one left
    return {"random": x, "extreme": big, "minus-inf": masked}


@pytest.mark.parametrize("name", ["softmax", "softmin", "log_softmax"])
@pytest.mark.parametrize("dim", [0, 1, 2, -1, -2])
@pytest.mark.parametrize("which", ["random", "extreme", "minus-inf"])
def test_softmax_family(name, dim, which):
    x = softmax_inputs()[which]
    if which == "minus-inf" and (name == "softmin" or dim not in (2, -1)):
        x = softmax_inputs()["random"]  # -inf rows only make sense along the masked dim
    upstream = torch.randn(x.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    y_ref, dx_ref = value_and_grad(F, name, x, {"dim": dim}, upstream)
    y, dx = value_and_grad(A, name, x, {"dim": dim}, upstream)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(dx, dx_ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["softmax", "softmin", "log_softmax"])
def test_softmax_dtype_argument_and_float32(name):
    x = softmax_inputs()["extreme"].float()
    for dtype in (None, torch.float64):
        ours = getattr(A, name)(x, dim=-1, dtype=dtype)
        theirs = getattr(F, name)(x, dim=-1, dtype=dtype)
        assert ours.dtype == theirs.dtype
        torch.testing.assert_close(ours, theirs, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["softmax", "softmin", "log_softmax"])
@pytest.mark.parametrize("shape", [(), (5,), (3, 5), (2, 3, 5), (2, 3, 4, 5)])
def test_softmax_implicit_dim_warns_and_picks_the_same_dim(name, shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours = getattr(A, name)(x)
    assert any("Implicit dimension choice" in str(w.message) for w in caught)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = getattr(F, name)(x)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-14)


def test_softmax_rows_sum_to_one_and_fully_masked_rows_are_nan_like_torch():
    x = torch.full((2, 3), float("-inf"), dtype=torch.float64)
    x[0] = torch.tensor([1.0, 2.0, 3.0])
    ours, theirs = A.softmax(x, dim=-1), F.softmax(x, dim=-1)
    torch.testing.assert_close(ours, theirs, equal_nan=True)
    assert torch.isnan(ours[1]).all() and float(ours[0].sum()) == pytest.approx(1.0)


# --------------------------------------------------------------------------- stability (reference section 5.1)


def test_stability_cases_in_float32():
    x = torch.tensor([100.0, -20.0])
    assert torch.isinf(torch.log(1 + torch.exp(x))).any()  # the naive formula fails...
    torch.testing.assert_close(A.softplus(x), F.softplus(x))  # ...ours does not
    x = torch.tensor([-200.0, -100.0], requires_grad=True)
    y = A.logsigmoid(x)
    y.sum().backward()
    assert y.tolist() == [-200.0, -100.0] and x.grad.tolist() == [1.0, 1.0]
    z = torch.tensor([1000.0, 1000.0, 999.0])
    assert torch.isnan(torch.exp(z) / torch.exp(z).sum()).all()
    torch.testing.assert_close(A.softmax(z, dim=0), torch.tensor([0.4223, 0.4223, 0.1554]), atol=1e-4, rtol=0)
    assert A.log_softmax(torch.tensor([0.0, -200.0]), dim=0).tolist() == [0.0, -200.0]


# --------------------------------------------------------------------------- rrelu in training


def test_rrelu_training_samples_one_slope_per_element_and_backprops_it():
    torch.manual_seed(0)
    x = torch.cat([-torch.rand(1000, dtype=torch.float64) - 0.1, torch.rand(10, dtype=torch.float64)]).requires_grad_(True)
    y = A.rrelu(x, 0.1, 0.3, training=True)
    y.sum().backward()
    negative = x.detach() < 0
    slopes = (y.detach() / x.detach())[negative]
    assert torch.equal(y.detach()[~negative], x.detach()[~negative])
    assert slopes.min() >= 0.1 and slopes.max() <= 0.3 and slopes.std() > 0.03  # spread over the interval
    torch.testing.assert_close(x.grad[negative], slopes)
    torch.testing.assert_close(x.grad[~negative], torch.ones(10, dtype=torch.float64))
    y2 = A.rrelu(x.detach(), 0.1, 0.3, training=True)
    assert not torch.equal(y2, y.detach())  # new slopes on every call
    torch.testing.assert_close(A.rrelu(x.detach(), 0.1, 0.3), F.rrelu(x.detach(), 0.1, 0.3))  # eval: the mean slope


# --------------------------------------------------------------------------- inplace

INPLACE = ["relu", "rrelu", "hardtanh", "relu6", "hardsigmoid", "silu", "mish", "hardswish", "elu", "celu", "selu", "leaky_relu"]


@pytest.mark.parametrize("name", INPLACE + ["threshold"])
def test_inplace_writes_into_the_input(name):
    kwargs = {"threshold": 0.5, "value": -1.0} if name == "threshold" else {}
    x = torch.linspace(-5, 5, 11, dtype=torch.float64)
    expected = call(F, name, x.clone(), kwargs)
    ours_in = x.clone()
    out = A.threshold(ours_in, 0.5, -1.0, inplace=True) if name == "threshold" else getattr(A, name)(ours_in, inplace=True)
    assert out is ours_in and ours_in._version > 0
    torch.testing.assert_close(ours_in, expected)


def test_inplace_autograd_errors():
    leaf = torch.randn(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad"):
        A.relu(leaf, inplace=True)
    with torch.no_grad():
        A.relu(leaf.clone(), inplace=True)  # fine without autograd
    y = torch.exp(leaf)  # exp saves its output for backward
    A.relu(y, inplace=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()
    h = torch.nn.Linear(3, 3)(leaf)  # Linear does not save its output: in-place after it is fine
    A.relu(h, inplace=True).sum().backward()
    assert leaf.grad is not None


# --------------------------------------------------------------------------- bad input and independence


@pytest.mark.parametrize(
    "call_bad, error, words",
    [
        (lambda: A.glu(torch.zeros(3, 5), dim=1), ValueError, ["even", "dim 1", "size 5", "(3, 5)"]),
        (lambda: A.glu(torch.tensor(1.0)), ValueError, ["0-D"]),
        (lambda: A.glu(torch.zeros(4), dim=2), ValueError, ["dim"]),
        (lambda: A.celu(torch.zeros(3), alpha=0.0), ValueError, ["alpha"]),
        (lambda: A.hardtanh(torch.zeros(3), 2.0, 1.0), ValueError, ["max_val", "min_val=2.0"]),
        (lambda: A.softshrink(torch.zeros(3), -1.0), ValueError, ["lambd", "-1.0"]),
        (lambda: A.rrelu(torch.zeros(3), 0.5, 0.1), ValueError, ["lower=0.5", "upper=0.1"]),
        (lambda: A.gelu(torch.zeros(3), approximate="fast"), ValueError, ["'fast'"]),
        (lambda: A.prelu(torch.zeros(2, 4), torch.ones(3)), ValueError, ["3 elements", "4"]),
        (lambda: A.softmax(torch.zeros(2, 3), dim=2), ValueError, ["dim", "2"]),
        (lambda: A.relu([1.0, -1.0]), TypeError, ["torch.Tensor", "list"]),
    ],
)
def test_bad_input_gets_a_clear_error(call_bad, error, words):
    with pytest.raises(error) as info:
        call_bad()
    for word in words:
        assert word in str(info.value)


def test_no_function_calls_its_torch_twin(monkeypatch):
    """Make every torch version of these activations raise; ours must not notice."""

    def forbidden(*args, **kwargs):
        raise AssertionError("called a torch activation")

    for name in NAMES + ["log_sigmoid", "hardtanh_", "relu_", "elu_", "leaky_relu_", "threshold_", "rrelu_", "selu_", "celu_"]:
        for namespace in (F, torch, torch._C._nn, torch.Tensor):
            if hasattr(namespace, name):
                monkeypatch.setattr(namespace, name, forbidden)
    for name in ("clamp", "clamp_min", "clamp_max", "clip", "maximum", "minimum"):
        monkeypatch.setattr(torch, name, forbidden)
        monkeypatch.setattr(torch.Tensor, name, forbidden)
    x = torch.linspace(-4, 4, 12, dtype=torch.float64).reshape(3, 4)
    for name in ELEMENTWISE:
        kwargs = ELEMENTWISE[name][-1]
        call(A, name, x, kwargs)
    A.rrelu(x, training=True)
    A.glu(x, dim=-1)
    A.prelu(x, torch.ones(4, dtype=torch.float64))
    for name in ("softmax", "softmin", "log_softmax"):
        getattr(A, name)(x, dim=1)


@pytest.mark.parametrize("device", DEVICES)
def test_every_function_on_each_device(device):
    """Same values and gradients on the GPU, and the output stays on the input's device."""
    generator = torch.Generator().manual_seed(7)
    x = (torch.randn(4, 6, generator=generator, dtype=torch.float64) * 4).to(device)
    upstream = torch.randn(4, 6, generator=generator, dtype=torch.float64).to(device)
    cases = [(name, kwargs) for name, settings in ELEMENTWISE.items() for kwargs in settings]
    cases += [("softmax", {"dim": 1}), ("softmin", {"dim": 0}), ("log_softmax", {"dim": -1})]
    for name, kwargs in cases:
        y_ref, dx_ref = value_and_grad(F, name, x, kwargs, upstream)
        y, dx = value_and_grad(A, name, x, kwargs, upstream)
        assert y.device == x.device, name
        torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-14, msg=name)
        torch.testing.assert_close(dx, dx_ref, rtol=1e-7, atol=1e-14, msg=name)
    w = torch.rand(6, dtype=torch.float64).to(device)
    torch.testing.assert_close(A.prelu(x, w), F.prelu(x, w))
    torch.testing.assert_close(A.glu(x, 1), F.glu(x, 1))
    y = A.rrelu(x, training=True)
    assert y.device == x.device and torch.equal(y[x >= 0], x[x >= 0])
