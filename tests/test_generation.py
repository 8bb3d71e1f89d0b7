"""Generating fast (notebook 10): the KV cache changes nothing but the speed; GQA; the facts of the attention toolbox.

Every claim notebook 10 makes about PyTorch 2.13 on the CPU is pinned here, so a torch upgrade
that changes one fails a test instead of leaving the notebook wrong.
"""

import logging
import shutil
import warnings

import pytest
import torch
import torch.nn.functional as F
from conftest import DEVICES
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.attention.flex_attention import create_block_mask, create_mask, flex_attention
from torch.utils.flop_counter import FlopCounterMode

from course_utils.attention_toolbox import alibi_score_mod, causal, sdpa_kernel_used, sliding_window, sliding_window_mask
from course_utils.gpt import GPT, POSITIONS, CausalSelfAttention
from course_utils.kv_cache import KVCache, kv_cache_bytes
from course_utils.positions import alibi_bias, alibi_slopes

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
LOGIT_TOLERANCE = 1e-5  # float32: cached and recomputed logits agree to this (absolute and relative); notebook 10 says so


def _gpt(positions, n_kv_head, block_size=16, seed=0, sharpen=False):
    torch.manual_seed(seed)
    model = GPT(vocab_size=11, block_size=block_size, n_embd=16, n_head=4, n_layer=2, n_kv_head=n_kv_head, positions=positions)
    if sharpen:  # GPT-2's init predicts nearly uniformly; larger weights give peaked predictions, so sampling is informative
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(8.0)
    return model.eval()


def _flex(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "flex_attention called without torch.compile()": eager is what we test
        return flex_attention(*args, **kwargs)


# --------------------------------------------------------------------------- the KV cache in the GPT


@pytest.mark.parametrize("positions", POSITIONS)
@pytest.mark.parametrize("n_kv_head", [4, 2, 1])
@pytest.mark.parametrize("sampling", [dict(temperature=0), dict(temperature=1.0), dict(temperature=0.8, top_k=5)])
def test_cached_and_uncached_generation_give_the_same_tokens(positions, n_kv_head, sampling, one_thread):
    model = _gpt(positions, n_kv_head, sharpen=True)
    prompt = torch.tensor([[1, 2, 3], [4, 5, 6]])  # (2, 3)
    new_tokens = 20  # 3 + 20 > block_size = 16: the window slides and the cache is re-filled
    runs = {use_cache: model.generate(prompt, new_tokens, use_cache=use_cache, generator=torch.Generator().manual_seed(7), **sampling)
            for use_cache in (False, True)}
    assert runs[True].shape == (2, 3 + new_tokens)
    assert torch.equal(runs[True], runs[False])


@pytest.mark.parametrize("positions", POSITIONS)
@pytest.mark.parametrize("n_kv_head", [4, 2, 1])
def test_cached_logits_equal_recomputed_logits(positions, n_kv_head, one_thread):
    model = _gpt(positions, n_kv_head)
    idx = torch.randint(11, (2, 16), generator=torch.Generator().manual_seed(1))  # (2, 16)
    with torch.no_grad():
        full, _ = model(idx)  # (2, 16, V): every position at once
        cache = KVCache(model.n_layer)
        steps = [model(idx[:, :5], cache=cache)[0]]  # the prompt: positions 0..4
        steps += [model(idx[:, t : t + 1], cache=cache)[0] for t in range(5, 16)]  # then one token at a time
    cached = torch.cat(steps, dim=1)  # (2, 16, V)
    torch.testing.assert_close(cached, full, atol=LOGIT_TOLERANCE, rtol=LOGIT_TOLERANCE)
    assert len(cache) == 16


def test_cache_size_is_the_formula(one_thread):
    model = _gpt("rope", n_kv_head=2)
    cache = KVCache(model.n_layer)
    with torch.no_grad():
        model(torch.zeros(3, 9, dtype=torch.long), cache=cache)
    assert cache.nbytes() == kv_cache_bytes(n_layer=2, n_kv_head=2, head_dim=4, seq_len=9, batch=3)


def _filled(model):
    """A cache holding block_size positions."""
    cache = KVCache(model.n_layer)
    with torch.no_grad():
        model(torch.zeros(1, model.block_size, dtype=torch.long), cache=cache)
    return cache


def test_learned_positions_stop_at_block_size_and_rope_does_not(one_thread):
    learned, rope = _gpt("learned", 4, block_size=8), _gpt("rope", 4, block_size=8)
    with pytest.raises(ValueError, match="reaches position 8, but learned positions have only block_size=8 positions"):
        learned(torch.zeros(1, 1, dtype=torch.long), cache=_filled(learned))
    with torch.no_grad():
        logits, _ = rope(torch.zeros(1, 1, dtype=torch.long), cache=_filled(rope))  # position 8: RoPE just rotates further
    assert logits.shape == (1, 1, 11)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n_kv_head", [4, 2, 1])
def test_causal_self_attention_equals_sdpa_enable_gqa(device, n_kv_head):
    torch.manual_seed(0)
    attn = CausalSelfAttention(n_embd=16, n_head=4, n_kv_head=n_kv_head).to(device).eval()
    x = torch.randn(2, 6, 16, device=device)
    q = attn.query(x).view(2, 6, 4, 4).transpose(1, 2)  # (B, H, T, D)
    k = attn.key(x).view(2, 6, n_kv_head, 4).transpose(1, 2)  # (B, H_kv, T, D)
    v = attn.value(x).view(2, 6, n_kv_head, 4).transpose(1, 2)
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)  # (B, H, T, D)
    expected = attn.proj(y.transpose(1, 2).reshape(2, 6, 16))
    torch.testing.assert_close(attn(x), expected, atol=1e-6, rtol=1e-5)


