"""Property-based tests of the public API's contract against its torch twin (hypothesis).

For every public function and class, hypothesis draws inputs, good ones and ones with exactly one
argument spoiled (a wrong shape, dtype, type or value), and runs the course version and PyTorch's on
the same input:

* PyTorch raises  -> ours raises a ValueError, TypeError or RuntimeError whose message names the
  argument that was spoiled;
* PyTorch returns -> ours returns the same values, dtype and shape.

The documented "Differences from PyTorch" are the only exceptions: there ours must refuse, naming the
argument. The examples are derandomized, so a run is deterministic and CI sees the same cases.
"""

from __future__ import annotations

import functools
import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

import course_utils.transformer as cu
from course_utils import activations as A
from course_utils.attention import Head, MultiheadAttention, scaled_dot_product_attention
from course_utils.module_tools import trace_shapes
from course_utils.synthesizer import make_synthesizer

CLEAR = (ValueError, TypeError, RuntimeError)


def contract_settings(examples: int):
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Tiny tensors: one thread is faster and steadier."""


# ---------------------------------------------------------------------------- the contract itself
class Refused(Exception):
    """What a call raised, kept to compare."""


def outcome(call):
    """The result of ``call()``, or the exception it raised (PyTorch's warnings silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return call()
        except Exception as error:  # PyTorch raises every kind (AssertionError, IndexError...)
            return Refused(error)


def assert_clear_error(result, spoiled: str | None, fallback: tuple[str, ...]) -> None:
    assert isinstance(result, Refused), f"PyTorch refuses this input, ours returned {type(result).__name__}"
    error = result.args[0]
    assert isinstance(error, CLEAR), f"not a clear error: {type(error).__name__}: {error}"
    names = (spoiled,) if spoiled else fallback
    assert any(f"`{name}" in str(error) or f"{name}=" in str(error) for name in names), (
        f"the message does not name {' or '.join(names)}: {error}"
    )


def assert_same(ours, theirs, rtol: float, atol: float) -> None:
    if isinstance(theirs, (tuple, list)):
        assert type(ours) is type(theirs) and len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            assert_same(a, b, rtol, atol)
        return
    if theirs is None:
        assert ours is None
        return
    assert isinstance(ours, torch.Tensor), type(ours)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    assert ours.dtype == theirs.dtype, (ours.dtype, theirs.dtype)
    if ours.is_floating_point():
        torch.testing.assert_close(ours.detach(), theirs.detach(), rtol=rtol, atol=atol, equal_nan=True)
    else:
        assert torch.equal(ours, theirs)


def check_contract(ours_call, torch_call, spoiled: str | None, arguments: tuple[str, ...], rtol=1e-5, atol=1e-6, unspoiled=None):
    """PyTorch refuses -> ours refuses naming ``spoiled`` (any of ``arguments`` if none was); else the same answer.

    ``unspoiled``: PyTorch's call with the spoiled argument put right; when PyTorch refuses that too,
    something else is wrong as well, and the message may name any argument.
    """
    theirs = outcome(torch_call)
    ours = outcome(ours_call)
    if isinstance(theirs, Refused):
        if spoiled and unspoiled is not None and isinstance(outcome(unspoiled), Refused):
            spoiled = None
        assert_clear_error(ours, spoiled, arguments)
        return
    if isinstance(ours, Refused):
        raise AssertionError(f"PyTorch accepts this input, ours raised {ours.args[0]!r}")
    assert_same(ours, theirs, rtol, atol)


def tolerance(dtype: torch.dtype) -> dict:
    if dtype in (torch.float16, torch.bfloat16):
        return {"rtol": 2e-2, "atol": 2e-2}
    if dtype == torch.float64:
        return {"rtol": 1e-7, "atol": 1e-9}
    return {"rtol": 2e-5, "atol": 2e-5}


BAD_NUMBERS = st.sampled_from(["0.5", None, [0.5], torch.tensor([0.5, 0.25]), torch.tensor([0.5])])
NICE = [-1e4, -100.0, -20.0, -6.0, -3.0, -2.5, -1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0, 2.0, 3.0, 6.0, 19.5, 20.0, 25.0, 100.0,
        1e4]  # fmt: skip
SPECIAL = [float("nan"), float("inf"), float("-inf")]


@st.composite
def tensors(draw, dtypes, min_dims=0, max_dims=3, max_side=4, values=NICE, shape=None):
    dtype = draw(st.sampled_from(dtypes))
    if shape is None:
        shape = tuple(draw(st.lists(st.integers(0, max_side), min_size=min_dims, max_size=max_dims)))
    n = 1
    for side in shape:
        n *= side
    data = draw(st.lists(st.sampled_from(values), min_size=n, max_size=n))
    x = torch.tensor(data, dtype=torch.float64).reshape(shape)
    if dtype == torch.bool:
        return x > 0
    if not dtype.is_floating_point:
        info = torch.iinfo(dtype)
        return x.nan_to_num(0.0).clamp(info.min, info.max).to(dtype)
    return x.to(dtype)


# ---------------------------------------------------------------------------- activations
SCALARS = {  # each function's number parameters, and values that PyTorch accepts for them
    "threshold": {"threshold": [-1.0, 0.0, 0.5, 2.0], "value": [-2.0, 0.0, 1.0, 3.0]},
    "rrelu": {"lower": [0.0, 0.125, 0.25], "upper": [0.125, 1 / 3, 0.5]},
    "hardtanh": {"min_val": [-2.0, -1.0, 0.0, 0.5], "max_val": [0.5, 1.0, 2.0, -1.0]},
    "leaky_relu": {"negative_slope": [0.01, 0.0, 0.5, -0.5, 2.0]},
    "elu": {"alpha": [1.0, 0.5, 2.0, -1.0, 0.0]},
    "celu": {"alpha": [1.0, 0.5, 2.0, -1.0, 0.0]},
    "softplus": {"beta": [1.0, 2.0, 0.5, -1.0], "threshold": [20.0, 5.0, 0.0]},
    "hardshrink": {"lambd": [0.5, 0.0, 1.0, -0.5]},
    "softshrink": {"lambd": [0.5, 0.0, 1.0, -0.5]},
}
INPLACE = {"relu", "threshold", "rrelu", "hardtanh", "relu6", "hardsigmoid", "silu", "mish", "hardswish", "elu", "celu", "selu",
           "leaky_relu"}  # fmt: skip
INPUT_DTYPES = [torch.float32, torch.float64, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int8, torch.uint8,
                torch.bool]  # fmt: skip


@st.composite
def activation_calls(draw):
    """(name, input, kwargs, spoiled argument or None)."""
    name = draw(st.sampled_from(A.__all__))
    values = NICE + (SPECIAL if draw(st.integers(0, 4)) == 0 else [])
    x = draw(tensors(INPUT_DTYPES, values=values, min_dims=1 if name == "prelu" else 0))
    kwargs: dict = {}
    for param, choices in SCALARS.get(name, {}).items():
        kwargs[param] = draw(st.sampled_from(choices))
    if name == "threshold":
        kwargs = {"threshold": kwargs["threshold"], "value": kwargs["value"]}
    if name in ("softmax", "softmin", "log_softmax"):
        kwargs["dim"] = draw(st.integers(-3, 3))
        kwargs["dtype"] = draw(st.sampled_from([None, None, torch.float64, torch.float32, torch.int64]))
    if name == "glu":
        kwargs["dim"] = draw(st.integers(-3, 3))
    if name == "gelu":
        kwargs["approximate"] = draw(st.sampled_from(["none", "tanh", "Tanh"]))
    if name == "rrelu":
        kwargs["training"] = draw(st.booleans())
    if name == "prelu":
        channels = x.size(1) if x.dim() >= 2 else 1
        count = draw(st.sampled_from([1, channels, channels + 1, 0]))
        weight = torch.linspace(-0.5, 0.5, count, dtype=torch.float64)
        weight_dtype = draw(st.sampled_from([x.dtype, x.dtype, x.dtype, torch.float32, torch.float64]))
        kwargs["weight"] = weight.to(weight_dtype) if draw(st.integers(0, 5)) else weight.reshape(1, count).to(weight_dtype)
    spoiled = None
    spoilable = [p for p in kwargs if p not in ("weight",)]
    if spoilable and draw(st.integers(0, 3)) == 0:
        spoiled = draw(st.sampled_from(spoilable))
        kwargs[spoiled] = draw(BAD_NUMBERS if spoiled not in ("dtype", "approximate", "training") else st.sampled_from(["x", 1]))
        if spoiled == "dim":
            kwargs[spoiled] = draw(st.sampled_from(["0", 1.0, None if name == "glu" else "0"]))
    if name == "prelu" and draw(st.integers(0, 6)) == 0:
        spoiled, kwargs["weight"] = "weight", [0.25]
    if name in INPLACE and draw(st.integers(0, 3)) == 0:
        kwargs["inplace"] = True
    if spoiled is None and draw(st.integers(0, 9)) == 0:
        spoiled, x = "input", draw(st.sampled_from([[1.0, -1.0], 2.0, None]))
    return name, x, kwargs, spoiled


def call_activation(module, name, x, kwargs):
    kwargs = dict(kwargs)
    x = x.clone() if isinstance(x, torch.Tensor) else x
    if name == "threshold":
        return module.threshold(x, kwargs.pop("threshold"), kwargs.pop("value"), **kwargs)
    if name == "prelu":
        return module.prelu(x, kwargs["weight"])
    return getattr(module, name)(x, **kwargs)


@contract_settings(400)
@given(activation_calls())
def test_activations_keep_the_contract(case):
    name, x, kwargs, spoiled = case
    if isinstance(x, torch.Tensor) and x.is_complex():
        return
    if name == "rrelu" and kwargs.get("training") is True and isinstance(x, torch.Tensor) and x.dtype == torch.float16:
        return  # activations, Differences from PyTorch, 2 (PyTorch's CPU kernel has no float16)
    if name == "rrelu" and kwargs.get("training") is True and spoiled is None:
        kwargs = {**kwargs, "lower": kwargs["upper"]} if isinstance(kwargs.get("upper"), float) else kwargs  # one slope: deterministic
    tol = tolerance(x.dtype) if isinstance(x, torch.Tensor) else {}
    unspoiled = None
    if spoiled and spoiled != "input":
        put_right = {k: v for k, v in kwargs.items() if k != spoiled or name == "threshold"}
        put_right.update({spoiled: 0.5} if name == "threshold" else {"weight": torch.ones(1, dtype=x.dtype)} if name == "prelu" else {})
        unspoiled = lambda: call_activation(F, name, x, put_right)  # noqa: E731
    check_contract(lambda: call_activation(A, name, x, kwargs), lambda: call_activation(F, name, x, kwargs), spoiled,
                   ("input", *kwargs), unspoiled=unspoiled, **tol)


@contract_settings(150)
@given(activation_calls())
def test_activation_gradients_match_torch(case):
    """Where both accept a floating input with finite values, the gradients agree too (also in float16)."""
    name, x, kwargs, spoiled = case
    kwargs = {k: v for k, v in kwargs.items() if k != "inplace"}
    if spoiled or not isinstance(x, torch.Tensor) or not x.is_floating_point() or not x.isfinite().all() or x.numel() == 0:
        return
    if name == "rrelu" and kwargs.get("training"):
        return
    grads = []
    for module in (A, F):
        leaf = x.clone().requires_grad_(True)
        y = outcome(lambda module=module, leaf=leaf: call_activation(module, name, leaf, kwargs))
        if isinstance(y, Refused) or not y.is_floating_point():
            return
        y.backward(torch.ones_like(y))
        grads.append(leaf.grad)
    assert_same(grads[0], grads[1], **tolerance(x.dtype))


# ---------------------------------------------------------------------------- scaled_dot_product_attention
@st.composite
def sdpa_calls(draw):
    def batch():
        return tuple(draw(st.lists(st.sampled_from([1, 2, 3]), min_size=0, max_size=2)))

    L, S, E, Ev = draw(st.integers(0, 4)), draw(st.integers(0, 4)), draw(st.integers(0, 4)), draw(st.integers(0, 3))
    common = batch()
    dtype = draw(st.sampled_from([torch.float32, torch.float64, torch.float16]))
    q = draw(tensors([dtype], shape=(*common, L, E), values=NICE[5:-5]))
    k = draw(tensors([dtype], shape=(*common, S, E), values=NICE[5:-5]))
    v = draw(tensors([dtype], shape=(*common, S, Ev), values=NICE[5:-5]))
    kwargs: dict = {}
    if draw(st.booleans()):
        mask_shape = draw(st.sampled_from([(L, S), (S,), (), (1, L, S), (*common, L, S), (2, *common, L, S), (L + 1, S), (3, L, S)]))
        mask_dtype = draw(st.sampled_from([torch.bool, torch.bool, dtype, torch.float32, torch.float64, torch.int64]))
        kwargs["attn_mask"] = draw(tensors([mask_dtype], shape=mask_shape, values=[0.0, 1.0, -1.0, float("-inf")]))
    if draw(st.integers(0, 3)) == 0:
        kwargs["is_causal"] = draw(st.booleans())
    if draw(st.integers(0, 3)) == 0:
        kwargs["scale"] = draw(st.sampled_from([None, 0.5, 2, torch.tensor(0.25)]))
    if draw(st.integers(0, 4)) == 0:
        kwargs["dropout_p"] = draw(st.sampled_from([0.0, 0, 1.0]))
    spoiled, original = None, (q, k, v)
    choice = draw(st.integers(0, 12))
    if choice == 0:
        spoiled, kwargs["dropout_p"] = "dropout_p", draw(st.sampled_from(["0.1", None, 1.5, torch.tensor([0.0]), -0.25]))
    elif choice == 1:
        spoiled, kwargs["scale"] = "scale", draw(st.sampled_from(["1", [1.0]]))
    elif choice == 2:
        spoiled, kwargs["is_causal"] = "is_causal", draw(st.sampled_from(["yes", 1, None]))
    elif choice == 3:
        spoiled, kwargs["attn_mask"] = "attn_mask", [[True] * S] * L
    elif choice == 4:
        spoiled = draw(st.sampled_from(["key", "value"]))
        spoiled_tensor = draw(st.sampled_from(["float64", "meta", "batch", "list"]))
        t = k if spoiled == "key" else v
        t = {"float64": t.double() if dtype != torch.float64 else t.float(), "meta": t.to("meta"),
             "batch": torch.zeros(4, *t.shape, dtype=dtype), "list": t.tolist()}[spoiled_tensor]  # fmt: skip
        k, v = (t, v) if spoiled == "key" else (k, t)
    elif choice == 5:
        spoiled, q = "query", draw(st.sampled_from([q.long(), q > 0, q.reshape(-1), q.tolist()]))
    return (q, k, v), kwargs, spoiled, original


SDPA_ARGUMENTS = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale")


@contract_settings(300)
@given(sdpa_calls())
def test_scaled_dot_product_attention_keeps_the_contract(case):
    args, kwargs, spoiled, original = case
    dropout_p = kwargs.get("dropout_p", 0.0)
    if isinstance(dropout_p, float) and dropout_p < 0:  # Differences from PyTorch, 1: refused, naming dropout_p
        assert_clear_error(outcome(lambda: scaled_dot_product_attention(*args, **kwargs)), "dropout_p", ())
        return
    dtype = args[0].dtype if isinstance(args[0], torch.Tensor) else torch.float32
    theirs = outcome(lambda: F.scaled_dot_product_attention(*args, **kwargs))
    if isinstance(dropout_p, float) and dropout_p > 1 and not isinstance(theirs, Refused):
        # Differences from PyTorch, 1: PyTorch does not check dropout_p when there is nothing to drop
        assert_clear_error(outcome(lambda: scaled_dot_product_attention(*args, **kwargs)), "dropout_p", ())
        return
    if empty_attention(*args) and not isinstance(theirs, Refused):
        # Differences from PyTorch, 3: on empty inputs PyTorch skips its shape checks; ours runs them all the same
        ours = outcome(lambda: scaled_dot_product_attention(*args, **kwargs))
        if isinstance(ours, Refused):
            assert_clear_error(ours, None, SDPA_ARGUMENTS)
            return
        if ours.shape != theirs.shape:  # PyTorch returns query's shape, not the broadcast one: nothing in it either way
            assert ours.numel() == 0 and theirs.numel() == 0
            return
    mask = kwargs.get("attn_mask")
    if isinstance(mask, torch.Tensor) and mask.dim() < 2 and isinstance(theirs, Refused):
        # Differences from PyTorch, 4: a 0-D/1-D mask broadcasts on every path (PyTorch's fused CPU kernel refuses it)
        with sdpa_kernel(SDPBackend.MATH):
            theirs = outcome(lambda: F.scaled_dot_product_attention(*args, **kwargs))
    put_right = {k: v for k, v in kwargs.items() if k != spoiled}
    check_contract(lambda: scaled_dot_product_attention(*args, **kwargs), lambda: theirs_or_raise(theirs), spoiled, SDPA_ARGUMENTS,
                   unspoiled=lambda: F.scaled_dot_product_attention(*original, **put_right), **tolerance(dtype))


def theirs_or_raise(result):
    if isinstance(result, Refused):
        raise result.args[0]
    return result


def empty_attention(query, key, value) -> bool:
    """No query, no key, no value feature or an empty batch: PyTorch's SDPA returns without its shape checks."""
    tensors_ = (query, key, value)
    if not all(isinstance(t, torch.Tensor) and t.dim() >= 2 for t in tensors_):
        return False
    batches = [t.shape[:-2] for t in tensors_]
    return query.shape[-2] == 0 or key.shape[-2] == 0 or value.shape[-1] == 0 or any(0 in b for b in batches)


# ---------------------------------------------------------------------------- Head
@contract_settings(60)
@given(
    n_embd=st.integers(1, 6), head_size=st.integers(1, 4), block_size=st.integers(1, 5), T=st.integers(0, 6), B=st.integers(0, 2),
    spoil=st.sampled_from([None, None, None, "width", "dtype", "int", "list", "2-D", "dropout", "head_size"]),
)
def test_head_keeps_the_contract(n_embd, head_size, block_size, T, B, spoil):
    """Twin: PyTorch's SDPA with is_causal=True on the head's own projections; T > block_size is refused."""
    dropout = {"dropout": "0.1"}.get(spoil, 0.0)
    size = 0 if spoil == "head_size" else head_size
    head = outcome(lambda: Head(n_embd, size, block_size, dropout))
    if spoil in ("dropout", "head_size"):
        assert_clear_error(head, spoil if spoil == "dropout" else "head_size", ())
        return
    x = torch.randn(B, T, n_embd + (spoil == "width"), generator=torch.Generator().manual_seed(T))
    x = {"dtype": x.double(), "int": x.long(), "list": x.tolist(), "2-D": x[0] if B else x.sum(0)}.get(spoil, x)
    if spoil == "2-D":  # the head takes (B, T, n_embd) only (PyTorch's SDPA would also take 2-D)
        assert_clear_error(outcome(lambda: head(x)), "x", ())
        return
    if spoil is None and T > block_size:
        assert_clear_error(outcome(lambda: head(x)), "block_size", ())
        return
    twin = lambda: F.scaled_dot_product_attention(head.query(x), head.key(x), head.value(x), is_causal=True)  # noqa: E731
    check_contract(lambda: head(x), twin, "x" if spoil else None, ("x",))


# ---------------------------------------------------------------------------- MultiheadAttention
@st.composite
def mha_calls(draw):
    E = draw(st.sampled_from([2, 4, 6]))
    h = draw(st.sampled_from([h for h in (1, 2, 3) if E % h == 0]))
    config = dict(bias=draw(st.booleans()), add_bias_kv=draw(st.integers(0, 3)) == 0, add_zero_attn=draw(st.integers(0, 3)) == 0,
                  batch_first=draw(st.booleans()))  # fmt: skip
    if draw(st.integers(0, 3)) == 0:
        config["kdim"], config["vdim"] = draw(st.sampled_from([3, 4])), draw(st.sampled_from([2, 5]))
    kdim, vdim = config.get("kdim", E), config.get("vdim", E)
    L, S, N = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 2))
    batched = draw(st.integers(0, 3)) > 0

    def shaped(length, width):
        if not batched:
            return (length, width)
        return (N, length, width) if config["batch_first"] else (length, N, width)

    gen = torch.Generator().manual_seed(L * 7 + S)
    q = torch.randn(shaped(L, E), generator=gen)
    self_attention = kdim == vdim == E and S == L and draw(st.booleans())
    k = q if self_attention else torch.randn(shaped(S, kdim), generator=gen)
    v = q if self_attention else torch.randn(shaped(S, vdim), generator=gen)
    S = L if self_attention else S
    kwargs: dict = dict(need_weights=draw(st.booleans()), average_attn_weights=draw(st.booleans()))
    if draw(st.booleans()):
        shape = draw(st.sampled_from([(L, S), (N * h if batched else h, L, S), (L, S + 1), (2, L, S), (S,)]))
        kwargs["attn_mask"] = draw(tensors([torch.bool, torch.float32, torch.int64], shape=shape, values=[0.0, 1.0, float("-inf")]))
    if draw(st.booleans()):
        shape = draw(st.sampled_from([(N, S) if batched else (S,), (N, S + 1), (1, S), (S,)]))
        kpm = draw(tensors([torch.bool, torch.float32, torch.int32], shape=shape, values=[0.0, 1.0, float("-inf")]))
        kwargs["key_padding_mask"] = kpm
    if draw(st.integers(0, 3)) == 0:
        kwargs["is_causal"] = True
        if draw(st.booleans()):
            kwargs["attn_mask"] = torch.ones(L, S, dtype=torch.bool).triu(1)
    spoiled = None
    choice = draw(st.integers(0, 8))
    if choice == 0:
        spoiled = draw(st.sampled_from(["query", "key", "value"]))
        bad = draw(st.sampled_from(["double", "list", "width"]))
        tensors_ = {"query": q, "key": k, "value": v}
        t = tensors_[spoiled]
        tensors_[spoiled] = {"double": t.double(), "list": t.tolist(), "width": torch.cat([t, t[..., :1]], -1)}[bad]
        q, k, v = tensors_["query"], tensors_["key"], tensors_["value"]
    elif choice == 1:
        spoiled = draw(st.sampled_from(["attn_mask", "key_padding_mask"]))
        kwargs[spoiled] = [[True] * S] * L
    return (E, h, config), (q, k, v), kwargs, spoiled


