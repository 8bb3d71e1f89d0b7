"""course_utils' Transformer modules against torch.nn's, loaded with the same weights.

The parity sweep covers post-LN/pre-LN x relu/gelu x batch_first x bias x
{eval, eval + no_grad (PyTorch's fast paths), train with dropout 0} x
{no mask, causal masks, causal + padding masks}, for every class.
"""

from __future__ import annotations

import copy
import functools
import itertools
import warnings

import pytest
import torch
import torch.nn.functional as F
from conftest import DEVICES
from torch import nn

import course_utils as cu
from course_utils.transformer import TransformerInputError, record_attention

E, H, FF = 16, 4, 24  # d_model, nhead, dim_feedforward
N, S, T = 3, 6, 5  # batch, source length, target length
ATOL = 1e-5


OPTIONS = list(itertools.product([False, True], ["relu", "gelu"], [False, True], [True, False]))  # norm_first, act, bf, bias
OPTION_IDS = [f"{'preLN' if nf else 'postLN'}-{act}-{'bf' if bf else 'sbe'}-{'bias' if b else 'nobias'}" for nf, act, bf, b in OPTIONS]
MODES = ["eval", "eval_no_grad", "train_dropout0"]
MASKS = ["none", "causal", "causal+padding"]
KINDS = ["encoder_layer", "decoder_layer", "encoder", "decoder", "transformer"]
# Every module kind x option x mode; the masks take turns, so that for every kind each mode meets
# each mask with five or six of the options (all 720 rows repeated each kind-mode-mask case 16 times).
SWEEP = [(kind, option, mode, MASKS[(option + m) % len(MASKS)])
         for kind, option, (m, mode) in itertools.product(KINDS, range(len(OPTIONS)), enumerate(MODES))]


pytestmark = [
    pytest.mark.usefixtures("one_thread"),  # tiny tensors: extra threads only add overhead
    # PyTorch's own warnings on paths the sweep takes on purpose
    pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors:UserWarning"),
    pytest.mark.filterwarnings("ignore:Support for mismatched:UserWarning"),
    pytest.mark.filterwarnings("ignore:enable_nested_tensor is True:UserWarning"),
]


