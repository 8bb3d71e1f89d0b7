"""course_utils.Head and course_utils.scaled_dot_product_attention against PyTorch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import DEVICES

from course_utils import Head, scaled_dot_product_attention


def rand(*shape, seed=0, dtype=torch.float64, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)


# ----------------------------------------------------------------- scaled_dot_product_attention
MASK_CASES = {
    "none": lambda L, S: None,
    "bool (L, S)": lambda L, S: (torch.rand(L, S, generator=torch.Generator().manual_seed(1)) > 0.4),
    "bool broadcast (1, 1, S)": lambda L, S: torch.arange(S).lt(S - 1).view(1, 1, S),
    "float (L, S) with -inf": lambda L, S: rand(L, S, seed=2).masked_fill(torch.eye(L, S, dtype=torch.bool), float("-inf")),
    "bool per batch and head (B, h, L, S)": lambda L, S: (torch.rand(2, 3, L, S, generator=torch.Generator().manual_seed(3)) > 0.3),
}


@pytest.mark.parametrize("mask_name", list(MASK_CASES))
@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("L,S", [(4, 4), (3, 5), (5, 3)])
@pytest.mark.parametrize("scale", [None, 0.3])
def test_sdpa_matches_pytorch(mask_name, is_causal, L, S, scale):
    q, k, v = rand(2, 3, L, 6, seed=4), rand(2, 3, S, 6, seed=5), rand(2, 3, S, 7, seed=6)
    for t in (q, k, v):
        t.requires_grad_(True)
    mask = MASK_CASES[mask_name](L, S)
    if is_causal and mask is not None:  # PyTorch refuses both (with grad enabled); so do we
        with pytest.raises(RuntimeError, match="attn_mask should not be set"):
            F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=True)
        with pytest.raises(ValueError, match="not both"):
            scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=True)
        return
    ours = scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, scale=scale)
    theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, scale=scale)
    torch.testing.assert_close(ours, theirs)  # includes all-masked rows: zeros in both
    g = rand(*ours.shape, seed=7)
    torch.testing.assert_close(torch.autograd.grad((ours * g).sum(), (q, k, v)), torch.autograd.grad((theirs * g).sum(), (q, k, v)))


def test_sdpa_bool_mask_true_means_attend():
    q, k, v = rand(1, 3, 4), rand(1, 3, 4, seed=1), rand(1, 3, 2, seed=2)
    only_key_1 = torch.tensor([False, True, False]).expand(3, 3)
    out = scaled_dot_product_attention(q, k, v, attn_mask=only_key_1)
    torch.testing.assert_close(out, v[:, 1:2].expand(1, 3, 2))


def test_sdpa_fully_masked_row_is_zero_with_finite_gradients():
    q, k, v = (rand(1, 3, 4, seed=s).requires_grad_(True) for s in range(3))
    mask = torch.ones(3, 3, dtype=torch.bool)
    mask[1] = False  # query 1 may attend to nothing
    out = scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.equal(out[0, 1], torch.zeros(4, dtype=torch.float64))
    grads = torch.autograd.grad(out.sum(), (q, k, v))
    assert all(g.isfinite().all() for g in grads)


def test_sdpa_float32_and_unbatched():
    q, k, v = rand(5, 8, dtype=torch.float32), rand(6, 8, seed=1, dtype=torch.float32), rand(6, 3, seed=2, dtype=torch.float32)
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, is_causal=True), F.scaled_dot_product_attention(q, k, v, is_causal=True))


def test_sdpa_dropout():
    q, k, v = rand(2, 16, 8), rand(2, 16, 8, seed=1), torch.ones(2, 16, 1, dtype=torch.float64)
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, dropout_p=1.0), torch.zeros(2, 16, 1, dtype=torch.float64))
    torch.manual_seed(0)
    out = scaled_dot_product_attention(q, k, v, dropout_p=0.5)  # rows of weights sum to 1 before dropout
    assert not torch.allclose(out, torch.ones_like(out))  # dropout happened
    assert abs(float(out.mean()) - 1.0) < 0.15  # and it is unbiased (kept weights scaled by 2)


def test_sdpa_errors():
    with pytest.raises(ValueError, match="same width E"):
        scaled_dot_product_attention(rand(2, 3, 4), rand(2, 3, 5), rand(2, 3, 5))
    with pytest.raises(TypeError, match="bool or float"):
        scaled_dot_product_attention(rand(3, 4), rand(3, 4), rand(3, 4), attn_mask=torch.ones(3, 3, dtype=torch.long))


# ----------------------------------------------------------------- Head
def head_with_pytorch_sdpa(head: Head, x: torch.Tensor) -> torch.Tensor:
    q, k, v = head.query(x), head.key(x), head.value(x)  # (B, T, hs) each
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)  # scale 1/sqrt(hs) by default


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("T", [1, 5, 8])
def test_head_matches_sdpa_causal(device, T):
    torch.manual_seed(0)
    head = Head(n_embd=12, head_size=6, block_size=8).to(device)
    x = torch.randn(3, T, 12, device=device)
    out = head(x)
    assert out.shape == (3, T, 6)
    torch.testing.assert_close(out, head_with_pytorch_sdpa(head, x), atol=1e-6, rtol=1e-5)


def test_head_parts_and_state_dict():
    head = Head(16, 4, block_size=10, dropout=0.1)
    assert sorted(head.state_dict()) == ["key.weight", "query.weight", "tril", "value.weight"]
    for lin in (head.key, head.query, head.value):
        assert lin.bias is None and lin.weight.shape == (4, 16)
    assert torch.equal(head.tril, torch.tril(torch.ones(10, 10)))
    assert "tril" not in dict(head.named_parameters())


def test_head_is_causal_by_gradient():
    torch.manual_seed(1)
    head = Head(8, 4, block_size=6).double()
    x = torch.randn(2, 6, 8, dtype=torch.float64, requires_grad=True)
    out = head(x)
    for t in range(6):
        (grad,) = torch.autograd.grad(out[:, t].sum(), x, retain_graph=True)  # (B, T, C)
        per_position = grad.abs().sum(dim=(0, 2))  # (T,)
        assert (per_position[t + 1 :] == 0).all(), f"output {t} depends on the future"
        assert (per_position[: t + 1] > 0).all(), f"output {t} ignores part of its past"


def test_head_scales_by_head_size_not_width():
    torch.manual_seed(2)
    head = Head(32, 4, block_size=5).double()
    x = torch.randn(1, 5, 32, dtype=torch.float64)
    q, k, v = head.query(x), head.key(x), head.value(x)
    scores = (q @ k.transpose(-2, -1)) / 4**0.5
    scores = scores.masked_fill(torch.ones(5, 5).triu(1).bool(), float("-inf"))
    torch.testing.assert_close(head(x), scores.softmax(-1) @ v)


def test_head_dropout_only_in_training():
    torch.manual_seed(3)
    head = Head(8, 8, block_size=16, dropout=0.5)
    x = torch.randn(2, 16, 8)
    head.eval()
    torch.testing.assert_close(head(x), head_with_pytorch_sdpa(head, x), atol=1e-6, rtol=1e-5)
    head.train()
    assert not torch.allclose(head(x), head_with_pytorch_sdpa(head, x), atol=1e-4)


def test_head_errors_name_both_lengths():
    head = Head(8, 4, block_size=6)
    with pytest.raises(ValueError, match=r"T=7.*block_size=6"):
        head(torch.randn(1, 7, 8))
    with pytest.raises(ValueError, match="3-D"):
        head(torch.randn(7, 8))
    with pytest.raises(ValueError, match="head_size"):
        Head(8, 0, 6)