def _mha_twins(E, h, config):
    torch.manual_seed(0)
    theirs = nn.MultiheadAttention(E, h, **config)
    ours = MultiheadAttention(E, h, **config)
    ours.load_state_dict(theirs.state_dict())
    if config.get("bias"):  # random biases, so a bias mistake cannot hide behind zeros
        with torch.no_grad():
            for module in (ours, theirs):
                torch.manual_seed(1)
                module.in_proj_bias.uniform_(-1, 1)
                module.out_proj.bias.uniform_(-1, 1)
    return ours, theirs


MHA_ARGUMENTS = ("query", "key", "value", "attn_mask", "key_padding_mask", "is_causal")


def mha_difference(h, config, args, kwargs) -> str | None:
    """The argument ours refuses where PyTorch accepts (MultiheadAttention's Differences 1 and 3), or None."""
    if not kwargs.get("is_causal") or kwargs.get("key_padding_mask") is not None or kwargs["need_weights"]:
        return None
    mask = kwargs.get("attn_mask")
    if mask is None or not isinstance(args[0], torch.Tensor):
        return None
    batched = args[0].dim() == 3
    seq = 1 if batched and config["batch_first"] else 0
    if not isinstance(args[1], torch.Tensor):
        return None
    L, S, heads = args[0].shape[seq], args[1].shape[seq], h * (args[0].shape[1 - seq] if batched else 1)
    fits = tuple(mask.shape) in ((L, S), (heads, L, S)) if isinstance(mask, torch.Tensor) else True
    if isinstance(mask, torch.Tensor) and mask.dim() in (2, 3) and not fits:
        return "attn_mask"
    return "values" if config["add_bias_kv"] or config["add_zero_attn"] else None