def test_fewer_kv_heads_mean_fewer_parameters_and_a_smaller_cache():
    sizes = {kv: sum(p.numel() for p in _gpt("rope", kv).parameters()) for kv in (4, 2, 1)}
    assert sizes[4] > sizes[2] > sizes[1]
    assert sizes[4] - sizes[2] == 2 * 2 * (2 * 4) * 16  # 2 layers x (key + value) x (2 heads x 4) x n_embd fewer weights


# --------------------------------------------------------------------------- why is_causal is not enough with a cache


def test_is_causal_aligns_the_mask_top_left():
    """SDPA's is_causal builds ones(L, S).tril(): one new query against S cached keys sees only key 0."""
    torch.manual_seed(0)
    q, k, v = torch.randn(1, 1, 1, 4), torch.randn(1, 1, 5, 4), torch.randn(1, 1, 5, 4)
    only_first = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(only_first, v[:, :, :1])
    all_keys = F.scaled_dot_product_attention(q, k, v)
    assert not torch.allclose(only_first, all_keys)


# --------------------------------------------------------------------------- counting the work


def test_flop_counter_has_no_formula_for_the_cpu_flash_kernel():
    q = torch.randn(1, 2, 64, 8)
    with FlopCounterMode(display=False) as fused:
        F.scaled_dot_product_attention(q, q, q)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as math_backend:
        F.scaled_dot_product_attention(q, q, q)
    assert fused.get_total_flops() == 0
    assert math_backend.get_total_flops() == 2 * (2 * 2 * 64 * 64 * 8)  # two (64 x 8) @ (8 x 64)-sized matmuls per head


# --------------------------------------------------------------------------- SDPA backends on the CPU


def test_sdpa_backends_on_the_cpu():
    q = torch.randn(2, 4, 16, 8)
    assert sdpa_kernel_used(lambda: F.scaled_dot_product_attention(q, q, q)) == "FLASH_ATTENTION"
    assert sdpa_kernel_used(lambda: F.scaled_dot_product_attention(q, q, q, is_causal=True)) == "FLASH_ATTENTION"
    mask = torch.ones(16, 16, dtype=torch.bool).tril()
    assert sdpa_kernel_used(lambda: F.scaled_dot_product_attention(q, q, q, attn_mask=mask)) == "FLASH_ATTENTION"
    k = torch.randn(2, 2, 16, 8)
    assert sdpa_kernel_used(lambda: F.scaled_dot_product_attention(q, k, k, enable_gqa=True)) == "FLASH_ATTENTION"
    assert sdpa_kernel_used(lambda: F.scaled_dot_product_attention(q, q, q, dropout_p=0.1)) == "MATH"
    assert sdpa_kernel_used(lambda: F.scaled_dot_product_attention(q[0], q[0], q[0])) == "MATH"  # 3-D input
    with sdpa_kernel(SDPBackend.MATH):
        assert sdpa_kernel_used(lambda: F.scaled_dot_product_attention(q, q, q)) == "MATH"
    assert sdpa_kernel_used(lambda: None) == "none"


@pytest.mark.parametrize("backend", [SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION])
def test_cuda_only_backends_refuse_to_run_on_the_cpu(backend):
    q = torch.randn(2, 4, 16, 8)
    with sdpa_kernel(backend), pytest.raises(RuntimeError, match="No viable backend for scaled_dot_product_attention was found"):
        F.scaled_dot_product_attention(q, q, q)


