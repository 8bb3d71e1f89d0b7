"""Property tests of the synthesizer layers (course_utils.synthesizer)."""

import math

import pytest
import torch
from conftest import DEVICES
from torch import nn

from course_utils.synthesizer import (
    SYNTHESIZER_KINDS,
    DenseSynthesizer,
    FactorizedDenseSynthesizer,
    FactorizedRandomSynthesizer,
    RandomSynthesizer,
    SynthesizerMixture,
    count_parameters,
    make_synthesizer,
    synthesizer_parameter_count,
)

KINDS = list(SYNTHESIZER_KINDS) + ["factorized_random+dense+dot_product"]
E, H, MAX_LEN = 16, 4, 12


def _layer(kind, device="cpu", **kwargs):
    torch.manual_seed(0)
    layer = make_synthesizer(kind, E, H, MAX_LEN, batch_first=True, device=device, dtype=torch.float64, **kwargs)
    with torch.no_grad():  # random biases, so that bias bugs cannot hide
        for name, p in layer.named_parameters():
            if name.endswith("bias") or name.endswith(("b2", "ba", "bb")):
                p.normal_(0.0, 0.5)
    return layer.eval()


def _x(N=3, L=10, device="cpu", seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(N, L, E, generator=g, dtype=torch.float64).to(device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("causal", [False, True])
def test_rows_sum_to_one(kind, causal, device):
    layer = _layer(kind, device)
    x = _x(device=device)
    padding = torch.zeros(3, 10, dtype=torch.bool, device=device)
    padding[1, 7:] = True  # pad the tail of one sequence
    out, w = layer(x, x, x, key_padding_mask=padding, is_causal=causal, average_attn_weights=False)
    assert out.shape == x.shape and w.shape == (3, H, 10, 10)
    torch.testing.assert_close(w.sum(-1), torch.ones(3, H, 10, dtype=w.dtype, device=device))
    assert (w[1, :, :, 7:] == 0).all()  # padded keys get no weight
    if causal:
        assert (w.triu(1) == 0).all()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("how", ["is_causal", "bool", "float"])
def test_causal_mask_stops_every_gradient_from_the_future(kind, how):
    layer = _layer(kind)
    L = 8
    x = _x(N=2, L=L).requires_grad_(True)
    if how == "is_causal":
        kwargs = {"is_causal": True}
    elif how == "bool":
        kwargs = {"attn_mask": torch.ones(L, L, dtype=torch.bool).triu(1)}
    else:
        kwargs = {"attn_mask": nn.Transformer.generate_square_subsequent_mask(L, dtype=torch.float64)}
    out, _ = layer(x, x, x, **kwargs)
    for i in range(L):
        (grad,) = torch.autograd.grad(out[:, i].sum(), x, retain_graph=True)
        assert (grad[:, i + 1 :] == 0).all(), f"output {i} depends on a later token"
        assert grad[:, : i + 1].abs().sum() > 0


@pytest.mark.parametrize("kind", ["random", "fixed_random", "factorized_random"])
def test_random_weights_do_not_depend_on_the_input(kind):
    layer = _layer(kind)
    _, w1 = layer(_x(seed=1), _x(seed=1), _x(seed=1), average_attn_weights=False)
    _, w2 = layer(_x(seed=2) * 3, _x(seed=2), _x(seed=3), average_attn_weights=False)
    torch.testing.assert_close(w1, w2, rtol=0, atol=0)
    assert not torch.allclose(w1[0, 0], w1[0, 1])  # but each head has its own pattern


@pytest.mark.parametrize("kind", ["dense", "factorized_dense"])
def test_dense_row_i_depends_only_on_token_i(kind):
    layer = _layer(kind)
    x = _x()
    y = x.clone()
    y[:, 7] += torch.randn(3, E, dtype=torch.float64)
    _, wx = layer(x, x, x, average_attn_weights=False)
    _, wy = layer(y, y, y, average_attn_weights=False)
    changed = (wx - wy).abs().amax(dim=(0, 1, 3)) > 1e-9  # (L,): which rows changed
    assert changed.tolist() == [i == 7 for i in range(10)]


def test_dense_weights_ignore_key_and_value_but_dot_product_uses_the_key():
    dense = _layer("dense")
    x, z = _x(seed=1), _x(seed=2)
    _, w1 = dense(x, x, x)
    _, w2 = dense(x, z, z)
    torch.testing.assert_close(w1, w2, rtol=0, atol=0)
    mix = _layer("dense+dot_product")
    _, w3 = mix(x, x, x)
    _, w4 = mix(x, z, z)
    assert not torch.allclose(w3, w4)


def test_fixed_random_has_no_trainable_R():
    layer = RandomSynthesizer(E, H, MAX_LEN, trainable=False)
    names = [n for n, _ in layer.named_parameters()]
    assert not any("R" in n.split(".")[-1] for n in names)
    assert "synth.R" in layer.state_dict() and "synth.R" in dict(layer.named_buffers())
    before = layer.synth.R.clone()
    opt = torch.optim.SGD(layer.parameters(), lr=1.0)
    x = torch.randn(2, 5, E)
    layer(x, x, x)[0].pow(2).sum().backward()
    opt.step()
    torch.testing.assert_close(layer.synth.R, before, rtol=0, atol=0)
    assert count_parameters(layer) == synthesizer_parameter_count("fixed_random", E, H, MAX_LEN)
    trainable = RandomSynthesizer(E, H, MAX_LEN)
    assert isinstance(trainable.synth.R, nn.Parameter) and trainable.synth.R.shape == (H, MAX_LEN, MAX_LEN)
    fresh = RandomSynthesizer(E, H, MAX_LEN, trainable=False)
    fresh.load_state_dict(layer.state_dict())  # the fixed pattern is saved and restored
    torch.testing.assert_close(fresh.synth.R, layer.synth.R)


def test_causal_mask_leaves_the_upper_triangle_of_R_without_gradient():
    layer = RandomSynthesizer(E, H, MAX_LEN, batch_first=True)
    x = torch.randn(2, MAX_LEN, E)
    layer(x, x, x, is_causal=True)[0].sum().backward()
    grad = layer.synth.R.grad  # (h, l, l)
    assert (grad.triu(1) == 0).all() and grad.tril().abs().sum() > 0


@pytest.mark.parametrize("k", [1, 3, 8])
def test_factorized_random_logits_have_rank_at_most_k(k):
    layer = FactorizedRandomSynthesizer(32, 2, 24, k=k, batch_first=True, dtype=torch.float64)
    x = torch.randn(1, 24, 32, dtype=torch.float64)
    logits = layer.synthesize(x, x)[0]  # (h, L, L)
    ranks = torch.linalg.matrix_rank(logits).tolist()
    assert ranks == [k, k]  # at most k, and exactly k for random factors


def test_factorized_dense_rows_are_rank_one_outer_products():
    layer = FactorizedDenseSynthesizer(E, H, MAX_LEN, a=3, batch_first=True, dtype=torch.float64)
    assert (layer.synth.a, layer.synth.b) == (3, 4)
    x = _x(L=MAX_LEN)
    logits = layer.synthesize(x, x)  # (N, h, L, l)
    blocks = logits.reshape(-1, 3, 4)  # every row as an (a, b) matrix
    assert (torch.linalg.matrix_rank(blocks) == 1).all()
    assert FactorizedDenseSynthesizer(E, H, 12).synth.a == 3  # default: divisor closest to sqrt(12)
    row = logits[0, 0, 0]
    assert len(torch.unique(row.round(decimals=9))) == MAX_LEN  # all l logits distinct (A repeated, B tiled)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("config", [(512, 8, 512, 8, 16), (16, 4, 12, 3, 2), (24, 3, 20, 2, 5)])
@pytest.mark.parametrize("kind", KINDS)
def test_parameter_counts_match_the_documented_formulas(kind, config, bias):
    d, h, l, k, a = config
    if "factorized_dense" in kind and l % a:
        pytest.skip("a must divide l")
    layer = make_synthesizer(kind, d, h, l, bias=bias, k=k, a=a) if ("factorized" in kind and "+" in kind) else None
    if layer is None:
        extra = {"k": k} if kind == "factorized_random" else {"a": a} if kind == "factorized_dense" else {}
        layer = make_synthesizer(kind, d, h, l, bias=bias, **extra)
    assert count_parameters(layer) == synthesizer_parameter_count(kind, d, h, l, k=k, a=a, bias=bias)


def test_parameter_counts_of_the_reference_table():
    d, h, l = 512, 8, 512
    shared = 2 * (d * d + d)
    assert shared == 525_312
    own = {
        "dense": 528_896,
        "random": 2_097_152,
        "fixed_random": 0,
        "factorized_random": 65_536,
        "factorized_dense": (d * d + d) + h * (d // h + 1) * (16 + 32),
        "random+dot_product": 2_622_466,
        "dense+dot_product": 1_054_210,
    }
    for kind, n in own.items():
        assert synthesizer_parameter_count(kind, d, h, l, a=16, include_shared=False) == n, kind
    mha = nn.MultiheadAttention(d, h)
    assert synthesizer_parameter_count("dot_product", d, h, l) == count_parameters(mha)


def _mha_twin(mha: nn.MultiheadAttention) -> SynthesizerMixture:
    """A mixture whose only active part is dot-product attention, loaded with mha's weights."""
    E_, h = mha.embed_dim, mha.num_heads
    mix = SynthesizerMixture(E_, h, 16, components=("dot_product", "fixed_random"), batch_first=mha.batch_first, dtype=torch.float64)
    with torch.no_grad():
        mix.mix_logits.copy_(torch.tensor([0.0, -math.inf]))  # alpha = (1, 0)
        dp = mix.components["dot_product"]
        Wq, Wk, Wv = mha.in_proj_weight.chunk(3)
        bq, bk, bv = mha.in_proj_bias.chunk(3)
        dp.q_proj.weight.copy_(Wq), dp.k_proj.weight.copy_(Wk), mix.v_proj.weight.copy_(Wv)
        dp.q_proj.bias.copy_(bq), dp.k_proj.bias.copy_(bk), mix.v_proj.bias.copy_(bv)
        mix.out_proj.weight.copy_(mha.out_proj.weight), mix.out_proj.bias.copy_(mha.out_proj.bias)
    return mix.eval()


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("masks", ["none", "bool", "float", "3d", "padding", "padding+bool", "causal"])
@pytest.mark.parametrize("average", [True, False])
def test_masks_heads_and_shapes_match_torch_multihead_attention(batch_first, masks, average):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(E, H, batch_first=batch_first, dtype=torch.float64).eval()
    with torch.no_grad():
        mha.in_proj_bias.normal_(), mha.out_proj.bias.normal_()
    mix = _mha_twin(mha)
    N, L = 2, 6
    x = torch.randn(N, L, E, dtype=torch.float64)
    if not batch_first:
        x = x.transpose(0, 1)
    g = torch.Generator().manual_seed(3)
    kwargs = {}
    if "bool" in masks:
        kwargs["attn_mask"] = torch.rand(L, L, generator=g) < 0.3
        kwargs["attn_mask"].fill_diagonal_(False)
    if masks == "float":
        kwargs["attn_mask"] = torch.randn(L, L, generator=g, dtype=torch.float64)
    if masks == "3d":
        kwargs["attn_mask"] = torch.randn(N * H, L, L, generator=g, dtype=torch.float64)
    if "padding" in masks:
        kwargs["key_padding_mask"] = torch.tensor([[False] * L, [False] * 4 + [True] * 2])
    if masks == "causal":
        kwargs = {"attn_mask": nn.Transformer.generate_square_subsequent_mask(L, dtype=torch.float64), "is_causal": True}
    expected = mha(x, x, x, average_attn_weights=average, **kwargs)
    got = mix(x, x, x, average_attn_weights=average, **kwargs)
    torch.testing.assert_close(got[0], expected[0])
    torch.testing.assert_close(got[1], expected[1])
    # unbatched input, and need_weights=False
    x0 = x[:, 0] if not batch_first else x[0]
    kw0 = {k: v for k, v in kwargs.items() if k not in ("key_padding_mask",) and not (k == "attn_mask" and v.dim() == 3)}
    torch.testing.assert_close(mix(x0, x0, x0, **kw0)[0], mha(x0, x0, x0, **kw0)[0])
    assert mix(x, x, x, need_weights=False, **kwargs)[1] is None


def test_shorter_sequences_use_the_top_left_corner_and_longer_ones_raise():
    layer = _layer("random")
    x = _x(L=MAX_LEN)
    _, w_full = layer(x, x, x, average_attn_weights=False)
    _, w_short = layer(x[:, :5], x[:, :5], x[:, :5], average_attn_weights=False)
    torch.testing.assert_close(w_short, torch.softmax(layer.synth.R[:, :5, :5], -1).expand(3, -1, -1, -1))
    assert w_full.shape[-1] == MAX_LEN
    long = _x(L=MAX_LEN + 1)
    for kind in KINDS:
        with pytest.raises(ValueError, match=f"max_len={MAX_LEN}"):
            _layer(kind)(long, long, long)


def test_dense_logits_follow_the_paper_equation():
    layer = DenseSynthesizer(E, H, MAX_LEN, batch_first=True, dtype=torch.float64)
    x = _x(N=1, L=7)
    W1, b1 = layer.synth.w1.weight, layer.synth.w1.bias
    hidden = torch.relu(x[0] @ W1.T + b1).view(7, H, E // H)  # (L, h, d_h)
    for head in range(H):
        expected = hidden[:, head] @ layer.synth.w2[head, :, :7] + layer.synth.b2[head, :7]  # (L, L)
        torch.testing.assert_close(layer.synthesize(x, x)[0, head], expected)
    # the MLP is d -> d -> l
    assert layer.synth.w1.weight.shape == (E, E) and layer.synth.w2.shape == (H, E // H, MAX_LEN)


def test_mixture_alpha_starts_equal_sums_to_one_and_learns():
    layer = SynthesizerMixture(E, H, MAX_LEN, components=("random", "dense", "dot_product"), batch_first=True)
    torch.testing.assert_close(layer.alpha, torch.full((3,), 1 / 3))
    x = torch.randn(2, 5, E)
    layer(x, x, x)[0].pow(2).sum().backward()
    assert layer.mix_logits.grad is not None and layer.mix_logits.grad.abs().sum() > 0
    logits = layer.synthesize(x, x)
    parts = [p(x, x) for p in layer.components.values()]
    torch.testing.assert_close(logits, sum(a * p for a, p in zip(layer.alpha, parts)))


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: DenseSynthesizer(10, 4, 8), "divisible by `num_heads`"),
        (lambda: DenseSynthesizer(8, 2, 0), "`max_len` must be an int >= 1"),
        (lambda: FactorizedDenseSynthesizer(8, 2, 10, a=3), "`a` must divide max_len=10"),
        (lambda: FactorizedRandomSynthesizer(8, 2, 10, k=0), "`k` must be an int >= 1"),
        (lambda: RandomSynthesizer(8, 2, 10, trainable="no"), "`trainable` must be a bool"),
        (lambda: SynthesizerMixture(8, 2, 10, components=("random",)), "at least two different names"),
        (lambda: make_synthesizer("linear", 8, 2, 10), "`kind` must be one of"),
    ],
)
def test_bad_arguments_get_clear_errors(build, message):
    with pytest.raises((ValueError, TypeError), match=message):
        build()


def test_bad_inputs_get_clear_errors():
    layer = DenseSynthesizer(8, 2, 10)
    x = torch.randn(5, 2, 8)
    with pytest.raises(ValueError, match="embed_dim=8"):
        layer(torch.randn(5, 2, 6), x, x)
    with pytest.raises(ValueError, match=r"2-D `attn_mask` must have shape \(L, S\)"):
        layer(x, x, x, attn_mask=torch.zeros(4, 4))
    with pytest.raises(ValueError, match="`key_padding_mask` must have shape"):
        layer(x, x, x, key_padding_mask=torch.zeros(5, 2, dtype=torch.bool))


def _factory(kind, max_len):
    return lambda d_model, nhead, **kwargs: make_synthesizer(kind, d_model, nhead, max_len, **kwargs)


@pytest.mark.parametrize("kind", KINDS)
def test_each_variant_trains_inside_the_course_transformer_encoder_layer(kind):
    from course_utils.transformer import TransformerEncoder, TransformerEncoderLayer

    torch.manual_seed(0)
    L, V = 8, 6
    layer = TransformerEncoderLayer(E, H, dim_feedforward=32, dropout=0.0, batch_first=True, self_attn_factory=_factory(kind, L))
    assert type(layer.self_attn).__name__ != "MultiheadAttention"
    model = nn.Sequential(nn.Embedding(V, E), TransformerEncoder(layer, 1), nn.Linear(E, V))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, V, (64, L), generator=g)
    target = tokens.flip(1)  # reverse: needs information from other positions
    losses = []
    for _ in range(60):
        loss = nn.functional.cross_entropy(model(tokens).reshape(-1, V), target.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


@pytest.mark.parametrize("kind", ["dense", "random", "dense+dot_product"])
def test_synthesizer_as_decoder_self_attention_is_causal_and_trains(kind):
    from course_utils.transformer import TransformerDecoderLayer, generate_square_subsequent_mask

    torch.manual_seed(0)
    L = 6
    layer = TransformerDecoderLayer(E, H, dim_feedforward=32, dropout=0.0, batch_first=True, self_attn_factory=_factory(kind, L))
    memory = torch.randn(2, 5, E)
    tgt = torch.randn(2, L, E, requires_grad=True)
    mask = generate_square_subsequent_mask(L)
    out = layer(tgt, memory, tgt_mask=mask, tgt_is_causal=True)
    for i in range(L):
        (grad,) = torch.autograd.grad(out[:, i].sum(), tgt, retain_graph=True)
        assert (grad[:, i + 1 :] == 0).all()
    opt = torch.optim.Adam(layer.parameters(), lr=3e-3)
    target = torch.randn(2, L, E)
    first = None
    for _ in range(30):
        loss = (layer(tgt.detach(), memory, tgt_mask=mask, tgt_is_causal=True) - target).pow(2).mean()
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first


@pytest.mark.parametrize("kind", ["random", "factorized_random", "random+dot_product"])
def test_batch_shared_weights_give_the_same_output_as_the_plain_computation(kind):
    layer = _layer(kind)
    x = _x(N=3, L=7)
    out, w = layer(x, x, x, average_attn_weights=False)  # w: (N, h, L, S)
    values = layer.v_proj(x).view(3, 7, H, E // H).transpose(1, 2)  # (N, h, S, d_h)
    expected = layer.out_proj((w @ values).transpose(1, 2).reshape(3, 7, E))
    torch.testing.assert_close(out, expected)


def test_dropout_only_in_training_and_independent_per_sequence():
    layer = RandomSynthesizer(E, H, MAX_LEN, dropout=0.5, batch_first=True)
    x = torch.randn(2, 6, E)
    layer.eval()
    torch.testing.assert_close(layer(x, x, x)[0], layer(x, x, x)[0])
    layer.train()
    torch.manual_seed(0)
    _, w = layer(x, x, x, average_attn_weights=False)
    assert not torch.equal(w[0] == 0, w[1] == 0)