@contract_settings(120)
@given(mha_calls())
def test_multihead_attention_keeps_the_contract(case):
    (E, h, config), args, kwargs, spoiled = case
    ours, theirs = _mha_twins(E, h, config)
    difference = mha_difference(h, config, args, kwargs)
    if difference == "values":  # Difference 1: the appended slot stays visible; the values differ, the verdict does not
        theirs_result, ours_result = outcome(lambda: theirs(*args, **kwargs)), outcome(lambda: ours(*args, **kwargs))
        if isinstance(theirs_result, Refused):
            assert_clear_error(ours_result, spoiled, MHA_ARGUMENTS)
        else:
            assert not isinstance(ours_result, Refused), ours_result.args[0]
        return
    if difference == "attn_mask" and spoiled is None:  # Difference 3: a mask that does not fit is refused
        assert_clear_error(outcome(lambda: ours(*args, **kwargs)), "attn_mask", ())
        return
    put_right = {k: v for k, v in kwargs.items() if k != spoiled}
    check_contract(lambda: ours(*args, **kwargs), lambda: theirs(*args, **kwargs), spoiled, MHA_ARGUMENTS, rtol=1e-5, atol=1e-5,
                   unspoiled=(lambda: theirs(*args, **put_right)) if spoiled in kwargs else None)


