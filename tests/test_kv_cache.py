"""KVCache, repeat_kv and kv_cache_bytes: unit tests, and repeat_kv against SDPA's own grouped-query attention."""

import pytest
import torch
import torch.nn.functional as F
from conftest import DEVICES

from course_utils.kv_cache import KVCache, kv_cache_bytes, repeat_kv


@pytest.mark.parametrize("device", DEVICES)
def test_update_appends_along_time_and_returns_everything_cached(device):
    g = torch.Generator().manual_seed(0)
    cache = KVCache(n_layer=2)
    assert len(cache) == 0 and cache.nbytes() == 0
    k1, v1 = (torch.randn(2, 3, 4, 5, generator=g).to(device) for _ in range(2))  # the prompt: 4 positions
    k2, v2 = (torch.randn(2, 3, 1, 5, generator=g).to(device) for _ in range(2))  # one new token
    assert cache.update(0, k1, v1)[0] is k1  # nothing cached yet: the input itself
    k, v = cache.update(0, k2, v2)
    assert k.shape == v.shape == (2, 3, 5, 5)
    assert torch.equal(k, torch.cat([k1, k2], dim=2)) and torch.equal(v, torch.cat([v1, v2], dim=2))
    assert len(cache) == 5
    assert cache.keys[1] is None  # layers are independent
    assert cache.nbytes() == 2 * k.numel() * k.element_size()


def test_len_counts_the_positions_of_layer_zero():
    cache = KVCache(3)
    for layer in range(3):
        cache.update(layer, torch.zeros(1, 2, 7, 4), torch.zeros(1, 2, 7, 4))
    assert len(cache) == 7
    assert cache.nbytes() == kv_cache_bytes(n_layer=3, n_kv_head=2, head_dim=4, seq_len=7, batch=1)


@pytest.mark.parametrize("n_layer", [0, -1, 1.5, True, "2"])
def test_bad_n_layer_is_named(n_layer):
    with pytest.raises(ValueError, match="n_layer must be a positive int"):
        KVCache(n_layer)


def test_update_rejects_k_and_v_of_other_shapes():
    cache = KVCache(1)
    with pytest.raises(ValueError, match=r"k and v must both be \(B, H_kv, T_new, D\), got \(1, 2, 3\)"):
        cache.update(0, torch.zeros(1, 2, 3), torch.zeros(1, 2, 3))
    with pytest.raises(ValueError, match="got .* and"):
        cache.update(0, torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 3, 5))


def test_update_names_a_bad_layer_and_new_keys_that_do_not_fit_the_cache():
    cache = KVCache(2)
    with pytest.raises(ValueError, match=r"`layer` must be an int in \[0, 2\), got 2"):
        cache.update(2, torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 3, 4))
    cache.update(0, torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 3, 4))
    with pytest.raises(ValueError, match=r"layer 0 caches .* \(1, 2, 3, 4\); the new k and v must match it in B, H_kv and D, got \(1, 4, 1, 4\)"):
        cache.update(0, torch.zeros(1, 4, 1, 4), torch.zeros(1, 4, 1, 4))


@pytest.mark.parametrize("n_rep", [0, -1, 1.5, True])
def test_repeat_kv_names_a_bad_n_rep(n_rep):
    with pytest.raises(ValueError, match=f"`n_rep` must be a positive int, got {n_rep!r}"):
        repeat_kv(torch.zeros(1, 2, 3, 4), n_rep)


def test_repeat_kv_wants_four_dimensions():
    with pytest.raises(ValueError, match=r"`x` must be a 4-D tensor \(B, H_kv, T, D\), got \(2, 3, 4\)"):
        repeat_kv(torch.zeros(2, 3, 4), 2)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n_kv_head,n_rep", [(1, 4), (2, 3), (3, 2), (4, 1)])
def test_repeat_kv_groups_neighbouring_query_heads(device, n_kv_head, n_rep):
    x = torch.randn(2, n_kv_head, 5, 3, device=device)
    out = repeat_kv(x, n_rep)
    assert out.shape == (2, n_kv_head * n_rep, 5, 3)
    for h in range(n_kv_head * n_rep):
        assert torch.equal(out[:, h], x[:, h // n_rep])  # query head h uses key/value head h // n_rep


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n_head,n_kv_head", [(4, 4), (4, 2), (4, 1), (6, 3), (6, 2), (8, 1)])
@pytest.mark.parametrize("is_causal", [False, True])
def test_repeat_kv_then_sdpa_equals_sdpa_enable_gqa(device, n_head, n_kv_head, is_causal):
    """Grouped-query attention written out (repeat the key/value heads) is PyTorch's enable_gqa=True."""
    g = torch.Generator().manual_seed(n_head * 10 + n_kv_head)
    q = torch.randn(2, n_head, 7, 8, generator=g, dtype=torch.float64).to(device)
    k, v = (torch.randn(2, n_kv_head, 7, 8, generator=g, dtype=torch.float64).to(device) for _ in range(2))
    n_rep = n_head // n_kv_head
    ours = F.scaled_dot_product_attention(q, repeat_kv(k, n_rep), repeat_kv(v, n_rep), is_causal=is_causal)
    theirs = F.scaled_dot_product_attention(q, k, v, is_causal=is_causal, enable_gqa=True)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)


def test_sdpa_without_enable_gqa_refuses_fewer_key_heads():
    q, k = torch.randn(1, 4, 3, 8), torch.randn(1, 2, 3, 8)
    with pytest.raises(RuntimeError, match="must match the size"):
        F.scaled_dot_product_attention(q, k, k)


def test_kv_cache_bytes_is_the_formula():
    assert kv_cache_bytes(12, 12, 64, 1024) == 12 * 2 * 12 * 64 * 1024 * 4 == 75_497_472  # GPT-2 small, float32
    assert kv_cache_bytes(32, 32, 128, 4096, dtype=torch.float16) == 2 * 2**30  # Llama 2 7B, one sequence: 2 GiB
    assert kv_cache_bytes(80, 8, 128, 4096, dtype=torch.bfloat16) == 1.25 * 2**30  # Llama 2 70B (8 kv heads)
    assert kv_cache_bytes(2, 3, 5, 7, batch=11, dtype=torch.float64) == 2 * 2 * 3 * 5 * 7 * 11 * 8
    assert kv_cache_bytes(2, 3, 5, 0) == 0


@pytest.mark.parametrize("name,value", [("n_layer", -1), ("n_kv_head", 1.5), ("head_dim", None), ("seq_len", True), ("batch", "1")])
def test_kv_cache_bytes_names_the_bad_argument(name, value):
    arguments = dict(n_layer=1, n_kv_head=1, head_dim=1, seq_len=1, batch=1) | {name: value}
    with pytest.raises(ValueError, match=f"`{name}` must be an int >= 0, got {value!r}"):
        kv_cache_bytes(**arguments)


def test_kv_cache_bytes_wants_a_dtype():
    with pytest.raises(TypeError, match="`dtype` must be a torch.dtype"):
        kv_cache_bytes(1, 1, 1, 1, dtype="float16")
