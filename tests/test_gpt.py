"""The GPT of notebook 09: Heads == MultiheadAttention, shapes, loss, weight tying, errors, cached generation, the corpus."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import DEVICES
from torch import nn

from course_utils.gpt import (
    GPT,
    CausalSelfAttention,
    MultiHeadFromHeads,
    evaluate_loss,
    sample_next_token,
    to_multihead_attention,
)
from course_utils.kv_cache import KVCache
from course_utils.text import CharTokenizer, get_batch, load_corpus, train_val_split

POSITIONS = ["learned", "sinusoidal", "rope", "none"]


def tiny(**kwargs):
    config = dict(vocab_size=13, block_size=8, n_embd=16, n_head=4, n_layer=2)
    return GPT(**(config | kwargs))


# --- from Heads to nn.MultiheadAttention ---------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_heads_concatenated_and_projected_equal_multihead_attention(device):
    torch.manual_seed(0)
    heads = MultiHeadFromHeads(n_embd=24, n_head=4, block_size=10).to(device).eval()
    with torch.no_grad():
        heads.proj.bias.normal_()  # a bias that matters
    mha = to_multihead_attention(heads).eval()
    x = torch.randn(3, 7, 24, device=device)
    causal = nn.Transformer.generate_square_subsequent_mask(7, device=device)
    expected, _ = mha(x, x, x, attn_mask=causal, need_weights=False)
    torch.testing.assert_close(heads(x), expected, atol=1e-5, rtol=1e-4)
    assert mha.in_proj_weight.shape == (72, 24)


def test_the_batched_attention_equals_the_heads_with_the_same_weights():
    torch.manual_seed(1)
    heads = MultiHeadFromHeads(16, 4, 8).eval()
    batched = CausalSelfAttention(16, 4).eval()
    with torch.no_grad():
        for name in ("query", "key", "value"):
            getattr(batched, name).weight.copy_(torch.cat([getattr(h, name).weight for h in heads.heads]))
        batched.proj.load_state_dict(heads.proj.state_dict())
    x = torch.randn(2, 8, 16)
    torch.testing.assert_close(batched(x), heads(x), atol=1e-5, rtol=1e-4)


def test_grouped_query_attention_equals_sdpa_enable_gqa():
    torch.manual_seed(2)
    attn = CausalSelfAttention(32, 8, n_kv_head=2).eval()
    x = torch.randn(2, 6, 32)
    q = attn.query(x).view(2, 6, 8, 4).transpose(1, 2)
    k = attn.key(x).view(2, 6, 2, 4).transpose(1, 2)
    v = attn.value(x).view(2, 6, 2, 4).transpose(1, 2)
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True).transpose(1, 2).reshape(2, 6, 32)
    torch.testing.assert_close(attn(x), attn.proj(y), atol=1e-5, rtol=1e-4)


# --- the model -------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("positions,attention", [(p, "dot") for p in POSITIONS] + [("learned", a) for a in ("dense", "random", "mixture")])
def test_shapes_and_loss(device, positions, attention):
    torch.manual_seed(0)
    model = tiny(positions=positions, attention=attention).to(device)
    idx = torch.randint(0, 13, (3, 8), device=device)
    targets = torch.randint(0, 13, (3, 8), device=device)
    logits, loss = model(idx)
    assert logits.shape == (3, 8, 13) and loss is None
    logits, loss = model(idx, targets)
    torch.testing.assert_close(loss, F.cross_entropy(logits.reshape(-1, 13), targets.reshape(-1)))
    assert abs(loss.item() - math.log(13)) < 0.3  # near uniform at initialisation
    ignored = targets.clone()
    ignored[:, :4] = -100
    _, partial = model(idx, ignored)
    torch.testing.assert_close(partial, F.cross_entropy(logits[:, 4:].reshape(-1, 13), targets[:, 4:].reshape(-1)))


def test_weight_tying_shares_one_parameter():
    model = tiny()
    assert model.lm_head.weight is model.token_embedding.weight
    n_params = sum(p.numel() for p in model.parameters())
    untied = sum(p.numel() for p in model.parameters()) + model.lm_head.weight.numel()
    assert n_params == untied - 13 * 16
    _, loss = model(torch.randint(0, 13, (2, 8)), torch.randint(0, 13, (2, 8)))
    loss.backward()
    assert model.token_embedding.weight.grad is model.lm_head.weight.grad


def test_positions_options_build_what_they_say():
    assert isinstance(tiny(positions="learned").position_embedding, nn.Embedding)
    sinusoidal = tiny(positions="sinusoidal")
    assert "position_table" not in sinusoidal.state_dict() and sinusoidal.position_table.shape == (8, 16)
    for p in ("rope", "none"):
        model = tiny(positions=p)
        assert not hasattr(model, "position_embedding") and not hasattr(model, "position_table")
    assert tiny(positions="rope").blocks[0].attn.rope


def test_longer_inputs_run_without_learned_positions_and_fail_with_them():
    for p in ("sinusoidal", "rope", "none"):
        logits, _ = tiny(positions=p)(torch.zeros(1, 11, dtype=torch.long))
        assert logits.shape == (1, 11, 13)
    with pytest.raises(ValueError, match="block_size=8"):
        tiny(positions="learned")(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="block_size=8"):
        tiny(attention="dense")(torch.zeros(1, 9, dtype=torch.long))


def test_sinusoidal_rows_past_block_size_come_from_the_formula():
    torch.manual_seed(0)
    model = tiny(positions="sinusoidal", block_size=4).eval()
    longer = tiny(positions="sinusoidal", block_size=12).eval()
    longer.load_state_dict(model.state_dict())
    idx = torch.randint(0, 13, (2, 12))
    torch.testing.assert_close(model(idx)[0], longer(idx)[0])


@pytest.mark.parametrize(
    "kwargs,error,words",
    [
        (dict(positions="absolute"), ValueError, "`positions` must be one of"),
        (dict(attention="linear"), ValueError, "`attention` must be one of"),
        (dict(n_kv_head=3), ValueError, "`n_kv_head` must divide n_head=4"),
        (dict(n_kv_head=0), ValueError, "`n_kv_head` must be a positive int"),
        (dict(n_embd=18), ValueError, "`n_embd` \\(18\\) must be divisible by `n_head` \\(4\\)"),
        (dict(attention="dense", n_kv_head=2), ValueError, "leave n_kv_head=None"),
        (dict(attention="random", positions="rope"), ValueError, "positions='rope'"),
        (dict(n_embd=12, n_head=4, positions="rope"), ValueError, "head size"),
        (dict(dropout=1.0), ValueError, "`dropout`"),
        (dict(block_size=0), ValueError, "`block_size`"),
    ],
)
def test_constructor_errors_name_the_argument(kwargs, error, words):
    with pytest.raises(error, match=words):
        tiny(**kwargs)


@pytest.mark.parametrize(
    "idx,targets,error,words",
    [
        (torch.zeros(2, 3), None, TypeError, "integer token ids"),
        (torch.zeros(2, 3, dtype=torch.bool), None, TypeError, "integer token ids"),
        (torch.zeros(3, dtype=torch.long), None, ValueError, "2-D tensor"),
        (torch.zeros(2, 0, dtype=torch.long), None, ValueError, "at least one token"),
        (torch.full((2, 3), 13), None, ValueError, "vocab_size=13"),
        (torch.full((2, 3), -1), None, ValueError, "vocab_size=13"),
        ([[1, 2]], None, ValueError, "`idx` must be a 2-D tensor"),
        (torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 4, dtype=torch.long), ValueError, "`targets` must have the shape"),
        (torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3), TypeError, "`targets` must hold integer"),
    ],
)
def test_forward_errors_name_the_argument(idx, targets, error, words):
    with pytest.raises(error, match=words):
        tiny()(idx, targets)


@pytest.mark.parametrize(
    "kwargs,error,words",
    [
        (dict(top_k=0), ValueError, "`top_k`"),
        (dict(top_k=14), ValueError, "`top_k`"),
        (dict(top_k=2.0), ValueError, "`top_k`"),
        (dict(temperature=-1.0), ValueError, "`temperature`"),
        (dict(temperature=float("nan")), ValueError, "`temperature`"),
        (dict(max_new_tokens=-1), ValueError, "`max_new_tokens`"),
        (dict(use_cache=1), TypeError, "`use_cache`"),
        (dict(generator=0), TypeError, "`generator`"),
    ],
)
def test_generate_errors_name_the_argument(kwargs, error, words):
    with pytest.raises(error, match=words):
        tiny().generate(torch.zeros(1, 2, dtype=torch.long), **({"max_new_tokens": 3} | kwargs))


# --- sampling and generation -----------------------------------------------------------------------


def test_sample_next_token_greedy_topk_and_temperature():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(500, 10, generator=g)
    assert torch.equal(sample_next_token(logits, temperature=0), logits.argmax(-1, keepdim=True))
    assert torch.equal(sample_next_token(logits, top_k=1, generator=g), logits.argmax(-1, keepdim=True))
    top3 = logits.topk(3, dim=-1).indices
    drawn = sample_next_token(logits, top_k=3, generator=g)
    assert (drawn == top3).any(dim=-1).all()
    same = [sample_next_token(logits, 0.7, 4, torch.Generator().manual_seed(5)) for _ in range(2)]
    assert torch.equal(*same)
    cold = sample_next_token(logits, 0.01, generator=g)
    assert (cold == logits.argmax(-1, keepdim=True)).float().mean() > 0.9


@pytest.mark.parametrize("positions,n_kv_head", list(itertools.product(POSITIONS, [None, 2, 1])))
def test_cached_generation_gives_the_same_tokens(positions, n_kv_head):
    torch.manual_seed(0)
    model = tiny(positions=positions, n_kv_head=n_kv_head).double()
    with torch.no_grad():  # sharper logits than the N(0, 0.02) initialisation, so ties cannot hide a bug
        for p in model.parameters():
            p.mul_(20.0 if p.dim() > 1 else 1.0)
    prompt = torch.randint(0, 13, (3, 5))
    for kwargs in (dict(temperature=0.0), dict(temperature=1.0), dict(temperature=0.8, top_k=4)):
        runs = [model.generate(prompt, 12, use_cache=c, generator=torch.Generator().manual_seed(7), **kwargs) for c in (True, False)]
        assert runs[0].shape == (3, 17)
        assert torch.equal(runs[0], runs[1]), (positions, n_kv_head, kwargs)  # 12 new tokens: the window slides past block_size=8


@pytest.mark.parametrize("positions", POSITIONS)
def test_cached_logits_equal_recomputed_logits(positions):
    torch.manual_seed(1)
    model = tiny(positions=positions, n_kv_head=2).eval()
    idx = torch.randint(0, 13, (2, 8))
    full, _ = model(idx)  # (B, T, V)
    cache = KVCache(model.n_layer)
    first, _ = model(idx[:, :3], cache=cache)
    steps = [model(idx[:, t : t + 1], cache=cache)[0] for t in range(3, 8)]
    torch.testing.assert_close(torch.cat([first] + steps, dim=1), full, atol=1e-5, rtol=1e-4)
    assert len(cache) == 8


def test_the_cache_refuses_synthesizers_and_learned_positions_past_block_size():
    with pytest.raises(ValueError, match="attention='dot'"):
        tiny(attention="dense")(torch.zeros(1, 2, dtype=torch.long), cache=KVCache(2))
    model, cache = tiny(), KVCache(2)
    model(torch.zeros(1, 8, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="position 8"):
        model(torch.zeros(1, 1, dtype=torch.long), cache=cache)


@pytest.mark.parametrize("attention", ["dense", "random", "mixture"])
def test_synthesizer_generation_recomputes_and_agrees(attention):
    torch.manual_seed(0)
    model = tiny(attention=attention)
    prompt = torch.randint(0, 13, (2, 3))
    runs = [model.generate(prompt, 10, top_k=5, use_cache=c, generator=torch.Generator().manual_seed(3)) for c in (True, False)]
    assert torch.equal(*runs) and runs[0].shape == (2, 13)


def test_generate_keeps_the_prompt_restores_the_mode_and_allows_zero_tokens():
    model = tiny(dropout=0.1).train()
    prompt = torch.randint(0, 13, (2, 3))
    out = model.generate(prompt, 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out[:, :3], prompt) and model.training
    assert torch.equal(model.generate(prompt, 0), prompt)


@pytest.mark.parametrize("device", DEVICES)
def test_generation_on_a_device(device):
    torch.manual_seed(0)
    model = tiny(positions="rope", n_kv_head=1).to(device)
    prompt = torch.randint(0, 13, (2, 3), device=device)
    runs = [model.generate(prompt, 6, temperature=0.0, use_cache=c) for c in (True, False)]
    assert runs[0].device.type == torch.device(device).type and torch.equal(*runs)


# --- the corpus ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus():
    return load_corpus()


def test_the_corpus_ships_with_its_licence(corpus):
    from importlib import resources

    data = resources.files("course_utils").joinpath("data")
    assert len(corpus) == 465_048 and corpus.startswith('The "assert" statement')
    assert "PYTHON SOFTWARE FOUNDATION LICENSE VERSION 2" in data.joinpath("LICENSE_PSF.txt").read_text()
    assert "pydoc_data/topics.py" in data.joinpath("README.md").read_text()


def test_tokenizer_round_trip(corpus):
    tokenizer = CharTokenizer(corpus)
    assert tokenizer.vocab_size == 103 and tokenizer.chars == sorted(set(corpus))
    ids = tokenizer.encode(corpus)
    assert ids.dtype == torch.long and ids.shape == (len(corpus),)
    assert tokenizer.decode(ids) == corpus
    assert tokenizer.decode(ids[:20].tolist()) == corpus[:20]
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tokenizer.encode("日本")
    with pytest.raises(ValueError, match="`ids`"):
        tokenizer.decode([103])


def test_the_split_is_deterministic_contiguous_and_complete(corpus):
    data = CharTokenizer(corpus).encode(corpus)
    train, val = train_val_split(data)
    again = train_val_split(data)
    assert torch.equal(train, again[0]) and torch.equal(val, again[1])
    assert len(val) == int(len(data) * 0.1) and torch.equal(torch.cat([train, val]), data)
    with pytest.raises(ValueError, match="`val_fraction`"):
        train_val_split(data, 1.0)


def test_get_batch_targets_are_the_next_tokens():
    data = torch.arange(100)
    x, y = get_batch(data, 4, 10, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, 10)
    assert torch.equal(y, x + 1)
    again = get_batch(data, 4, 10, torch.Generator().manual_seed(0))
    assert torch.equal(again[0], x)


def test_evaluate_loss_covers_every_window_once():
    torch.manual_seed(0)
    model = tiny()
    data = torch.randint(0, 13, (50,))
    windows = (len(data) - 1) // 8
    x, y = data[: windows * 8].view(-1, 8), data[1 : windows * 8 + 1].view(-1, 8)
    model.eval()
    expected = model(x, y)[1].item()
    model.train()
    assert evaluate_loss(model, data, batch_size=2) == pytest.approx(expected, rel=1e-5)
    assert model.training