# ---------------------------------------------------------------------------- the Transformer family
KINDS = ["TransformerEncoderLayer", "TransformerDecoderLayer", "TransformerEncoder", "TransformerDecoder", "Transformer"]
SELF_MASKS = {  # kind -> (mask, padding mask, causal flag) of the self-attention over the first input
    "TransformerEncoderLayer": ("src_mask", "src_key_padding_mask", "is_causal"),
    "TransformerEncoder": ("mask", "src_key_padding_mask", "is_causal"),
    "TransformerDecoderLayer": ("tgt_mask", "tgt_key_padding_mask", "tgt_is_causal"),
    "TransformerDecoder": ("tgt_mask", "tgt_key_padding_mask", "tgt_is_causal"),
    "Transformer": ("tgt_mask", "tgt_key_padding_mask", "tgt_is_causal"),
}


def build_transformer(M, kind, d_model, nhead, ff, layers, batch_first, norm_first, activation):
    torch.manual_seed(0)
    layer_args = dict(dim_feedforward=ff, dropout=0.0, batch_first=batch_first, norm_first=norm_first, activation=activation)
    if kind == "Transformer":
        return M.Transformer(d_model, nhead, layers, max(layers, 1), **layer_args)
    if kind == "TransformerEncoder":
        return M.TransformerEncoder(M.TransformerEncoderLayer(d_model, nhead, **layer_args), layers, enable_nested_tensor=False)
    if kind == "TransformerDecoder":
        return M.TransformerDecoder(M.TransformerDecoderLayer(d_model, nhead, **layer_args), layers)
    return getattr(M, kind)(d_model, nhead, **layer_args)


