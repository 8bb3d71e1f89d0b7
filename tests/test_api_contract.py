"""Bad input to the public API: PyTorch's answer where PyTorch accepts it, a clear error where it refuses.

A clear error is a ValueError, TypeError or RuntimeError whose message names the argument the user
passed (``tgt_key_padding_mask``, not the inner ``key_padding_mask``). Every case runs the torch twin on
the same input first, so the test says what PyTorch 2.13 does, not what we remember it doing.
The documented "Differences from PyTorch" each have a test here too.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import course_utils.transformer as cu
from course_utils import activations as A
from course_utils.attention import Head, MultiheadAttention, scaled_dot_product_attention
from course_utils.module_tools import trace_shapes
from course_utils.synthesizer import (
    DenseSynthesizer,
    FactorizedDenseSynthesizer,
    FactorizedRandomSynthesizer,
    RandomSynthesizer,
    SynthesizerMixture,
)

CLEAR = (ValueError, TypeError, RuntimeError)


def rand(*shape, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape) + len(shape)), dtype=dtype)


def torch_refuses(call) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            call()
        except Exception:  # PyTorch's errors come in every kind (AssertionError, IndexError...)
            return
    pytest.fail("PyTorch accepts this input")


def refused(call, *words, error=CLEAR) -> str:
    """``call`` raises a clear error whose message contains every word; returns the message."""
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    return message


def same_answer(ours, theirs, rtol=1.3e-6, atol=1e-5) -> None:
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    torch.testing.assert_close(ours, theirs, rtol=rtol, atol=atol, equal_nan=True)


# ---------------------------------------------------------------------------- scaled_dot_product_attention
Q, K, V = rand(2, 3, 4), rand(2, 5, 4), rand(2, 5, 6)

SDPA_REFUSED = {
    "mask with an extra leading dim": (dict(attn_mask=torch.ones(7, 2, 3, 5, dtype=torch.bool)), ["attn_mask", "(7, 2, 3, 5)", "(2, 3, 5)"]),
    "mask (1, 1, L, S) on 3-D inputs": (dict(attn_mask=torch.zeros(1, 1, 3, 5)), ["attn_mask", "(1, 1, 3, 5)"]),
    "mask with a larger leading dim": (dict(attn_mask=torch.ones(4, 3, 5, dtype=torch.bool)), ["attn_mask", "(4, 3, 5)"]),
    "mask of the wrong L": (dict(attn_mask=torch.zeros(4, 5)), ["attn_mask", "(4, 5)"]),
    "integer mask": (dict(attn_mask=torch.zeros(3, 5, dtype=torch.long)), ["attn_mask", "int64"]),
    "float64 mask on float32": (dict(attn_mask=torch.zeros(3, 5, dtype=torch.float64)), ["attn_mask", "float64"]),
    "list mask": (dict(attn_mask=[[True] * 5] * 3), ["attn_mask", "list"]),
    "mask on another device": (dict(attn_mask=torch.zeros(3, 5, device="meta")), ["attn_mask", "device", "meta"]),
    "string dropout_p": (dict(dropout_p="0.1"), ["dropout_p", "str"]),
    "None dropout_p": (dict(dropout_p=None), ["dropout_p", "NoneType"]),
    "1-D tensor dropout_p": (dict(dropout_p=torch.tensor([0.0])), ["dropout_p", "Tensor"]),
    "dropout_p above 1": (dict(dropout_p=1.5), ["dropout_p", "1.5"]),
    "string scale": (dict(scale="1"), ["scale", "str"]),
    "string is_causal": (dict(is_causal="yes"), ["is_causal", "str"]),
    "int is_causal": (dict(is_causal=1), ["is_causal", "int"]),
    "is_causal with a mask": (dict(is_causal=True, attn_mask=torch.ones(3, 5, dtype=torch.bool)), ["attn_mask", "is_causal"]),
}


@pytest.mark.parametrize("case", list(SDPA_REFUSED))
def test_sdpa_refuses_what_torch_refuses_naming_the_argument(case):
    kwargs, words = SDPA_REFUSED[case]
    torch_refuses(lambda: F.scaled_dot_product_attention(Q, K, V, **kwargs))
    refused(lambda: scaled_dot_product_attention(Q, K, V, **kwargs), *words)


SDPA_BAD_TENSORS = {
    "key on another device": ((Q, K.to("meta"), V), ["key", "device", "meta"]),
    "value on another device": ((Q, K, V.to("meta")), ["value", "device"]),
    "batch sizes that do not broadcast": ((rand(2, 3, 4), rand(3, 5, 4), rand(3, 5, 6)), ["query", "key", "(2, 3, 4)", "(3, 5, 4)"]),
    "value batch that does not broadcast": ((Q, K, rand(3, 5, 6)), ["value", "(3, 5, 6)"]),
    "float64 query": ((Q.double(), K, V), ["key", "dtype", "float64"]),
    "float64 value": ((Q, K, V.double()), ["value", "dtype"]),
    "integer query": ((Q.long(), K.long(), V.long()), ["query", "int64"]),
    "bool query": ((Q > 0, K > 0, V > 0), ["query", "bool"]),
    "1-D query": ((rand(4), K[0], V[0]), ["query", "(4,)"]),
    "list query": (([[1.0] * 4] * 3, K[0], V[0]), ["query", "list"]),
    "different widths": ((Q, rand(2, 5, 3), V), ["query", "key", "width"]),
    "different lengths": ((Q, K, rand(2, 4, 6)), ["key", "value", "length"]),
}


@pytest.mark.parametrize("case", list(SDPA_BAD_TENSORS))
def test_sdpa_refuses_bad_tensors_naming_them(case):
    args, words = SDPA_BAD_TENSORS[case]
    torch_refuses(lambda: F.scaled_dot_product_attention(*args))
    refused(lambda: scaled_dot_product_attention(*args), *words)


SDPA_ACCEPTED = {
    "mask (1, L, S)": ((Q, K, V), dict(attn_mask=rand(1, 3, 5))),
    "mask (S,)": ((Q, K, V), dict(attn_mask=torch.tensor([True, False, True, True, False]))),
    "0-D mask": ((Q, K, V), dict(attn_mask=torch.tensor(0.5))),
    "float32 mask on float16": ((Q.half(), K.half(), V.half()), dict(attn_mask=rand(3, 5))),
    "head width E = 0": ((rand(2, 3, 0), rand(2, 5, 0), V), {}),
    "value width 0": ((Q, K, rand(2, 5, 0)), {}),
    "no keys (S = 0)": ((Q, rand(2, 0, 4), rand(2, 0, 6)), {}),
    "no queries (L = 0)": ((rand(2, 0, 4), K, V), {}),
    "query batch 1 broadcast": ((rand(1, 3, 4), rand(3, 5, 4), rand(3, 5, 6)), {}),
    "2-D query against 3-D keys": ((rand(3, 4), K, V), {}),
    "value batch enlarges the output": ((Q, K, rand(3, 1, 5, 6)), {}),
    "int scale": ((Q, K, V), dict(scale=2)),
    "0-D tensor scale and dropout_p": ((Q, K, V), dict(scale=torch.tensor(0.5), dropout_p=torch.tensor(0.0))),
    "dropout_p=0 as an int": ((Q, K, V), dict(dropout_p=0)),
    "5-D inputs": ((rand(1, 2, 2, 3, 4), rand(1, 2, 2, 5, 4), rand(1, 2, 2, 5, 6)), dict(is_causal=True)),
}


@pytest.mark.parametrize("case", list(SDPA_ACCEPTED))
def test_sdpa_gives_torchs_answer_where_torch_accepts(case):
    args, kwargs = SDPA_ACCEPTED[case]
    theirs = F.scaled_dot_product_attention(*args, **kwargs)
    ours = scaled_dot_product_attention(*args, **kwargs)
    tol = dict(rtol=1e-2, atol=2e-3) if args[0].dtype == torch.float16 else {}
    same_answer(ours, theirs, **tol)


def test_sdpa_difference_negative_dropout_is_refused():
    """Differences from PyTorch, 1: PyTorch silently applies no dropout for dropout_p < 0."""
    F.scaled_dot_product_attention(Q, K, V, dropout_p=-0.1)
    refused(lambda: scaled_dot_product_attention(Q, K, V, dropout_p=-0.1), "dropout_p", "-0.1", error=ValueError)


# ---------------------------------------------------------------------------- Head
HEAD = Head(8, 4, block_size=6)

HEAD_REFUSED = {
    "wrong width": (lambda: HEAD(rand(2, 3, 7)), ["x", "n_embd=8", "(2, 3, 7)"]),
    "float64 input": (lambda: HEAD(rand(2, 3, 8, dtype=torch.float64)), ["x", "float64", "float32"]),
    "integer input": (lambda: HEAD(torch.zeros(2, 3, 8, dtype=torch.long)), ["x", "int64"]),
    "a list": (lambda: HEAD([[0.0] * 8]), ["x", "list"]),
    "2-D input": (lambda: HEAD(rand(3, 8)), ["x", "3-D", "(3, 8)"]),
    "too long": (lambda: HEAD(rand(1, 7, 8)), ["block_size=6", "T=7"]),
    "string dropout": (lambda: Head(8, 4, 6, dropout="0.1"), ["dropout", "str"]),
    "dropout above 1": (lambda: Head(8, 4, 6, dropout=1.5), ["dropout", "1.5"]),
    "zero head_size": (lambda: Head(8, 0, 6), ["head_size", "0"]),
}


@pytest.mark.parametrize("case", list(HEAD_REFUSED))
def test_head_refuses_bad_input_naming_it(case):
    call, words = HEAD_REFUSED[case]
    refused(call, *words)


# ---------------------------------------------------------------------------- activations
def _call(module, name, x, **kwargs):
    extra = {"threshold": (0.5, -1.0), "prelu": (torch.full((1,), 0.25, dtype=x.dtype),)}.get(name, ())
    if name in ("softmax", "softmin", "log_softmax"):
        kwargs.setdefault("dim", -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(module, name)(x, *extra, **kwargs)


INPLACE = {"relu", "threshold", "rrelu", "hardtanh", "relu6", "hardsigmoid", "silu", "mish", "hardswish", "elu", "celu", "selu",
           "leaky_relu"}  # fmt: skip


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.bool], ids=str)
@pytest.mark.parametrize("name", A.__all__)
def test_integer_and_bool_inputs_follow_torch(name, dtype):
    """Same dtype and values where PyTorch computes (relu keeps int64, sigmoid gives float32...), a clear error where it refuses."""
    x = torch.tensor([-3, -1, 0, 1, 2, 7]).to(dtype)
    for inplace in ([False, True] if name in INPLACE else [False]):
        kwargs = {"inplace": True} if inplace else {}
        try:
            theirs = _call(F, name, x.clone(), **kwargs)
        except Exception:
            refused(lambda kwargs=kwargs: _call(A, name, x.clone(), **kwargs), "input", str(dtype).replace("torch.", ""))
            continue
        ours = _call(A, name, x.clone(), **kwargs)
        same_answer(ours, theirs)


@pytest.mark.parametrize("name", ["softplus", "mish", "silu", "gelu", "elu", "selu", "logsigmoid", "softmax", "log_softmax", "tanh"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_reduced_precision_values_and_gradients_match_torch(name, dtype):
    """float16 softplus used to overflow (exp(20) > 65504) and its gradient, and mish's, was NaN."""
    x = torch.tensor([-6e4, -100.0, -20.0, -1.0, 0.0, 0.5, 5.0, 15.0, 19.9, 20.0, 25.0, 100.0, 6e4]).to(dtype)
    values, grads = [], []
    for module in (A, F):
        leaf = x.clone().requires_grad_(True)
        y = _call(module, name, leaf)
        y.backward(torch.ones_like(y))
        values.append(y.detach())
        grads.append(leaf.grad)
    assert not values[0].isnan().any() and not grads[0].isnan().any()
    same_answer(values[0], values[1], rtol=1e-2, atol=1e-3)
    same_answer(grads[0], grads[1], rtol=1e-2, atol=1e-3)


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "softmin"])
@pytest.mark.parametrize("shape, dim", [((0,), 0), ((2, 0), 1), ((2, 0), 0), ((0, 3), 0), ((0, 3), -1)])
def test_softmax_family_on_an_empty_dim(name, shape, dim):
    x = torch.zeros(shape)
    same_answer(getattr(A, name)(x, dim=dim), getattr(F, name)(x, dim=dim))