def test_sdpa_kernel_used_wants_a_callable():
    with pytest.raises(TypeError, match="`fn` must be a zero-argument callable"):
        sdpa_kernel_used(42)


@needs_cuda
def test_sdpa_uses_a_fused_kernel_on_cuda():
    q = torch.randn(2, 4, 128, 64, device="cuda", dtype=torch.float16)
    assert sdpa_kernel_used(lambda: F.scaled_dot_product_attention(q, q, q, is_causal=True)) in {
        "FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION"}


# --------------------------------------------------------------------------- the dropout trap


class _ForgetfulAttention(nn.Module):
    """Passes its dropout to SDPA whatever the mode: the trap."""

    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, q):
        return F.scaled_dot_product_attention(q, q, q, dropout_p=self.p)


def test_sdpa_applies_dropout_p_even_in_eval_mode():
    layer = _ForgetfulAttention(0.5).eval()
    q = torch.randn(1, 2, 8, 4)
    torch.manual_seed(0)
    first = layer(q)
    second = layer(q)
    assert not torch.allclose(first, second)  # random in eval mode: SDPA knows nothing of .eval()
    assert not torch.allclose(first, F.scaled_dot_product_attention(q, q, q))


def test_the_gpt_passes_dropout_only_in_training():
    torch.manual_seed(0)
    attn = CausalSelfAttention(16, 4, dropout=0.5).eval()
    x = torch.randn(1, 6, 16)
    assert torch.equal(attn(x), attn(x))


# --------------------------------------------------------------------------- nested jagged tensors


def _ragged(device="cpu"):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(n, 8, generator=g).to(device) for n in (3, 5, 2)]


def _split_heads(x):
    return x.unflatten(-1, (2, 4)).transpose(-3, -2)  # (..., T, 8) -> (..., 2, T, 4)


def test_linear_and_layernorm_run_on_a_nested_jagged_tensor():
    sequences = _ragged()
    nt = torch.nested.nested_tensor(sequences, layout=torch.jagged)
    assert nt.is_nested and nt.shape[0] == 3 and nt.shape[2] == 8  # (3, j, 8): j is the ragged length
    torch.manual_seed(0)
    linear, norm = nn.Linear(8, 8), nn.LayerNorm(8)
    for got, x in zip(norm(linear(nt)).unbind(), sequences):
        torch.testing.assert_close(got, norm(linear(x)))
    assert nt.values().shape == (10, 8)  # 3 + 5 + 2 rows, no padding
    assert nt.offsets().tolist() == [0, 3, 8, 10]


def test_sdpa_on_a_nested_jagged_tensor_runs_on_the_cpu_without_is_causal():
    sequences = _ragged()
    torch.manual_seed(0)
    linear = nn.Linear(8, 8)
    q = _split_heads(linear(torch.nested.nested_tensor(sequences, layout=torch.jagged)))  # (B, 2, j, 4)
    out = F.scaled_dot_product_attention(q, q, q)  # (B, 2, j, 4)
    for got, x in zip(out.unbind(), sequences):
        one = _split_heads(linear(x))  # (2, T, 4)
        torch.testing.assert_close(got, F.scaled_dot_product_attention(one, one, one))
    logging.getLogger("torch.nested._internal.sdpa").disabled = True
    try:
        with pytest.raises(RuntimeError, match="No viable backend for scaled_dot_product_attention was found"):
            F.scaled_dot_product_attention(q, q, q, is_causal=True)
    finally:
        logging.getLogger("torch.nested._internal.sdpa").disabled = False


def test_nn_multihead_attention_refuses_a_nested_tensor_in_training():
    nt = torch.nested.nested_tensor(_ragged(), layout=torch.jagged)
    mha = nn.MultiheadAttention(8, 2, batch_first=True)
    with pytest.raises(AssertionError, match="does not support NestedTensor outside of its fast path"):
        mha(nt, nt, nt, need_weights=False)


@needs_cuda
def test_causal_sdpa_on_a_nested_jagged_tensor_runs_on_cuda():
    g = torch.Generator().manual_seed(0)
    sequences = [torch.randn(n, 2, 32, generator=g).to("cuda", torch.float16) for n in (30, 50, 20)]  # (T, heads, head size)
    q = torch.nested.nested_tensor(sequences, layout=torch.jagged).transpose(1, 2)  # (3, 2, j, 32)
    out = F.scaled_dot_product_attention(q, q, q, is_causal=True)
    for got, x in zip(out.unbind(), sequences):
        one = x.transpose(0, 1)  # (2, T, 32)
        torch.testing.assert_close(got, F.scaled_dot_product_attention(one, one, one, is_causal=True), atol=2e-3, rtol=2e-3)


# --------------------------------------------------------------------------- FlexAttention