@st.composite
def transformer_calls(draw):
    kind = draw(st.sampled_from(KINDS))
    d_model = draw(st.sampled_from([4, 6]))
    nhead = draw(st.sampled_from([1, 2, 3, 4]))
    spoiled = None if d_model % nhead == 0 else "nhead"
    config = dict(d_model=d_model, nhead=nhead, ff=draw(st.sampled_from([0, 4, 8])), layers=draw(st.sampled_from([1, 1, 2, 0])),
                  batch_first=draw(st.booleans()), norm_first=draw(st.booleans()), activation=draw(st.sampled_from(["relu", "gelu"])))  # fmt: skip
    S, T, N = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 2))
    batched = draw(st.integers(0, 3)) > 0
    gen = torch.Generator().manual_seed(S * 5 + T)

    def sequence(length):
        shape = ((N, length, d_model) if config["batch_first"] else (length, N, d_model)) if batched else (length, d_model)
        return torch.randn(shape, generator=gen)

    src, tgt = sequence(S), sequence(T)
    first, first_len = (src, S) if kind.startswith("TransformerEncoder") else (tgt, T)
    names = SELF_MASKS[kind]
    kwargs: dict = {}
    heads = nhead * (N if batched else 1)
    good_self = ((first_len, first_len), (heads, first_len, first_len))
    if draw(st.booleans()):
        shape = draw(st.sampled_from([*good_self, *good_self, (first_len + 1, first_len + 1)]))
        dtypes = [torch.bool, torch.bool, torch.float32, torch.int64]
        kwargs[names[0]] = draw(tensors(dtypes, shape=shape, values=[0.0, 0.0, 1.0, float("-inf")]))
    if draw(st.booleans()):
        good = (N, first_len) if batched else (first_len,)
        shape = draw(st.sampled_from([good, good, good, (N, first_len + 1), (N + 1, first_len)]))
        kwargs[names[1]] = draw(tensors([torch.bool, torch.bool, torch.float32, torch.int64], shape=shape, values=[0.0, 0.0, 1.0]))
    if draw(st.integers(0, 3)) == 0:
        kwargs[names[2]] = draw(st.sampled_from([True, False, True, "yes"]))
    if kind in ("TransformerDecoderLayer", "TransformerDecoder", "Transformer") and draw(st.booleans()):
        name = draw(st.sampled_from(["memory_mask", "memory_key_padding_mask"]))
        shape = draw(st.sampled_from([(T, S), (N, S), (S,), (T, S + 1), (heads, T, S)]))
        kwargs[name] = draw(tensors([torch.bool, torch.float32, torch.int64], shape=shape, values=[0.0, 1.0]))
    if kind == "Transformer" and draw(st.integers(0, 3)) == 0:
        name = draw(st.sampled_from(["src_mask", "src_key_padding_mask"]))
        shape = draw(st.sampled_from([(S, S), (N, S), (S,), (T, T)]))
        kwargs[name] = draw(tensors([torch.bool, torch.float32], shape=shape, values=[0.0, 1.0]))
    if spoiled is None and draw(st.integers(0, 6)) == 0:
        spoiled = draw(st.sampled_from([n for n in kwargs if not isinstance(kwargs[n], str)] or ["tgt"]))
        if spoiled == "tgt" or spoiled not in kwargs:
            spoiled = "src" if kind.startswith("TransformerEncoder") else "tgt"
            src, tgt = (src.double(), tgt) if spoiled == "src" else (src, tgt.double())
        else:
            kwargs[spoiled] = draw(st.sampled_from([[[0.0]], "mask"]))
    inputs = (src,) if kind.startswith("TransformerEncoder") else (tgt, src) if kind != "Transformer" else (src, tgt)
    return kind, config, inputs, kwargs, spoiled


