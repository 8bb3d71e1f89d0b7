"""Bad input to the API of notebooks 08-10 gets a clear error; input PyTorch accepts gets PyTorch's answer.

A table of bad arguments for every public function of ``positions``, ``text``, ``kv_cache``,
``attention_toolbox`` and ``progress``: each must raise a ValueError or TypeError whose message
names the function and the argument. Then derandomized hypothesis runs over valid input, each
compared with a plain PyTorch computation, and one test for each kind of defect.
"""

import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from course_utils import progress
from course_utils.attention_toolbox import (
    alibi_score_mod,
    recorded_operators,
    sdpa_kernel_used,
    sliding_window,
    sliding_window_mask,
)
from course_utils.gpt import GPT, evaluate_loss, sample_next_token
from course_utils.kv_cache import KVCache, kv_cache_bytes, repeat_kv
from course_utils.positions import alibi_bias, alibi_slopes, apply_rope, rope_angles, sinusoidal_positions
from course_utils.text import CharTokenizer, get_batch, train_val_split

NAN, INF = float("nan"), float("inf")
TOKENS = CharTokenizer("abcdef")
DATA = torch.arange(40) % 6

# (label, call, the words the message must hold: the function and the argument)
BAD_CALLS = [
    # positions
    ("sinusoidal 0 positions", lambda: sinusoidal_positions(0, 4), "num_positions"),
    ("sinusoidal float width", lambda: sinusoidal_positions(3, 4.0), "d_model"),
    ("sinusoidal negative start", lambda: sinusoidal_positions(3, 4, start=-1), "start"),
    ("sinusoidal int dtype", lambda: sinusoidal_positions(3, 4, dtype=torch.long), "dtype"),
    ("rope_angles list", lambda: rope_angles([0, 1], 4), "positions"),
    ("rope_angles bool positions", lambda: rope_angles(torch.ones(3, dtype=torch.bool), 4), "positions"),
    ("rope_angles odd dim", lambda: rope_angles(torch.arange(3), 5), "dim"),
    ("rope_angles base nan", lambda: rope_angles(torch.arange(3), 4, base=NAN), "base"),
    ("rope_angles int dtype", lambda: rope_angles(torch.arange(3), 4, dtype=torch.long), "dtype"),
    ("apply_rope 1-D x", lambda: apply_rope(torch.randn(4)), "x"),
    ("apply_rope int x", lambda: apply_rope(torch.ones(3, 4, dtype=torch.long)), "x"),
    ("apply_rope odd d", lambda: apply_rope(torch.randn(3, 5)), "x"),
    ("apply_rope positions too short", lambda: apply_rope(torch.randn(3, 4), torch.arange(2)), "positions"),
    ("apply_rope positions widen the batch", lambda: apply_rope(torch.randn(3, 4), torch.arange(3).expand(5, 3)), "positions"),
    ("apply_rope positions other batch", lambda: apply_rope(torch.randn(2, 3, 4), torch.zeros(5, 3)), "positions"),
    ("apply_rope positions scalar", lambda: apply_rope(torch.randn(3, 4), torch.tensor(1)), "positions"),
    ("apply_rope complex positions", lambda: apply_rope(torch.randn(3, 4), torch.zeros(3, dtype=torch.cfloat)), "positions"),
    ("apply_rope base nan", lambda: apply_rope(torch.randn(3, 4), base=NAN), "base"),
    ("apply_rope base inf", lambda: apply_rope(torch.randn(3, 4), base=INF), "base"),
    ("apply_rope base 0", lambda: apply_rope(torch.randn(3, 4), base=0), "base"),
    ("apply_rope base negative", lambda: apply_rope(torch.randn(3, 4), base=-10.0), "base"),
    ("apply_rope base 1", lambda: apply_rope(torch.randn(3, 4), base=1), "base"),
    ("apply_rope base str", lambda: apply_rope(torch.randn(3, 4), base="1e4"), "base"),
    ("alibi_slopes 0", lambda: alibi_slopes(0), "n_head"),
    ("alibi_slopes bool", lambda: alibi_slopes(True), "n_head"),
    ("alibi_bias 0 length", lambda: alibi_bias(4, 0), "length"),
    ("alibi_bias n_head -1", lambda: alibi_bias(-1, 3), "n_head"),
    ("alibi_bias causal str", lambda: alibi_bias(2, 3, causal="no"), "causal"),
    ("alibi_bias int dtype", lambda: alibi_bias(2, 3, dtype=torch.long), "dtype"),
    # text
    ("tokenizer empty text", lambda: CharTokenizer(""), "text"),
    ("encode bytes", lambda: TOKENS.encode(b"ab"), "text"),
    ("encode unknown", lambda: TOKENS.encode("abz"), "text"),
    ("decode out of range", lambda: TOKENS.decode([0, 6]), "ids"),
    ("decode negative", lambda: TOKENS.decode([-1]), "ids"),
    ("decode float ids", lambda: TOKENS.decode([0.0]), "ids"),
    ("decode bools", lambda: TOKENS.decode([True]), "ids"),
    ("decode float tensor", lambda: TOKENS.decode(torch.zeros(2)), "ids"),
    ("decode bool tensor", lambda: TOKENS.decode(torch.zeros(2, dtype=torch.bool)), "ids"),
    ("decode 2-D tensor", lambda: TOKENS.decode(torch.zeros(1, 2, dtype=torch.long)), "ids"),
    ("decode a str", lambda: TOKENS.decode("ab"), "ids"),
    ("decode an int", lambda: TOKENS.decode(3), "ids"),
    ("split 2-D", lambda: train_val_split(torch.zeros(2, 5)), "data"),
    ("split fraction nan", lambda: train_val_split(DATA, NAN), "val_fraction"),
    ("split fraction 1", lambda: train_val_split(DATA, 1.0), "val_fraction"),
    ("split too short", lambda: train_val_split(torch.arange(3), 0.1), "train_val_split"),
    ("get_batch negative batch", lambda: get_batch(DATA, -1, 4), "batch_size"),
    ("get_batch float batch", lambda: get_batch(DATA, 2.0, 4), "batch_size"),
    ("get_batch 0 block", lambda: get_batch(DATA, 2, 0), "block_size"),
    ("get_batch block too long", lambda: get_batch(DATA, 2, 40), "block_size"),
    ("get_batch bad generator", lambda: get_batch(DATA, 2, 4, generator=0), "generator"),
    ("get_batch list data", lambda: get_batch(list(range(9)), 2, 4), "data"),
    # kv_cache
    ("KVCache 0 layers", lambda: KVCache(0), "n_layer"),
    ("KVCache bool layers", lambda: KVCache(True), "n_layer"),
    ("update layer out of range", lambda: KVCache(1).update(1, torch.zeros(1, 1, 1, 2), torch.zeros(1, 1, 1, 2)), "layer"),
    ("update list k", lambda: KVCache(1).update(0, [0.0], torch.zeros(1, 1, 1, 2)), "k"),
    ("update 3-D k", lambda: KVCache(1).update(0, torch.zeros(1, 1, 2), torch.zeros(1, 1, 2)), "k"),
    ("update k and v differ", lambda: KVCache(1).update(0, torch.zeros(1, 1, 1, 2), torch.zeros(1, 1, 2, 2)), "k and v"),
    ("update k and v dtypes differ", lambda: KVCache(1).update(0, torch.zeros(1, 1, 1, 2), torch.zeros(1, 1, 1, 2, dtype=torch.float64)), "dtype"),
    ("repeat_kv 3-D", lambda: repeat_kv(torch.zeros(1, 2, 3), 2), "x"),
    ("repeat_kv 0", lambda: repeat_kv(torch.zeros(1, 2, 3, 4), 0), "n_rep"),
    ("repeat_kv float", lambda: repeat_kv(torch.zeros(1, 2, 3, 4), 2.0), "n_rep"),
    ("kv_cache_bytes negative", lambda: kv_cache_bytes(-1, 1, 1, 1), "n_layer"),
    ("kv_cache_bytes float", lambda: kv_cache_bytes(1, 1, 1.5, 1), "head_dim"),
    ("kv_cache_bytes dtype str", lambda: kv_cache_bytes(1, 1, 1, 1, dtype="float32"), "dtype"),
    # attention_toolbox
    ("recorded_operators not callable", lambda: recorded_operators(3), "fn"),
    ("sdpa_kernel_used not callable", lambda: sdpa_kernel_used(None), "fn"),
    ("sliding_window 0", lambda: sliding_window(0), "window"),
    ("sliding_window float", lambda: sliding_window(2.0), "window"),
    ("sliding_window_mask 0 length", lambda: sliding_window_mask(0, 2), "length"),
    ("sliding_window_mask negative length", lambda: sliding_window_mask(-3, 2), "length"),
    ("sliding_window_mask 0 window", lambda: sliding_window_mask(4, 0), "window"),
    ("alibi_score_mod list", lambda: alibi_score_mod([0.5]), "slopes"),
    ("alibi_score_mod 2-D", lambda: alibi_score_mod(torch.ones(2, 2)), "slopes"),
    ("alibi_score_mod int slopes", lambda: alibi_score_mod(torch.ones(2, dtype=torch.long)), "slopes"),
    # progress
    ("progress int path", lambda: progress(3), "path"),
    # gpt (the defects of this section that live there)
    ("evaluate_loss negative batch", lambda: evaluate_loss(GPT(6, 4, 8, 2, 1), DATA, batch_size=-1), "batch_size"),
    ("evaluate_loss 0 batch", lambda: evaluate_loss(GPT(6, 4, 8, 2, 1), DATA, batch_size=0), "batch_size"),
]


