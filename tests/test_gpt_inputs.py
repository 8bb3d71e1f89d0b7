"""Every public function of course_utils.gpt against bad and edge-case input: a clear error naming the argument, or a right answer."""

import pytest
import torch
from torch import nn

from course_utils.gpt import GPT, Block, CausalSelfAttention, evaluate_loss, sample_next_token
from course_utils.kv_cache import KVCache

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT(13, 8, 16, 4, 2).eval()


@pytest.fixture
def idx():
    return torch.randint(0, 13, (2, 5), generator=torch.Generator().manual_seed(1))


# --- valid input that used to raise an internal error -------------------------------------------------------------


def test_an_empty_batch_goes_through_forward_and_generate(model, idx):
    logits, loss = model(idx[:0], idx[:0])
    assert logits.shape == (0, 5, 13)
    assert torch.isnan(loss)  # PyTorch's mean over no positions
    assert model.generate(idx[:0], 3).shape == (0, 8)
    assert model.generate(idx[:0], 3, top_k=2).shape == (0, 8)
    assert sample_next_token(torch.randn(0, 5)).shape == (0, 1)


@pytest.mark.parametrize("temperature", [1e-30, 1e-45, 1e-300, 5e-324])
def test_a_vanishing_temperature_is_greedy(model, idx, temperature):
    """logits / temperature overflows (float32 turns 1e-300 into 0): the limit keeps the largest logit."""
    sampled = model.generate(idx, 4, temperature=temperature, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sampled, model.generate(idx, 4, temperature=0.0))
    logits = torch.randn(3, 13, generator=torch.Generator().manual_seed(2))
    for dtype in (torch.float16, torch.float32, torch.float64):
        assert torch.equal(sample_next_token(logits.to(dtype), temperature), logits.to(dtype).argmax(-1, keepdim=True))


def test_a_vanishing_temperature_draws_among_tied_largest_logits():
    logits = torch.tensor([[1.0, 5.0, 5.0, -2.0]]).expand(400, 4)
    drawn = sample_next_token(logits, 1e-300, generator=torch.Generator().manual_seed(0))
    assert set(drawn.flatten().tolist()) == {1, 2}


def test_ruled_out_tokens_stay_allowed_as_minus_infinity():
    logits = torch.tensor([[0.0, float("-inf"), 1.0]])
    for temperature in (1.0, 1e-300):
        assert sample_next_token(logits, temperature, generator=torch.Generator().manual_seed(0)).item() != 1


def test_int32_token_ids_are_accepted_like_nn_embedding(model, idx):
    assert torch.equal(model(idx.int())[0], model(idx)[0])
    assert model.generate(idx.int(), 2).dtype == torch.long
    data = torch.randint(0, 13, (100,), generator=torch.Generator().manual_seed(3))
    assert evaluate_loss(model, data.int()) == evaluate_loss(model, data)


# --- bad input: an error naming the argument, what was expected and what came ----------------------------------------


def call(model, idx, what):
    return {
        "idx uint8": lambda: model(idx.to(torch.uint8)),
        "idx int16": lambda: model(idx.to(torch.int16)),
        "idx float": lambda: model(idx.float()),
        "idx on another device": lambda: model(idx.to("meta")),
        "idx out of vocab": lambda: model(idx + 13),
        "targets int32": lambda: model(idx, idx.int()),
        "targets out of vocab": lambda: model(idx, idx + 13),
        "targets negative": lambda: model(idx, idx - 20),
        "cache with too few layers": lambda: model(idx, cache=KVCache(1)),
        "cache of another batch": lambda: (lambda c: (model(idx, cache=c), model(idx[:1, :1], cache=c)))(KVCache(2)),
        "generate max_new_tokens negative": lambda: model.generate(idx, -1),
        "generate top_k out of range": lambda: model.generate(idx, 2, top_k=14),
        "generate idx out of vocab": lambda: model.generate(idx + 13, 2),
    }[what]