def transformer_difference(kind, config, inputs, kwargs) -> str | None:
    """The argument ours refuses where PyTorch accepts (the causal-flag path of MultiheadAttention's
    Difference 3, and causal flags that are not bools), or None."""
    mask_name, padding_name, flag_name = SELF_MASKS[kind]
    flag = kwargs.get(flag_name)
    if flag is not None and not isinstance(flag, bool):
        return flag_name
    if flag is True and kwargs.get(padding_name) is None:
        mask = kwargs.get(mask_name)
        x = inputs[0] if kind != "Transformer" else inputs[1]
        length = x.shape[1 if x.dim() == 3 and config["batch_first"] else 0]
        if isinstance(mask, torch.Tensor) and mask.dim() in (2, 3) and tuple(mask.shape[-2:]) != (length, length):
            return mask_name
    return None


TRANSFORMER_ARGUMENTS = ("src", "tgt", "memory", "src_mask", "tgt_mask", "memory_mask", "mask", "src_key_padding_mask",
                         "tgt_key_padding_mask", "memory_key_padding_mask", "is_causal", "src_is_causal", "tgt_is_causal",
                         "memory_is_causal", "d_model", "nhead", "num_encoder_layers", "num_decoder_layers", "num_layers")  # fmt: skip


@contract_settings(100)
@given(transformer_calls())
def test_transformer_family_keeps_the_contract(case):
    kind, config, inputs, kwargs, spoiled = case
    theirs = outcome(lambda: build_transformer(nn, kind, **config))
    ours = outcome(lambda: build_transformer(cu, kind, **config))
    if isinstance(theirs, Refused) or isinstance(ours, Refused):
        check_contract(lambda: build_transformer(cu, kind, **config), lambda: build_transformer(nn, kind, **config), spoiled,
                       TRANSFORMER_ARGUMENTS)
        return
    ours.load_state_dict(theirs.state_dict())
    if config["layers"] == 0 and kind != "TransformerEncoderLayer" and kind != "TransformerDecoderLayer":
        spoiled = None  # an empty stack cannot run: the message may name num_layers instead
    ours.train(), theirs.train()  # dropout is 0; training keeps PyTorch off its fused inference path
    difference = transformer_difference(kind, config, inputs, kwargs)
    if difference and spoiled in (None, difference) and not isinstance(outcome(lambda: theirs(*inputs, **kwargs)), Refused):
        assert_clear_error(outcome(lambda: ours(*inputs, **kwargs)), difference, ())
        return
    check_contract(lambda: ours(*inputs, **kwargs), lambda: theirs(*inputs, **kwargs), spoiled, TRANSFORMER_ARGUMENTS,
                   rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------- synthesizers
@st.composite
def synthesizer_calls(draw):
    kind = draw(st.sampled_from(["dense", "random", "fixed_random", "factorized_dense", "factorized_random", "random+dot_product",
                                 "dense+dot_product"]))  # fmt: skip
    E, h = draw(st.sampled_from([(4, 1), (4, 2), (6, 3)]))
    max_len, batch_first = 6, draw(st.booleans())
    L, N = draw(st.sampled_from([1, 2, 3, 4, 5, 6, 7])), draw(st.integers(1, 2))
    batched = draw(st.integers(0, 3)) > 0
    shape = ((N, L, E) if batch_first else (L, N, E)) if batched else (L, E)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(L))
    kwargs: dict = dict(need_weights=draw(st.booleans()), average_attn_weights=draw(st.booleans()))
    if draw(st.booleans()):
        mask_shape = draw(st.sampled_from([(L, L), (N * h if batched else h, L, L), (L, L), (L + 1, L), (L,)]))
        dtypes = [torch.bool, torch.bool, torch.float32, torch.int64]
        kwargs["attn_mask"] = draw(tensors(dtypes, shape=mask_shape, values=[0.0, 0.0, 1.0]))
    if draw(st.booleans()):
        good = (N, L) if batched else (L,)
        kpm_shape = draw(st.sampled_from([good, good, good, (1, L), (N, L + 1)]))
        kwargs["key_padding_mask"] = draw(tensors([torch.bool, torch.bool, torch.float32, torch.int64], shape=kpm_shape, values=[0.0, 0.0, 1.0]))
    spoiled, dropout = None, 0.0
    choice = draw(st.integers(0, 11))
    if choice == 0:
        spoiled = draw(st.sampled_from(["attn_mask", "key_padding_mask"]))
        kwargs[spoiled] = [[False] * L]
    elif choice == 1:
        spoiled, x = "query", x.double()
    elif choice == 2:
        spoiled, dropout = "dropout", draw(st.sampled_from(["0.1", None, 1.5]))
    return kind, (E, h, max_len, batch_first, dropout), x, kwargs, spoiled