def _quiet(fn, *args, **kwargs):
    """Build a torch.nn module without its 'enable_nested_tensor' UserWarning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return fn(*args, **kwargs)


def _randomise(module: nn.Module, seed: int) -> None:
    """Random values in every parameter (biases and norms too, so bias bugs can't hide)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def _build(kind: str, norm_first: bool, activation, batch_first: bool, bias: bool, dropout: float = 0.0, device="cpu"):
    """(ours, theirs) of one kind, with theirs' random weights loaded into ours."""
    layer_kwargs = dict(dim_feedforward=FF, dropout=dropout, activation=activation, batch_first=batch_first,
                        norm_first=norm_first, bias=bias)
    if kind == "encoder_layer":
        theirs, ours = nn.TransformerEncoderLayer(E, H, **layer_kwargs), cu.TransformerEncoderLayer(E, H, **layer_kwargs)
    elif kind == "decoder_layer":
        theirs, ours = nn.TransformerDecoderLayer(E, H, **layer_kwargs), cu.TransformerDecoderLayer(E, H, **layer_kwargs)
    elif kind == "encoder":
        theirs = _quiet(nn.TransformerEncoder, nn.TransformerEncoderLayer(E, H, **layer_kwargs), 2, nn.LayerNorm(E, bias=bias))
        ours = cu.TransformerEncoder(cu.TransformerEncoderLayer(E, H, **layer_kwargs), 2, nn.LayerNorm(E, bias=bias))
    elif kind == "decoder":
        theirs = nn.TransformerDecoder(nn.TransformerDecoderLayer(E, H, **layer_kwargs), 2, nn.LayerNorm(E, bias=bias))
        ours = cu.TransformerDecoder(cu.TransformerDecoderLayer(E, H, **layer_kwargs), 2, nn.LayerNorm(E, bias=bias))
    else:
        kwargs = dict(d_model=E, nhead=H, num_encoder_layers=2, num_decoder_layers=2, **layer_kwargs)
        theirs, ours = _quiet(nn.Transformer, **kwargs), cu.Transformer(**kwargs)
    _randomise(theirs, seed=KINDS.index(kind) * 100 + 8 * norm_first + 4 * batch_first + 2 * bias + (activation == 'gelu'))
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    return ours.to(device), theirs.to(device)


def _inputs(kind: str, batch_first: bool, masks: str, device="cpu", seed=0):
    """(args, kwargs) for a forward call of ``kind``: random src/tgt and the requested masks."""
    g = torch.Generator().manual_seed(seed)

    def seq(length):
        x = torch.randn(length, N, E, generator=g)  # (L, N, E)
        return (x.transpose(0, 1).contiguous() if batch_first else x).to(device)

    src, tgt = seq(S), seq(T)
    src_pad = torch.zeros(N, S, dtype=torch.bool)
    src_pad[0, S - 2:] = True  # padding at the end of sequence 0 (PyTorch's nested path needs that)
    src_pad[2, S - 1:] = True
    tgt_pad = torch.zeros(N, T, dtype=torch.bool)
    tgt_pad[1, T - 2:] = True
    src_pad, tgt_pad = src_pad.to(device), tgt_pad.to(device)
    causal_s = nn.Transformer.generate_square_subsequent_mask(S, device=device)
    causal_t = nn.Transformer.generate_square_subsequent_mask(T, device=device)
    m = {}
    if kind in ("encoder_layer", "encoder"):
        if masks != "none":
            m["src_mask" if kind == "encoder_layer" else "mask"] = causal_s
            if kind == "encoder_layer":
                m["is_causal"] = True
        if masks == "causal+padding":
            m["src_key_padding_mask"] = src_pad
        return (src,), m
    if kind in ("decoder_layer", "decoder"):
        if masks != "none":
            m["tgt_mask"] = causal_t
            if kind == "decoder_layer":
                m["tgt_is_causal"] = True
        if masks == "causal+padding":
            m["tgt_key_padding_mask"] = tgt_pad
            m["memory_key_padding_mask"] = src_pad
        return (tgt, src), m
    if masks != "none":
        m["tgt_mask"] = causal_t
    if masks == "causal+padding":
        m.update(src_key_padding_mask=src_pad, tgt_key_padding_mask=tgt_pad, memory_key_padding_mask=src_pad)
    return (src, tgt), m


def _run(module, mode, args, kwargs):
    module.train(mode == "train_dropout0")
    with torch.no_grad() if mode == "eval_no_grad" else torch.enable_grad():
        return module(*args, **kwargs)


# ---------------------------------------------------------------------------- the parity sweep
@pytest.mark.parametrize("kind,option,mode,masks", SWEEP,
                         ids=[f"{k}-{OPTION_IDS[o]}-{m}-{mk}" for k, o, m, mk in SWEEP])
def test_parity_sweep(kind, option, mode, masks):
    norm_first, activation, batch_first, bias = OPTIONS[option]
    ours, theirs = _build(kind, norm_first, activation, batch_first, bias)
    args, kwargs = _inputs(kind, batch_first, masks)
    expected = _run(theirs, mode, args, kwargs)
    got = _run(ours, mode, args, kwargs)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=1e-5)


def test_sweep_size():
    """The number of configurations the sweep compares (reported in the issue)."""
    assert len(SWEEP) == 5 * 16 * 3 == 240
    for kind in KINDS:
        assert {(mode, masks) for k, _, mode, masks in SWEEP if k == kind} == set(itertools.product(MODES, MASKS))


# ---------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("option", range(len(OPTIONS)), ids=OPTION_IDS)
def test_gradients_match(option, device):
    norm_first, activation, batch_first, bias = OPTIONS[option]
    ours, theirs = _build("transformer", norm_first, activation, batch_first, bias, device=device)
    (src, tgt), kwargs = _inputs("transformer", batch_first, "causal+padding", device=device)
    grads = []
    for model in (ours, theirs):
        model.train()
        s, t = src.clone().requires_grad_(True), tgt.clone().requires_grad_(True)
        weights = torch.linspace(-1, 1, E, device=device)
        (model(s, t, **kwargs) * weights).sum().backward()
        grads.append({"src": s.grad, "tgt": t.grad, **{n: p.grad for n, p in model.named_parameters()}})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[1]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-4, rtol=1e-4, msg=name)