@pytest.mark.parametrize("label,call,argument", BAD_CALLS, ids=[label for label, _, _ in BAD_CALLS])
def test_bad_input_is_named(label, call, argument):
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    message = str(info.value)
    assert argument in message, message
    assert ": " in message, message  # "who: what was wrong"


def test_the_progress_directory_is_named(tmp_path):
    with pytest.raises(ValueError, match="`path`.*directory"):
        progress(tmp_path)


# --- valid input: PyTorch's answer ------------------------------------------------------------


def _rope_by_hand(x, positions, base):
    d = x.shape[-1]
    angle = positions.double()[..., None] * base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)  # (..., T, d/2)
    pairs = torch.complex(x[..., 0::2].double(), x[..., 1::2].double()) * torch.polar(torch.ones_like(angle), angle)
    return torch.stack([pairs.real, pairs.imag], dim=-1).flatten(-2)  # (..., T, d)


@settings(derandomize=True, max_examples=40, deadline=None)
@given(batch=st.lists(st.integers(1, 3), max_size=2), T=st.integers(1, 5), half=st.integers(1, 4),
       positions_rank=st.integers(0, 2), base=st.floats(1.5, 1e6))
def test_apply_rope_is_a_complex_rotation(batch, T, half, positions_rank, base):
    g = torch.Generator().manual_seed(T * 31 + half)
    x = torch.randn(*batch, T, 2 * half, dtype=torch.float64, generator=g)
    lead = tuple(batch[len(batch) - min(positions_rank, len(batch)):])  # a suffix of x's batch dims
    positions = torch.randint(0, 50, (*lead, T), generator=g)
    out = apply_rope(x, positions, base)
    assert out.shape == x.shape
    torch.testing.assert_close(out, _rope_by_hand(x, positions, base).expand_as(out))


