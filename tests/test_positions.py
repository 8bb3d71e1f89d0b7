"""Positions: attention's permutation equivariance, sinusoidal table vs the formula, RoPE's relative property, ALiBi's slopes."""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import DEVICES
from torch import nn

from course_utils import MultiheadAttention, TransformerEncoder, TransformerEncoderLayer
from course_utils.positions import alibi_bias, alibi_slopes, apply_rope, sinusoidal_positions

# --- attention without positions is permutation-equivariant --------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_multihead_attention_is_permutation_equivariant(device):
    torch.manual_seed(0)
    theirs = nn.MultiheadAttention(16, 4, batch_first=True, device=device).eval()
    ours = MultiheadAttention(16, 4, batch_first=True, device=device).eval()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(3, 7, 16, device=device)
    perm = torch.randperm(7, device=device)
    for module in (theirs, ours):
        out, _ = module(x, x, x)
        out_perm, _ = module(x[:, perm], x[:, perm], x[:, perm])
        torch.testing.assert_close(out_perm, out[:, perm], atol=1e-5, rtol=1e-4)


def test_the_course_encoder_is_permutation_equivariant_and_a_causal_mask_breaks_it():
    torch.manual_seed(0)
    layer = TransformerEncoderLayer(16, 4, dim_feedforward=32, dropout=0.0, batch_first=True)
    encoder = TransformerEncoder(layer, num_layers=2).eval()
    x = torch.randn(2, 6, 16)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    with torch.no_grad():
        torch.testing.assert_close(encoder(x[:, perm]), encoder(x)[:, perm], atol=1e-5, rtol=1e-4)
        causal = nn.Transformer.generate_square_subsequent_mask(6)
        assert not torch.allclose(encoder(x[:, perm], mask=causal), encoder(x, mask=causal)[:, perm], atol=1e-3)


# --- sinusoidal -------------------------------------------------------------------------------


def _formula(num_positions, d_model):
    table = torch.zeros(num_positions, d_model, dtype=torch.float64)
    for p in range(num_positions):
        for col in range(d_model):
            i = col // 2
            angle = p / 10000 ** (2 * i / d_model)
            table[p, col] = math.sin(angle) if col % 2 == 0 else math.cos(angle)
    return table


@pytest.mark.parametrize("num_positions,d_model", [(10, 8), (33, 16), (5, 7), (1, 2)])
def test_sinusoidal_positions_follow_the_formula(num_positions, d_model):
    table = sinusoidal_positions(num_positions, d_model, dtype=torch.float64)
    assert table.shape == (num_positions, d_model)
    torch.testing.assert_close(table, _formula(num_positions, d_model))
    assert sinusoidal_positions(num_positions, d_model).dtype == torch.get_default_dtype()