@pytest.mark.parametrize("device", DEVICES)
def test_float64_and_device(device):
    ours, theirs = _build("transformer", False, "relu", True, True, device=device)
    ours, theirs = ours.double(), theirs.double()
    (src, tgt), kwargs = _inputs("transformer", True, "causal+padding", device=device)
    src, tgt = src.double(), tgt.double()
    ours.eval(), theirs.eval()
    got, expected = ours(src, tgt, **kwargs), theirs(src, tgt, **kwargs)
    assert got.dtype == torch.float64 and got.device.type == device
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-10)


# ---------------------------------------------------------------------------- more options
def test_dropout_in_training_matches_with_the_same_seed():
    for batch_first, norm_first in itertools.product([False, True], [False, True]):
        ours, theirs = _build("transformer", norm_first, "relu", batch_first, True, dropout=0.2)
        (src, tgt), kwargs = _inputs("transformer", batch_first, "causal+padding")
        ours.train(), theirs.train()
        torch.manual_seed(7)
        expected = theirs(src, tgt, **kwargs)
        torch.manual_seed(7)
        got = ours(src, tgt, **kwargs)
        torch.testing.assert_close(got, expected, atol=ATOL, rtol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_unbatched_inputs(mode):
    ours, theirs = _build("transformer", True, "gelu", False, True)
    (src, tgt), _ = _inputs("transformer", False, "none")
    src, tgt = src[:, 0], tgt[:, 0]  # (S, E), (T, E)
    kwargs = dict(tgt_mask=nn.Transformer.generate_square_subsequent_mask(T),
                  src_key_padding_mask=torch.tensor([False] * (S - 1) + [True]))
    torch.testing.assert_close(_run(ours, mode, (src, tgt), kwargs), _run(theirs, mode, (src, tgt), kwargs), atol=ATOL, rtol=1e-5)


@pytest.mark.parametrize("mask_kind", ["bool", "float", "3d", "memory_mask", "hint_false", "src_mask"])
@pytest.mark.parametrize("mode", MODES)
def test_mask_variants(mask_kind, mode):
    ours, theirs = _build("transformer", False, "relu", True, True)
    (src, tgt), kwargs = _inputs("transformer", True, "causal+padding")
    g = torch.Generator().manual_seed(3)
    if mask_kind == "bool":  # a bool causal mask (True = blocked) is detected as causal too
        kwargs["tgt_mask"] = torch.ones(T, T, dtype=torch.bool).triu(1)
        kwargs["tgt_key_padding_mask"] = kwargs["tgt_key_padding_mask"]
    elif mask_kind == "float":  # a non-causal float mask: added to the scores
        kwargs["tgt_mask"] = torch.randn(T, T, generator=g)
    elif mask_kind == "3d":  # one mask per (batch, head), batch-major
        kwargs["tgt_mask"] = torch.randn(N * H, T, T, generator=g).masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    elif mask_kind == "memory_mask":
        kwargs["memory_mask"] = torch.rand(T, S, generator=g) < 0.3
        kwargs["memory_mask"][:, 0] = False  # no fully masked row
        kwargs["memory_key_padding_mask"] = None
    elif mask_kind == "hint_false":  # an explicit False hint: the mask is used as given
        kwargs["tgt_is_causal"] = False
    elif mask_kind == "src_mask":
        kwargs["src_mask"] = nn.Transformer.generate_square_subsequent_mask(S)
        kwargs["src_is_causal"] = True
        kwargs["src_key_padding_mask"] = None
        kwargs["memory_key_padding_mask"] = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "mismatched key_padding_mask and attn_mask" for float + bool
        expected = _run(theirs, mode, (src, tgt), kwargs)
    got = _run(ours, mode, (src, tgt), kwargs)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=1e-5)


@pytest.mark.parametrize("activation", [torch.tanh, F.silu, nn.GELU(approximate="tanh")])
def test_callable_activations(activation):
    # a module activation meets PyTorch's decoder-deepcopy bug: compare single layers (no cloning)
    for kind in ("encoder_layer", "decoder_layer"):
        ours, theirs = _build(kind, False, activation, False, True)
        args, kwargs = _inputs(kind, False, "causal")
        torch.testing.assert_close(_run(ours, "eval", args, kwargs), _run(theirs, "eval", args, kwargs), atol=ATOL, rtol=1e-5)