STRING_PARAMETERS = [
    ("threshold", dict(threshold="0", value=1.0), "threshold"), ("threshold", dict(threshold=0.0, value="1"), "value"),
    ("leaky_relu", dict(negative_slope="0.1"), "negative_slope"), ("elu", dict(alpha="1"), "alpha"),
    ("celu", dict(alpha="1"), "alpha"), ("softplus", dict(beta="1"), "beta"), ("softplus", dict(threshold="20"), "threshold"),
    ("hardshrink", dict(lambd="0.5"), "lambd"), ("softshrink", dict(lambd="0.5"), "lambd"), ("rrelu", dict(lower="0.1"), "lower"),
    ("rrelu", dict(upper=None), "upper"), ("rrelu", dict(training="yes"), "training"), ("hardtanh", dict(min_val="-1"), "min_val"),
    ("hardtanh", dict(max_val=[1.0]), "max_val"), ("gelu", dict(approximate=None), "approximate"), ("glu", dict(dim="0"), "dim"),
    ("glu", dict(dim=1.0), "dim"), ("softmax", dict(dim="0"), "dim"), ("softmax", dict(dim=0, dtype="float64"), "dtype"),
    ("log_softmax", dict(dim=0.0), "dim"), ("leaky_relu", dict(negative_slope=torch.tensor([0.1])), "negative_slope"),
]  # fmt: skip