@settings(derandomize=True, max_examples=25, deadline=None)
@given(ids=st.lists(st.integers(0, 5), max_size=8), form=st.sampled_from(["list", "tuple", "iter", "gen", "tensor", "range"]))
def test_decode_reads_every_iterable_of_ints(ids, form):
    text = "".join("abcdef"[i] for i in ids)
    given_ids = {"list": lambda: list(ids), "tuple": lambda: tuple(ids), "iter": lambda: iter(ids),
                 "gen": lambda: (i for i in ids), "tensor": lambda: torch.tensor(ids, dtype=torch.long),
                 "range": lambda: ids}[form]()
    assert TOKENS.decode(given_ids) == text
    assert TOKENS.decode(TOKENS.encode(text)) == text


@settings(derandomize=True, max_examples=20, deadline=None)
@given(length=st.integers(1, 9), window=st.integers(1, 12))
def test_sliding_window_mask_is_the_band(length, window):
    i = torch.arange(length)[:, None]
    j = torch.arange(length)[None, :]
    assert torch.equal(sliding_window_mask(length, window), (j <= i) & (i - j < window))


@settings(derandomize=True, max_examples=20, deadline=None)
@given(n_head=st.integers(1, 12), length=st.integers(1, 6), causal=st.booleans())
def test_alibi_bias_is_minus_slope_times_distance(n_head, length, causal):
    bias = alibi_bias(n_head, length, causal=causal)
    i = torch.arange(length)[:, None]
    j = torch.arange(length)[None, :]
    expected = -alibi_slopes(n_head)[:, None, None] * (i - j).abs()
    if causal:
        expected = expected.masked_fill(j > i, -math.inf)
    torch.testing.assert_close(bias, expected)