@contract_settings(80)
@given(synthesizer_calls())
def test_synthesizers_keep_multihead_attentions_contract(case):
    """Twin: nn.MultiheadAttention, for what is refused and for the shapes and dtypes of what is returned.

    A synthesizer also refuses sequences longer than its max_len (naming max_len), and applies the causal
    mask itself for ``is_causal=True`` without a mask, where MultiheadAttention needs the mask.
    """
    kind, (E, h, max_len, batch_first, dropout), x, kwargs, spoiled = case
    layer = outcome(lambda: make_synthesizer(kind, E, h, max_len, dropout=dropout, batch_first=batch_first))
    if spoiled == "dropout":
        assert_clear_error(layer, "dropout", ())
        return
    mha = nn.MultiheadAttention(E, h, batch_first=batch_first)
    theirs = outcome(lambda: mha(x, x, x, **kwargs))
    ours = outcome(lambda: layer(x, x, x, **kwargs))
    length = x.shape[1 if x.dim() == 3 and batch_first else 0]
    if length > max_len:  # too long for the layer, whatever else is wrong
        assert_clear_error(ours, None, ("max_len", *([spoiled] if spoiled else [])))
    elif isinstance(theirs, Refused):
        put_right = {k: v for k, v in kwargs.items() if k != spoiled}
        if spoiled in kwargs and isinstance(outcome(lambda: mha(x, x, x, **put_right)), Refused):
            spoiled = None  # something else is wrong too
        assert_clear_error(ours, spoiled, ("query", "key", "value", "attn_mask", "key_padding_mask"))
    else:
        assert not isinstance(ours, Refused), ours.args[0]
        assert ours[0].shape == theirs[0].shape and ours[0].dtype == theirs[0].dtype
        assert (ours[1] is None) == (theirs[1] is None)
        if ours[1] is not None:
            assert ours[1].shape == theirs[1].shape