def test_pytorch_decoder_loses_a_module_activation_but_ours_keeps_it():
    kwargs = dict(d_model=E, nhead=H, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=FF, dropout=0.0,
                  activation=nn.GELU())
    theirs, ours = _quiet(nn.Transformer, **kwargs), cu.Transformer(**kwargs)
    assert theirs.decoder.layers[0].activation is F.relu  # the 2.13 bug: __setstate__ on deepcopy
    assert isinstance(theirs.decoder.layers[0]._modules["activation"], nn.GELU)  # the repr still says GELU
    assert isinstance(ours.decoder.layers[0].activation, nn.GELU)
    assert isinstance(ours.encoder.layers[0].activation, nn.GELU)


def test_custom_encoder_and_decoder():
    enc = cu.TransformerEncoder(cu.TransformerEncoderLayer(E, H, FF, 0.0), 1)
    dec = cu.TransformerDecoder(cu.TransformerDecoderLayer(E, H, FF, 0.0), 1)
    model = cu.Transformer(E, H, custom_encoder=enc, custom_decoder=dec)
    assert model.encoder is enc and model.decoder is dec
    (src, tgt), _ = _inputs("transformer", False, "none")
    model.eval()
    torch.testing.assert_close(model(src, tgt), dec(tgt, enc(src)))


def test_layer_norm_eps_is_passed_down():
    model = cu.Transformer(E, H, 1, 1, FF, layer_norm_eps=1e-3)
    eps = {m.eps for m in model.modules() if isinstance(m, nn.LayerNorm)}
    assert eps == {1e-3}


def test_default_model_has_pytorchs_parameter_count_and_keys():
    ours = cu.Transformer()
    theirs = _quiet(nn.Transformer)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters()) == 44_140_544
    assert list(ours.state_dict()) == list(theirs.state_dict())


# ---------------------------------------------------------------------------- structure
def test_generate_square_subsequent_mask_is_static_and_equal():
    assert isinstance(cu.Transformer.__dict__["generate_square_subsequent_mask"], staticmethod)
    for sz in (1, 4):
        expected = nn.Transformer.generate_square_subsequent_mask(sz)
        assert torch.equal(cu.Transformer.generate_square_subsequent_mask(sz), expected)
    assert cu.Transformer.generate_square_subsequent_mask(3, dtype=torch.float64).dtype == torch.float64


def test_clones_start_equal_and_reset_parameters_makes_them_differ():
    torch.manual_seed(0)
    encoder = cu.TransformerEncoder(cu.TransformerEncoderLayer(E, H, FF), 3)
    w = [layer.linear1.weight for layer in encoder.layers]
    assert w[0] is not w[1] and torch.equal(w[0], w[1]) and torch.equal(w[1], w[2])
    model = cu.Transformer(E, H, 2, 2, FF)
    a, b = model.encoder.layers
    assert not torch.equal(a.linear1.weight, b.linear1.weight)
    assert not torch.equal(a.self_attn.in_proj_weight, b.self_attn.in_proj_weight)
    assert torch.equal(a.self_attn.in_proj_bias, torch.zeros(3 * E))  # 1-D parameters keep their init
    assert torch.equal(model.decoder.norm.weight, torch.ones(E))
    bound = (6 / (FF + E)) ** 0.5  # xavier on linear1 (FF, E)
    assert float(a.linear1.weight.detach().abs().max()) <= bound


def test_module_tree_matches_pytorch():
    ours, theirs = cu.Transformer(E, H, 1, 1, FF), _quiet(nn.Transformer, E, H, 1, 1, FF)
    names = [n for n, _ in ours.named_modules()]
    assert names == [n for n, _ in theirs.named_modules()]
    assert isinstance(ours.encoder.layers[0].self_attn, cu.MultiheadAttention)