@pytest.mark.parametrize("name, kwargs, argument", STRING_PARAMETERS)
def test_wrong_parameter_types_name_the_parameter(name, kwargs, argument):
    x = torch.linspace(-2, 2, 4)
    if name == "threshold":
        call = lambda module: module.threshold(x, kwargs["threshold"], kwargs["value"])  # noqa: E731
    else:
        call = lambda module: getattr(module, name)(x, **kwargs)  # noqa: E731
    torch_refuses(lambda: call(F))
    refused(lambda: call(A), f"`{argument}`")


def test_parameters_torch_accepts_as_numbers():
    x = torch.linspace(-2, 2, 5)
    for name, kwargs in [("leaky_relu", dict(negative_slope=torch.tensor(0.2))), ("elu", dict(alpha=True)), ("softplus", dict(beta=2))]:
        same_answer(getattr(A, name)(x, **kwargs), getattr(F, name)(x, **kwargs))


PRELU_BAD_WEIGHTS = {
    "a list": ([0.25], ["`weight`", "list"]),
    "2-D": (torch.ones(1, 3), ["`weight`", "(1, 3)"]),
    "wrong count": (torch.ones(2), ["`weight`", "2 elements"]),
    "no element": (torch.ones(0), ["`weight`", "0 elements"]),
    "float64 weight": (torch.ones(3, dtype=torch.float64), ["`weight`", "float64"]),
    "integer weight": (torch.ones(3, dtype=torch.long), ["`weight`", "int64"]),
}