def test_sinusoidal_start_gives_the_later_rows_and_an_offset_is_a_rotation():
    full = sinusoidal_positions(40, 12, dtype=torch.float64)
    torch.testing.assert_close(sinusoidal_positions(10, 12, start=30, dtype=torch.float64), full[30:])
    k = 4
    rotation = torch.zeros(12, 12, dtype=torch.float64)
    for i in range(6):
        w = 10000 ** (-2 * i / 12)
        c, s = math.cos(k * w), math.sin(k * w)
        rotation[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = torch.tensor([[c, s], [-s, c]], dtype=torch.float64)
    torch.testing.assert_close(full[:-k] @ rotation.T, full[k:])


@pytest.mark.parametrize("args,words", [((0, 8), "num_positions"), ((4, 0), "d_model"), ((4, 2.0), "d_model")])
def test_sinusoidal_positions_reject_bad_sizes(args, words):
    with pytest.raises(ValueError, match=words):
        sinusoidal_positions(*args)


# --- RoPE -------------------------------------------------------------------------------------


def _rope_complex(x, positions, base=10000.0):
    """An independent RoPE: adjacent pairs as complex numbers times e^{i p theta} (Meta LLaMA's formulation)."""
    d = x.shape[-1]
    theta = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    rotation = torch.polar(torch.ones(len(positions), d // 2, dtype=torch.float64), positions.double()[:, None] * theta)
    pairs = torch.view_as_complex(x.double().reshape(*x.shape[:-1], d // 2, 2).contiguous())
    return torch.view_as_real(pairs * rotation).flatten(-2).to(x.dtype)


@pytest.mark.parametrize("device", DEVICES)
def test_apply_rope_matches_the_complex_formulation_and_keeps_norms(device):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 9, 16, device=device)
    positions = torch.tensor([0, 1, 2, 5, 8, 13, 21, 34, 100], device=device)
    rotated = apply_rope(x, positions)
    torch.testing.assert_close(rotated.cpu(), _rope_complex(x.cpu(), positions.cpu()), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(rotated.norm(dim=-1), x.norm(dim=-1))
    torch.testing.assert_close(apply_rope(x[..., :4, :]), apply_rope(x[..., :4, :], torch.arange(4, device=device)))
    torch.testing.assert_close(apply_rope(x, torch.zeros(9, device=device)), x)  # position 0: no rotation


def test_rope_scores_depend_only_on_the_offset():
    torch.manual_seed(1)
    q, k = torch.randn(32, dtype=torch.float64), torch.randn(32, dtype=torch.float64)

    def score(m, n):
        return apply_rope(q[None], torch.tensor([m]))[0] @ apply_rope(k[None], torch.tensor([n]))[0]

    for offset in (0, 1, 7, -3):
        scores = torch.stack([score(n + offset, n) for n in (3, 10, 57, 400)])
        torch.testing.assert_close(scores, scores[:1].expand(4))
    assert not torch.allclose(score(5, 0), score(6, 0))


def test_rope_attention_is_invariant_to_shifting_every_position():
    torch.manual_seed(2)
    q, k, v = torch.randn(3, 1, 2, 6, 8, dtype=torch.float64).unbind(0)
    pos = torch.arange(6)
    out = F.scaled_dot_product_attention(apply_rope(q, pos), apply_rope(k, pos), v, is_causal=True)
    shifted = F.scaled_dot_product_attention(apply_rope(q, pos + 50), apply_rope(k, pos + 50), v, is_causal=True)
    torch.testing.assert_close(out, shifted)


def test_apply_rope_errors_name_the_argument():
    with pytest.raises(ValueError, match="last dim of `x` must be even"):
        apply_rope(torch.randn(2, 5, 7))
    with pytest.raises(ValueError, match="`positions`"):
        apply_rope(torch.randn(2, 5, 8), torch.arange(4))
    with pytest.raises(TypeError, match="floating-point"):
        apply_rope(torch.ones(2, 5, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="`x`"):
        apply_rope(torch.randn(8))
    with pytest.raises(ValueError, match="`base`"):
        apply_rope(torch.randn(2, 5, 8), base=0.5)


# --- ALiBi ------------------------------------------------------------------------------------


def _paper_slopes(n):
    """The slope function of the ALiBi authors' code (ofirpress/attention_with_linear_biases)."""

    def power_of_2(n):
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(n).is_integer():
        return power_of_2(n)
    closest = 2 ** math.floor(math.log2(n))
    return power_of_2(closest) + _paper_slopes(2 * closest)[0::2][: n - closest]


@pytest.mark.parametrize("n_head", [1, 2, 4, 6, 8, 12, 16, 20])
def test_alibi_slopes_are_the_papers(n_head):
    torch.testing.assert_close(alibi_slopes(n_head), torch.tensor(_paper_slopes(n_head), dtype=torch.float32))


def test_alibi_slopes_of_8_heads_are_halvings():
    assert alibi_slopes(8).tolist() == [2.0**-h for h in range(1, 9)]


def test_alibi_bias_is_minus_slope_times_distance_and_blocks_the_future():
    bias = alibi_bias(4, 5)
    m = alibi_slopes(4)
    for h in range(4):
        for i in range(5):
            for j in range(5):
                expected = -m[h].item() * (i - j) if j <= i else float("-inf")
                assert bias[h, i, j].item() == pytest.approx(expected)
    both_ways = alibi_bias(4, 5, causal=False)
    torch.testing.assert_close(both_ways, both_ways.transpose(-2, -1))
    assert not torch.signbit(bias.diagonal(dim1=-2, dim2=-1)).any()  # 0.0 on the diagonal, not -0.0


def test_alibi_as_a_float_mask_in_both_multihead_attentions():
    torch.manual_seed(3)
    N, L, E, H = 2, 6, 16, 4
    ours = MultiheadAttention(E, H, batch_first=True)
    theirs = nn.MultiheadAttention(E, H, batch_first=True)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(N, L, E)
    mask = alibi_bias(H, L).repeat(N, 1, 1)  # (N*H, L, L)
    out_ours, w_ours = ours(x, x, x, attn_mask=mask, average_attn_weights=False)
    out_theirs, w_theirs = theirs(x, x, x, attn_mask=mask, average_attn_weights=False)
    torch.testing.assert_close(out_ours, out_theirs, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(w_ours, w_theirs, atol=1e-5, rtol=1e-4)
    # by hand: softmax(q k^T / sqrt(d) + bias) per head
    q, k, v = F.linear(x, theirs.in_proj_weight, theirs.in_proj_bias).chunk(3, dim=-1)
    q, k = (t.view(N, L, H, E // H).transpose(1, 2) for t in (q, k))
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(E // H) + alibi_bias(H, L), dim=-1)
    torch.testing.assert_close(w_theirs, weights, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
def test_alibi_bias_on_a_device(device):
    bias = alibi_bias(8, 4, device=device)
    assert bias.device.type == torch.device(device).type and bias.shape == (8, 4, 4)