def test_encoder_zeroes_padded_rows_like_pytorchs_nested_path():
    ours, theirs = _build("encoder", False, "relu", True, True)
    (src,), kwargs = _inputs("encoder", True, "causal+padding")
    kwargs.pop("mask")
    ours.eval(), theirs.eval()
    with torch.no_grad():
        expected, got = theirs(src, **kwargs), ours(src, **kwargs)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=1e-5)
    pad = kwargs["src_key_padding_mask"]
    assert torch.allclose(got[pad], ours.norm.bias.expand(int(pad.sum()), E))  # 0 before the final norm


# ---------------------------------------------------------------------------- plugging in another attention
class _Averaging(nn.Module):
    """A stand-in 'attention' with MultiheadAttention's forward interface: mean of the values (+ projection)."""

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, batch_first=False, device=None, dtype=None, scale=1.0):
        super().__init__()
        self.batch_first, self.scale = batch_first, scale
        self.proj = nn.Linear(embed_dim, embed_dim, bias=bias, device=device, dtype=dtype)
        self.calls = []

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        self.calls.append(dict(need_weights=need_weights, is_causal=is_causal, has_mask=attn_mask is not None))
        dim = 1 if self.batch_first else 0
        return self.proj(value.mean(dim=dim, keepdim=True).expand_as(query)) * self.scale, None


def test_self_attn_factory_builds_every_self_attention():
    factory = functools.partial(_Averaging, scale=0.5)
    model = cu.Transformer(E, H, 2, 1, FF, dropout=0.0, batch_first=True, self_attn_factory=factory)
    for layer in [*model.encoder.layers, *model.decoder.layers]:
        assert isinstance(layer.self_attn, _Averaging) and layer.self_attn.scale == 0.5
    assert isinstance(model.decoder.layers[0].multihead_attn, cu.MultiheadAttention)  # cross-attention stays
    assert "encoder.layers.0.self_attn.proj.weight" in model.state_dict()
    (src, tgt), kwargs = _inputs("transformer", True, "causal+padding")
    out = model(src, tgt, **kwargs)
    assert out.shape == (N, T, E)
    call = model.decoder.layers[0].self_attn.calls[-1]
    assert call == dict(need_weights=False, is_causal=True, has_mask=True)


def test_self_attn_factory_with_pytorchs_attention_matches():
    ours = cu.Transformer(E, H, 1, 1, FF, dropout=0.0, self_attn_factory=nn.MultiheadAttention)
    theirs = _quiet(nn.Transformer, E, H, 1, 1, FF, dropout=0.0)
    _randomise(theirs, 5)
    ours.load_state_dict(theirs.state_dict())
    (src, tgt), kwargs = _inputs("transformer", False, "causal+padding")
    ours.eval(), theirs.eval()
    torch.testing.assert_close(ours(src, tgt, **kwargs), theirs(src, tgt, **kwargs), atol=ATOL, rtol=1e-5)


def test_self_attention_can_be_swapped_after_construction():
    layer = cu.TransformerEncoderLayer(E, H, FF, 0.0)
    layer.self_attn = _Averaging(E, H)
    assert layer(torch.randn(S, N, E)).shape == (S, N, E)


def test_bad_factory():
    with pytest.raises(TypeError, match="self_attn_factory"):
        cu.TransformerEncoderLayer(E, H, self_attn_factory=lambda *a, **k: "not a module")


# ---------------------------------------------------------------------------- errors
def test_mismatched_batch_sizes():
    model = cu.Transformer(E, H, 1, 1, FF)
    with pytest.raises(TransformerInputError, match="same batch size") as info:
        model(torch.randn(S, 3, E), torch.randn(T, 2, E))
    assert isinstance(info.value, RuntimeError) and isinstance(info.value, ValueError)
    bf = cu.Transformer(E, H, 1, 1, FF, batch_first=True)
    with pytest.raises(ValueError, match=r"batch_first=True.*\(3, 6, 16\) and \(2, 5, 16\)"):
        bf(torch.randn(3, S, E), torch.randn(2, T, E))
    layer = cu.TransformerDecoderLayer(E, H, FF)
    with pytest.raises(ValueError, match="`tgt` and `memory` must have the same batch size"):
        layer(torch.randn(T, 2, E), torch.randn(S, 3, E))