@pytest.mark.parametrize("case", list(PRELU_BAD_WEIGHTS))
def test_prelu_blames_weight(case):
    weight, words = PRELU_BAD_WEIGHTS[case]
    x = rand(2, 3)
    torch_refuses(lambda: F.prelu(x, weight))
    message = refused(lambda: A.prelu(x, weight), *words)
    assert "`input`" not in message


@pytest.mark.parametrize("limits", [(0.5, 0.5), (-1.0, -1.0), (2.0, 2.0)])
def test_hardtanh_accepts_equal_limits_like_torch(limits):
    x = torch.linspace(-3, 3, 13, dtype=torch.float64)
    values, grads = [], []
    for module in (A, F):
        leaf = x.clone().requires_grad_(True)
        y = module.hardtanh(leaf, *limits)
        y.sum().backward()
        values.append(y.detach())
        grads.append(leaf.grad)
    same_answer(*values)
    same_answer(*grads)
    torch_refuses(lambda: F.hardtanh(x, 1.0, 0.5))
    refused(lambda: A.hardtanh(x, 1.0, 0.5), "min_val=1.0", "max_val=0.5", error=ValueError)


def test_rrelu_training_subgradient_at_zero_is_the_sampled_slope_like_torch():
    for module in (A, F):
        x = torch.zeros(200, dtype=torch.float64, requires_grad=True)
        module.rrelu(x, 0.1, 0.3, training=True).sum().backward()
        assert x.grad.min() >= 0.1 and x.grad.max() <= 0.3 and x.grad.std() > 0.01  # a random slope, not 1


def test_difference_complex_input_is_refused():
    """activations, Differences from PyTorch, 1."""
    z = torch.tensor([1.0 + 1.0j, -2.0j])
    for name in ("sigmoid", "tanh", "silu", "softsign", "tanhshrink"):
        getattr(F, name)(z)
        refused(lambda name=name: getattr(A, name)(z), "input", "complex")