@settings(derandomize=True, max_examples=20, deadline=None)
@given(batch_size=st.integers(0, 4), block_size=st.integers(1, 6))
def test_get_batch_targets_are_the_inputs_shifted(batch_size, block_size):
    x, y = get_batch(DATA, batch_size, block_size, generator=torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (batch_size, block_size)
    assert torch.equal(y, (x + 1) % 6)  # DATA counts 0..5 over and over


# --- one test per kind of defect ------------------------------------------------------------


def test_a_cache_with_too_few_layers_raises_before_anything_is_written():
    torch.manual_seed(0)
    model = GPT(6, 8, 8, 2, n_layer=2).eval()
    cache = KVCache(1)
    with pytest.raises(ValueError, match=r"`cache` must have one slot per block, KVCache\(2\), got KVCache\(1\)"):
        model(torch.zeros(1, 3, dtype=torch.long), cache=cache)
    assert cache.keys == [None] and cache.values == [None] and len(cache) == 0


def test_a_tiny_temperature_samples_the_argmax():
    logits = torch.tensor([[0.0, 3.0, 1.0], [2.0, -1.0, 0.5]])
    for temperature in (1e-30, 1e-40, 1e-320):
        out = sample_next_token(logits, temperature=temperature, generator=torch.Generator().manual_seed(0))
        assert out.tolist() == [[1], [0]]


def test_an_empty_batch_gives_empty_logits_and_pytorchs_loss():
    torch.manual_seed(0)
    model = GPT(6, 4, 8, 2, 1).eval()
    empty = torch.zeros(0, 3, dtype=torch.long)
    logits, loss = model(empty, empty)
    assert logits.shape == (0, 3, 6)
    assert torch.isnan(loss)  # F.cross_entropy's mean over no positions
    assert model.generate(empty, 2).shape == (0, 5)
    assert sample_next_token(torch.zeros(0, 6)).shape == (0, 1)


def test_a_damaged_line_is_skipped_and_reported_and_the_others_are_kept(tmp_path):
    path = tmp_path / "progress.jsonl"
    good = {"id": "a", "exercise_id": "08.rope", "passed": True}
    lines = [json.dumps(good).encode(), b"\xff\xfe not utf-8", b"{not json", json.dumps({"id": "b"}).encode(),
             json.dumps({"id": "c", "exercise_id": "08.alibi", "passed": "false"}).encode(),
             json.dumps({"id": "d", "exercise_id": "09.block", "passed": False, "message": "a\u2028b\x85c"}, ensure_ascii=False).encode()]
    path.write_bytes(b"\n".join(lines) + b"\n")
    skipped = []
    attempts = progress.read_attempts(path, skipped)
    assert [a["id"] for a in attempts] == ["a", "d"]
    assert skipped == [2, 3, 4, 5]
    table = progress(path)
    assert table.skipped == (2, 3, 4, 5)
    status = {eid: s for _, cells in table.rows for eid, s, _ in cells}
    assert status["08.rope"] == "solved" and status["09.block"] == "tried" and status["08.alibi"] == "not yet"
    assert "4 damaged line(s)" in str(table) and "line 2, 3, 4, 5" in str(table)
    assert "<br>" in table._repr_html_()


def test_an_attempt_after_a_torn_last_line_is_not_lost(tmp_path):
    path = tmp_path / "progress.jsonl"
    path.write_bytes(b'{"id": "a", "exercise_id": "08.rope", "pas')  # a kernel died mid-write
    progress.append_attempt(path, {"id": "b", "exercise_id": "08.alibi", "passed": True})
    skipped = []
    assert [a["id"] for a in progress.read_attempts(path, skipped)] == ["b"]
    assert skipped == [1]