def test_wrong_width():
    model = cu.Transformer(E, H, 1, 1, FF)
    with pytest.raises(ValueError, match=r"`src` must have d_model=16 features .* got shape \(6, 3, 12\)"):
        model(torch.randn(S, N, 12), torch.randn(T, N, E))
    with pytest.raises(ValueError, match="`tgt` must have d_model=16"):
        model(torch.randn(S, N, E), torch.randn(T, N, 8))
    with pytest.raises(ValueError, match="`src` must have d_model=16"):
        cu.TransformerEncoderLayer(E, H)(torch.randn(S, N, 8))
    with pytest.raises(ValueError, match="`memory` must have d_model=16"):
        cu.TransformerDecoderLayer(E, H)(torch.randn(T, N, E), torch.randn(S, N, 8))
    with pytest.raises(ValueError, match="2-D .* or 3-D"):
        model(torch.randn(2, S, N, E), torch.randn(T, N, E))


def test_unknown_activation():
    with pytest.raises(ValueError, match="`activation` must be 'relu', 'gelu' or a unary callable.*'tanh'") as info:
        cu.TransformerEncoderLayer(E, H, activation="tanh")
    assert isinstance(info.value, RuntimeError)  # what torch.nn raises, so drop-in code still catches it
    with pytest.raises(ValueError, match="'swish'"):
        cu.Transformer(E, H, activation="swish")
    with pytest.raises(TypeError, match="activation"):
        cu.TransformerDecoderLayer(E, H, activation=3)


def test_bad_masks_and_layers():
    with pytest.raises(TypeError, match="src_key_padding_mask"):
        cu.TransformerEncoderLayer(E, H)(torch.randn(S, N, E), src_key_padding_mask=torch.zeros(N, S, dtype=torch.long))
    with pytest.raises(ValueError, match="num_layers"):
        cu.TransformerEncoder(cu.TransformerEncoderLayer(E, H), -1)
    empty = cu.TransformerEncoder(cu.TransformerEncoderLayer(E, H), 0)  # PyTorch builds it too...
    assert len(empty.layers) == 0
    with pytest.raises(ValueError, match="num_layers=0"):  # ...and fails when it runs
        empty(torch.randn(S, N, E))


# ---------------------------------------------------------------------------- attention maps
def test_record_attention_shapes_and_rows():
    model = cu.Transformer(E, H, 1, 2, FF, dropout=0.0, batch_first=True).eval()
    (src, tgt), kwargs = _inputs("transformer", True, "causal+padding")
    with record_attention(model) as weights:
        model(src, tgt, **kwargs)
    assert set(weights) == {"encoder.layers.0.self_attn", "decoder.layers.0.self_attn", "decoder.layers.0.multihead_attn",
                            "decoder.layers.1.self_attn", "decoder.layers.1.multihead_attn"}
    assert weights["decoder.layers.1.multihead_attn"].shape == (N, H, T, S)
    dec = weights["decoder.layers.0.self_attn"]
    torch.testing.assert_close(dec.sum(-1), torch.ones(N, H, T))
    assert float(dec.triu(1).abs().max()) == 0.0  # causal: nothing above the diagonal
    assert float(weights["encoder.layers.0.self_attn"][0, :, :, S - 2:].max()) == 0.0  # padded keys get no weight
    assert not model.encoder.layers[0].self_attn._forward_hooks  # hooks removed on exit


def test_record_attention_works_on_pytorch_models_and_checks_names():
    model = _quiet(nn.Transformer, E, H, 1, 1, FF, dropout=0.0).eval()
    (src, tgt), _ = _inputs("transformer", False, "none")
    with record_attention(model, ["decoder.layers.0.multihead_attn"]) as weights:
        model(src, tgt)
    assert weights["decoder.layers.0.multihead_attn"].shape == (N, H, T, S)
    with pytest.raises(ValueError, match="no submodule named 'nope'"):
        record_attention(model, ["nope"])


def test_deepcopy_and_state_dict_roundtrip():
    model = cu.Transformer(E, H, 1, 1, FF, activation="gelu")
    clone = copy.deepcopy(model)
    for a, b in zip(model.state_dict().values(), clone.state_dict().values()):
        assert torch.equal(a, b)