# ---------------------------------------------------------------------------- trace_shapes
class Returns(nn.Module):
    """Returns ``structure`` with every leaf "t" replaced by a tensor computed from the input."""

    def __init__(self, structure):
        super().__init__()
        self.structure = structure
        self.inner = nn.Linear(2, 3)

    def forward(self, x):
        def build(s):
            if s == "t":
                return self.inner(x)
            if isinstance(s, dict):
                return {k: build(v) for k, v in s.items()}
            if isinstance(s, (tuple, list)):
                return type(s)(build(v) for v in s)
            return s

        return build(self.structure)


def expected_shapes(value):
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    if isinstance(value, dict):
        return {k: expected_shapes(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return tuple(expected_shapes(v) for v in value)
    return None


LEAVES = st.sampled_from(["t", "t", None, 3, "text"])
STRUCTURES = st.recursive(LEAVES, lambda inner: st.one_of(st.lists(inner, max_size=3), st.lists(inner, max_size=3).map(tuple),
                                                          st.dictionaries(st.sampled_from(["a", "logits", "loss"]), inner, max_size=3)),
                          max_leaves=6)  # fmt: skip


@contract_settings(40)
@given(structure=STRUCTURES, batch=st.integers(0, 3))
def test_trace_shapes_records_every_output_structure(structure, batch):
    model = Returns(structure)
    x = torch.zeros(batch, 2)
    rows = trace_shapes(model, x, print_table=False)
    assert rows[0].output_shape == expected_shapes(model(x))
    assert all(row.output_shape == (batch, 3) for row in rows[1:])
    assert rows[0].input_shapes == [(batch, 2)]


@pytest.mark.parametrize("model", [lambda x: x, None, "model", functools.partial(nn.Linear, 2, 3)])
def test_trace_shapes_refuses_what_is_not_a_module(model):
    assert_clear_error(outcome(lambda: trace_shapes(model, torch.zeros(1, 2))), "model", ())