# ---------------------------------------------------------------------------- MultiheadAttention
def _mha_pair(**kwargs):
    torch.manual_seed(0)
    theirs = nn.MultiheadAttention(8, 2, **kwargs).eval()
    ours = MultiheadAttention(8, 2, **kwargs).eval()
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def test_mha_difference_is_causal_with_an_unused_mask_of_the_wrong_shape():
    """MultiheadAttention, Differences from PyTorch, 3."""
    ours, theirs = _mha_pair()
    x = rand(5, 2, 8)
    wrong = torch.zeros(4, 4)
    theirs(x, x, x, attn_mask=wrong, is_causal=True, need_weights=False)  # PyTorch ignores the mask here...
    torch_refuses(lambda: theirs(x, x, x, attn_mask=wrong, is_causal=True, need_weights=True))  # ...but not here
    for need_weights in (False, True):
        refused(lambda nw=need_weights: ours(x, x, x, attn_mask=wrong, is_causal=True, need_weights=nw), "attn_mask", "(4, 4)")
    causal = nn.Transformer.generate_square_subsequent_mask(5)
    same_answer(ours(x, x, x, attn_mask=causal, is_causal=True, need_weights=False)[0],
                theirs(x, x, x, attn_mask=causal, is_causal=True, need_weights=False)[0])


def test_mha_bad_dtype_and_dropout_name_the_argument():
    ours, theirs = _mha_pair()
    x = rand(5, 2, 8)
    torch_refuses(lambda: theirs(x.double(), x, x))
    refused(lambda: ours(x.double(), x, x), "query", "float64")
    torch_refuses(lambda: theirs(x, x, x.double()))
    refused(lambda: ours(x, x, x.double()), "value", "float64")
    refused(lambda: MultiheadAttention(8, 2, dropout="0.1"), "dropout", "str")  # Differences, 4
    torch_refuses(lambda: theirs(x, x, x, key_padding_mask=[[True] * 5] * 2))
    refused(lambda: ours(x, x, x, key_padding_mask=[[True] * 5] * 2), "key_padding_mask", "list")


# ---------------------------------------------------------------------------- the Transformer family
E, H, FF = 8, 2, 16
SRC, TGT = rand(5, 2, E), rand(4, 2, E)


def _build(M, kind):
    torch.manual_seed(0)
    if kind == "encoder_layer":
        return M.TransformerEncoderLayer(E, H, FF, 0.0)
    if kind == "decoder_layer":
        return M.TransformerDecoderLayer(E, H, FF, 0.0)
    if kind == "encoder":
        return M.TransformerEncoder(M.TransformerEncoderLayer(E, H, FF, 0.0), 2, enable_nested_tensor=False)
    if kind == "decoder":
        return M.TransformerDecoder(M.TransformerDecoderLayer(E, H, FF, 0.0), 2)
    return M.Transformer(E, H, 1, 1, FF, 0.0)


def _run(model, kind, **kwargs):
    if kind in ("encoder_layer", "encoder"):
        return model(SRC, **kwargs)
    if kind in ("decoder_layer", "decoder"):
        return model(TGT, SRC, **kwargs)
    return model(SRC, TGT, **kwargs)