@pytest.mark.parametrize("what, argument, expected", [
    ("idx uint8", "idx", "torch.long, or torch.int32.*got dtype torch.uint8"),
    ("idx int16", "idx", "got dtype torch.int16"),
    ("idx float", "idx", "got dtype torch.float32"),
    ("idx on another device", "idx", r"model's device \(cpu\), got a tensor on meta"),
    ("idx out of vocab", "idx", r"token ids in \[1[34], .*allows \[0, 12\]"),
    ("targets int32", "targets", r"torch.long\), got dtype torch.int32"),
    ("targets out of vocab", "targets", r"expected ids in \[0, 12\], or -100"),
    ("targets negative", "targets", r"expected ids in \[0, 12\], or -100"),
    ("cache with too few layers", "cache", r"KVCache\(2\), got KVCache\(1\)"),
    ("cache of another batch", "cache", "holds a batch of 2 sequences, but `idx` has 1"),
    ("generate max_new_tokens negative", "max_new_tokens", "int >= 0, got -1"),
    ("generate top_k out of range", "top_k", r"\[1, vocab_size=13\], got 14"),
    ("generate idx out of vocab", "idx", r"allows \[0, 12\]"),
])
def test_bad_model_input_is_named(model, idx, what, argument, expected):
    with pytest.raises((ValueError, TypeError), match=rf"`{argument}`.*{expected}|{expected}.*`{argument}`"):
        call(model, idx, what)()


def test_a_cache_with_too_few_layers_is_refused_before_any_update(model, idx):
    cache = KVCache(1)
    with pytest.raises(ValueError, match="`cache`"):
        model(idx, cache=cache)
    assert len(cache) == 0 and cache.keys == [None]


@pytest.mark.parametrize("logits, kwargs, expected", [
    (torch.randn(2, 0), {}, r"shape \(B, V\) with V >= 1, got dtype torch.float32, shape \(2, 0\)"),
    (torch.tensor([[0.0, float("nan")]]), {}, "NaN, \\+inf or a row of -inf"),
    (torch.tensor([[0.0, float("nan")]]), {"temperature": 0.0}, "NaN"),
    (torch.tensor([[0.0, float("inf")]]), {}, "\\+inf"),
    (torch.full((2, 3), float("-inf")), {}, "a row of -inf"),
    (torch.randn(2, 3, 4), {}, r"shape \(2, 3, 4\)"),
    (torch.ones(2, 3, dtype=torch.long), {}, "dtype torch.int64"),
])
def test_bad_logits_are_named(logits, kwargs, expected):
    with pytest.raises(ValueError, match=rf"`logits`.*{expected}"):
        sample_next_token(logits, **kwargs)


@pytest.mark.parametrize("kwargs, argument", [
    ({"batch_size": -1}, "batch_size"), ({"batch_size": 0}, "batch_size"), ({"batch_size": 2.5}, "batch_size"),
    ({"batch_size": True}, "batch_size"), ({"data": "float"}, "data"), ({"data": "out of vocab"}, "data"),
    ({"model": nn.Linear(2, 2)}, "model"), ({"model": None}, "model"),
])
def test_evaluate_loss_names_bad_input(model, kwargs, argument):
    data = torch.randint(0, 13, (100,), generator=torch.Generator().manual_seed(3))
    data = {"float": data.float(), "out of vocab": data + 13}.get(kwargs.pop("data", None), data)
    with pytest.raises((ValueError, TypeError), match=f"`{argument}`"):
        evaluate_loss(kwargs.pop("model", model), data, **kwargs)


@pytest.mark.parametrize("make, argument", [
    (lambda: GPT(13, 8, 16, 4, 2, bias=1), "bias"),
    (lambda: GPT(13, 8, 16, 4, 2, bias=True, attention="dense"), "bias"),
    (lambda: GPT(13, 8, 16, 4, 2, activation="relu"), "activation"),
    (lambda: Block(16, 4, 8, attention="flash"), "attention"),  # once silently a mixture synthesizer
    (lambda: Block(16, 4, 8, activation="gelu_new"), "activation"),
    (lambda: CausalSelfAttention(15, 4), "n_head"),
    (lambda: CausalSelfAttention(16, 4, 3), "n_kv_head"),
    (lambda: CausalSelfAttention(16, 4, dropout=1.5), "dropout"),
    (lambda: CausalSelfAttention(12, 4, rope=True), "rope"),
    (lambda: CausalSelfAttention(16, 4)(torch.randn(2, 5, 8)), "x"),
])
def test_bad_constructor_arguments_are_named(make, argument):
    with pytest.raises((ValueError, TypeError), match=f"`{argument}"):
        make()


@CUDA
def test_a_generator_on_another_device_is_named(model, idx):
    with pytest.raises(ValueError, match=r"`generator` must be on the device of the model \(cpu\), got a generator on cuda"):
        model.generate(idx, 2, generator=torch.Generator(device="cuda"))
    with pytest.raises(ValueError, match=r"`generator` must be on the device of the logits \(cuda\), got a generator on cpu"):
        sample_next_token(torch.randn(2, 5, device="cuda"), generator=torch.Generator())
    with pytest.raises(ValueError, match=r"`idx` must be on the model's device \(cpu\), got a tensor on cuda"):
        model(idx.cuda())