def _qkv(B=2, H=4, L=20, D=8, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, L, D, generator=g).to(device) for _ in range(3)]


def test_flex_attention_runs_eagerly_on_the_cpu_and_warns_that_it_is_unfused():
    import torch.nn.attention.flex_attention as flex

    q, k, v = _qkv()
    flex._WARNINGS_SHOWN.discard("flex_attention_performance")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = flex_attention(q, k, v)
    assert any("flex_attention called without torch.compile()" in str(w.message) for w in caught)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_flex_causal_equals_sdpa_is_causal(device):
    q, k, v = _qkv(device=device)
    block_mask = create_block_mask(causal, None, None, 20, 20, device=device)
    torch.testing.assert_close(_flex(q, k, v, block_mask=block_mask), F.scaled_dot_product_attention(q, k, v, is_causal=True),
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("window", [1, 3, 7, 25])
def test_flex_sliding_window_equals_the_explicit_band_mask(device, window):
    q, k, v = _qkv(device=device)
    assert torch.equal(create_mask(sliding_window(window), None, None, 20, 20, device=device)[0, 0], sliding_window_mask(20, window, device))
    block_mask = create_block_mask(sliding_window(window), None, None, 20, 20, device=device)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=sliding_window_mask(20, window, device))
    torch.testing.assert_close(_flex(q, k, v, block_mask=block_mask), expected, atol=1e-5, rtol=1e-5)


def test_sliding_window_mask_is_a_band():
    assert sliding_window_mask(5, 2).int().tolist() == [
        [1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [0, 1, 1, 0, 0],
        [0, 0, 1, 1, 0],
        [0, 0, 0, 1, 1],
    ]
    assert torch.equal(sliding_window_mask(4, 9), torch.ones(4, 4, dtype=torch.bool).tril())


@pytest.mark.parametrize("device", DEVICES)
def test_flex_alibi_equals_the_explicit_alibi_bias(device):
    q, k, v = _qkv(device=device)
    block_mask = create_block_mask(causal, None, None, 20, 20, device=device)
    out = _flex(q, k, v, score_mod=alibi_score_mod(alibi_slopes(4).to(device)), block_mask=block_mask)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=alibi_bias(4, 20, device=device))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_flex_gqa_equals_sdpa_gqa():
    q, _, _ = _qkv()
    k, v, _ = _qkv(H=2, seed=1)
    block_mask = create_block_mask(causal, None, None, 20, 20, device="cpu")
    torch.testing.assert_close(_flex(q, k, v, block_mask=block_mask, enable_gqa=True),
                               F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("window", [0, -2, 1.5, True])
def test_sliding_window_names_a_bad_window(window):
    with pytest.raises(ValueError, match="`window` must be an int >= 1"):
        sliding_window(window)
    with pytest.raises(ValueError, match="`window` must be an int >= 1"):
        sliding_window_mask(4, window)


def test_alibi_score_mod_wants_one_slope_per_head():
    with pytest.raises(ValueError, match="`slopes` must be a 1-D tensor"):
        alibi_score_mod(torch.ones(2, 2))


@needs_cuda
def test_compiled_flex_attention_equals_sdpa_on_cuda():
    q, k, v = _qkv(L=256, D=64, device="cuda")
    block_mask = create_block_mask(sliding_window(64), None, None, 256, 256, device="cuda")
    out = torch.compile(flex_attention)(q, k, v, block_mask=block_mask)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=sliding_window_mask(256, 64, "cuda"))
    torch.testing.assert_close(out, expected, atol=2e-3, rtol=2e-3)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None, reason="torch.compile on the CPU needs a C++ compiler")
def test_compiled_flex_attention_works_on_the_cpu_too():
    """Notebook 10: compiling FlexAttention works on a CPU whose vector instructions the compiler
    uses (AVX2, AVX-512), and cannot be built without them (``ATEN_CPU_CAPABILITY=default``), a C++
    error of the pinned PyTorch. Whichever this machine is, its half is pinned."""
    from torch._dynamo.exc import BackendCompilerFailed
    from torch._inductor.cpu_vec_isa import pick_vec_isa

    q, k, v = _qkv(L=64, D=16)
    block_mask = create_block_mask(sliding_window(8), None, None, 64, 64, device="cpu")
    if not pick_vec_isa():  # no vector instructions for the compiler
        with pytest.raises(BackendCompilerFailed, match="C\\+\\+ compile error"):
            torch.compile(flex_attention)(q, k, v, block_mask=block_mask)
        return
    out = torch.compile(flex_attention)(q, k, v, block_mask=block_mask)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=sliding_window_mask(64, 8))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