B_FALSE = dict(dtype=torch.bool)
TRANSFORMER_REFUSED = [
    ("encoder_layer", dict(src_mask=torch.zeros(4, 4)), "src_mask"),
    ("encoder_layer", dict(src_key_padding_mask=torch.zeros(2, 4, **B_FALSE)), "src_key_padding_mask"),
    ("encoder_layer", dict(src_key_padding_mask=torch.zeros(2, 5, dtype=torch.long)), "src_key_padding_mask"),
    ("encoder_layer", dict(src_mask=[[0.0] * 5] * 5), "src_mask"),
    ("encoder_layer", dict(is_causal=True), "is_causal"),
    ("encoder_layer", dict(src_mask=cu.generate_square_subsequent_mask(5), is_causal="yes"), "is_causal"),
    ("encoder", dict(mask=torch.zeros(4, 4)), "`mask`"),
    ("encoder", dict(src_key_padding_mask=torch.zeros(3, 5, **B_FALSE)), "src_key_padding_mask"),
    ("encoder", dict(is_causal=True), "is_causal"),
    ("decoder_layer", dict(tgt_mask=torch.zeros(5, 5)), "tgt_mask"),
    ("decoder_layer", dict(memory_mask=torch.zeros(4, 4)), "memory_mask"),
    ("decoder_layer", dict(tgt_key_padding_mask=torch.zeros(2, 5, **B_FALSE)), "tgt_key_padding_mask"),
    ("decoder_layer", dict(memory_key_padding_mask=torch.zeros(2, 4, **B_FALSE)), "memory_key_padding_mask"),
    ("decoder_layer", dict(tgt_mask=torch.zeros(4, 4, dtype=torch.long)), "tgt_mask"),
    ("decoder_layer", dict(memory_mask=torch.zeros(4, 5, dtype=torch.long)), "memory_mask"),
    ("decoder_layer", dict(tgt_key_padding_mask=torch.zeros(2, 4, dtype=torch.long)), "tgt_key_padding_mask"),
    ("decoder_layer", dict(memory_key_padding_mask=torch.zeros(2, 5, dtype=torch.int32)), "memory_key_padding_mask"),
    ("decoder_layer", dict(tgt_mask=[[0.0] * 4] * 4), "tgt_mask"),
    ("decoder_layer", dict(tgt_is_causal=True), "tgt_is_causal"),
    ("decoder_layer", dict(memory_is_causal=True), "memory_is_causal"),
    ("decoder", dict(tgt_is_causal=True), "tgt_is_causal"),
    ("decoder", dict(tgt_key_padding_mask=torch.zeros(3, 4, **B_FALSE)), "tgt_key_padding_mask"),
    ("decoder", dict(memory_mask=torch.zeros(5, 4)), "memory_mask"),
    ("transformer", dict(tgt_is_causal=True), "tgt_is_causal"),
    ("transformer", dict(src_is_causal=True), "src_is_causal"),
    ("transformer", dict(memory_mask=torch.zeros(5, 5)), "memory_mask"),
    ("transformer", dict(src_mask=torch.zeros(4, 4)), "src_mask"),
    ("transformer", dict(tgt_mask=torch.zeros(5, 5)), "tgt_mask"),
    ("transformer", dict(tgt_key_padding_mask=torch.zeros(2, 5, **B_FALSE)), "tgt_key_padding_mask"),
    ("transformer", dict(memory_key_padding_mask=torch.zeros(2, 4, **B_FALSE)), "memory_key_padding_mask"),
    ("transformer", dict(src_key_padding_mask=torch.zeros(2, 5, dtype=torch.long)), "src_key_padding_mask"),
]
INNER_NAMES = ("MultiheadAttention", "`key_padding_mask`", "`attn_mask`", "embed_dim", "num_heads")


@pytest.mark.parametrize("kind, kwargs, argument", TRANSFORMER_REFUSED, ids=lambda v: v if isinstance(v, str) else "")
def test_transformer_errors_name_the_users_argument(kind, kwargs, argument):
    torch_refuses(lambda: _run(_build(nn, kind).train(), kind, **kwargs))
    message = refused(lambda: _run(_build(cu, kind).train(), kind, **kwargs), argument)
    assert not any(inner in message for inner in INNER_NAMES), message


@pytest.mark.parametrize(
    "build, words",
    [
        (lambda M: M.TransformerEncoderLayer(8, 3), ["d_model=8", "nhead=3", "1, 2, 4, 8"]),
        (lambda M: M.TransformerDecoderLayer(8, 0), ["nhead", "0"]),
        (lambda M: M.TransformerEncoderLayer("8", 2), ["d_model", "str"]),
        (lambda M: M.TransformerEncoderLayer(8, 2, dropout="0.1"), ["dropout", "str"]),
        (lambda M: M.TransformerEncoderLayer(8, 2, dim_feedforward=-1), ["dim_feedforward", "-1"]),
        (lambda M: M.Transformer(8, 3, 1, 1, 16), ["Transformer", "d_model=8", "nhead=3"]),
    ],
)
def test_transformer_constructor_errors_name_d_model_and_nhead(build, words):
    torch_refuses(lambda: build(nn))
    message = refused(lambda: build(cu), *words)
    assert not any(inner in message for inner in INNER_NAMES), message


def test_transformer_input_dtype_is_named():
    torch_refuses(lambda: _build(nn, "transformer")(SRC.double(), TGT))
    refused(lambda: _build(cu, "transformer")(SRC.double(), TGT), "`src`", "float64")


def test_num_encoder_layers_zero_builds_like_torch_and_fails_clearly_when_run():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyTorch's note on enable_nested_tensor
        theirs = nn.Transformer(E, H, 0, 1, FF, 0.0)
    ours = cu.Transformer(E, H, 0, 1, FF, 0.0)
    assert len(ours.encoder.layers) == len(theirs.encoder.layers) == 0
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    torch_refuses(lambda: theirs(SRC, TGT))
    refused(lambda: ours(SRC, TGT), "num_encoder_layers=0")
    refused(lambda: cu.Transformer(E, H, -1, 1, FF), "num_encoder_layers", "-1")


def test_transformer_difference_is_causal_with_a_mask_of_the_wrong_shape():
    """The layers inherit MultiheadAttention's difference 3: PyTorch ignores the mask on its SDPA path."""
    wrong = torch.zeros(4, 4)
    _build(nn, "encoder_layer")(SRC, src_mask=wrong, is_causal=True)
    refused(lambda: _build(cu, "encoder_layer")(SRC, src_mask=wrong, is_causal=True), "src_mask", "(4, 4)")


# ---------------------------------------------------------------------------- synthesizers
SYNTHESIZERS = [
    lambda **kw: DenseSynthesizer(8, 2, 6, **kw),
    lambda **kw: RandomSynthesizer(8, 2, 6, **kw),
    lambda **kw: FactorizedDenseSynthesizer(8, 2, 6, **kw),
    lambda **kw: FactorizedRandomSynthesizer(8, 2, 6, **kw),
    lambda **kw: SynthesizerMixture(8, 2, 6, **kw),
]


@pytest.mark.parametrize("make", SYNTHESIZERS, ids=["dense", "random", "factorized_dense", "factorized_random", "mixture"])
def test_synthesizers_name_the_argument_and_the_users_shape(make):
    layer = make()
    x = rand(5, 8)  # unbatched (L, E)
    mha = nn.MultiheadAttention(8, 2)
    torch_refuses(lambda: mha(x, x, x, key_padding_mask=torch.zeros(1, 5, dtype=torch.bool)))
    refused(lambda: layer(x, x, x, key_padding_mask=torch.zeros(1, 5, dtype=torch.bool)), "key_padding_mask", "(S,)", "(1, 5)")
    xb = rand(5, 2, 8)
    refused(lambda: layer(xb, xb, xb, key_padding_mask=torch.zeros(2, 4, dtype=torch.bool)), "key_padding_mask", "(2, 4)")
    refused(lambda: layer(xb, xb, xb, attn_mask=[[0.0] * 5] * 5), "attn_mask", "list")
    refused(lambda: layer(xb, xb, xb, key_padding_mask=[[False] * 5] * 2), "key_padding_mask", "list")
    refused(lambda: layer(xb.double(), xb.double(), xb.double()), "query", "float64")
    refused(lambda: layer(xb, xb, xb, is_causal="yes"), "is_causal", "str")
    refused(lambda: make(dropout="0.1"), "dropout", "str")
    refused(lambda: make(dropout=None), "dropout", "NoneType")


def test_the_mixture_refuses_true_as_a_factor_like_its_siblings():
    refused(lambda: FactorizedDenseSynthesizer(8, 2, 6, a=True), "`a`", "True")
    refused(lambda: SynthesizerMixture(8, 2, 6, components=("factorized_dense", "random"), a=True), "`a`", "True")
    refused(lambda: SynthesizerMixture(8, 2, 6, components=("factorized_random", "random"), k=True), "`k`", "True")


# ---------------------------------------------------------------------------- trace_shapes
class DictModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(2, 3)

    def forward(self, x):
        return {"logits": self.proj(x), "loss": self.proj(x).sum(), "note": "not a tensor"}


def test_trace_shapes_records_a_dict_output(capsys):
    rows = trace_shapes(DictModel(), torch.zeros(4, 2))
    assert rows[0].output_shape == {"logits": (4, 3), "loss": (), "note": None}
    assert "logits: (4, 3), loss: ()" in capsys.readouterr().out
    refused(lambda: trace_shapes(lambda x: x, torch.zeros(1)), "model", "function")
