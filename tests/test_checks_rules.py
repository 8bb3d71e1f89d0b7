"""The rules every check enforces, over every registered exercise: gradients flow as in the reference,
every case's sizes are pairwise distinct, forbidden calls and Python loops are caught however they are
reached, and the attention backends and flush-denormal mode never leak."""

import functools
import inspect

import pytest
import torch
from torch import nn

from course_utils.checks import EXERCISES, isolation

EXERCISE_IDS = sorted(EXERCISES)

#: The exercises whose result is not a differentiable tensor (or that compare gradients in their own observation).
NOT_DIFFERENTIABLE = {
    "01.elu", "01.hardsigmoid",  # the observation holds the gradient itself
    "02.centering",  # the observation says whether the output is differentiable
    "02.record_activations", "04.merge_masks", "05.causal_mask", "07.fit_exponent", "07.weight_bytes", "08.alibi",
    "08.sinusoidal", "09.sample", "10.cache_bytes", "10.cached_generate", "10.sliding_window",
}


def _detached(value):
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, tuple):
        return tuple(_detached(v) for v in value)
    if isinstance(value, list):
        return [_detached(v) for v in value]
    if isinstance(value, dict):
        return {k: _detached(v) for k, v in value.items()}
    return value


def _with_detached_output(reference):
    """The reference, with `.detach()` on what it returns (a function, or a module class's forward)."""
    if inspect.isclass(reference):
        return type(reference.__name__, (reference,), {"forward": lambda self, *a, **k: _detached(reference.forward(self, *a, **k))})

    @functools.wraps(reference)
    def detached(*args, **kwargs):
        return _detached(reference(*args, **kwargs))

    return detached


def _gradient_checked(exercise):
    with isolation.isolated():
        assert exercise.check(exercise.reference).passed
    return any(any(o.value["connected"].values()) for o in exercise._memo.get("gradients", {}).values())


@pytest.mark.parametrize("ex_id", EXERCISE_IDS)
def test_every_differentiable_result_has_its_gradients_checked(ex_id):
    exercise = EXERCISES[ex_id]
    assert _gradient_checked(exercise) == (ex_id not in NOT_DIFFERENTIABLE), (
        f"{ex_id}: gradients {'not ' if ex_id not in NOT_DIFFERENTIABLE else ''}checked")


def _written_out(ex_id):
    """The reference, or for an exercise that forbids calling the course's function, an equivalent that does not."""
    from course_utils.checks import nb08

    return {"08.rope": lambda x, p: nb08._rope(x, p)}.get(ex_id, EXERCISES[ex_id].reference)


@pytest.mark.parametrize("ex_id", sorted(set(EXERCISE_IDS) - NOT_DIFFERENTIABLE))
def test_a_detached_output_is_named_in_plain_words(ex_id):
    result = EXERCISES[ex_id].check(_with_detached_output(_written_out(ex_id)))
    assert not result.passed and result.mistake == "cut off from training", f"{ex_id}: {result.message}"
    assert "training could not learn anything through it" in result.message and ".detach()" in result.message
    assert "autograd" not in result.message and "grad_fn" not in result.message


def test_a_detach_inside_the_block_is_seen_in_the_gradients():
    def block_forward(x, attn, mlp, ln1, ln2):
        x = x + attn(ln1(x)).detach()  # the attention gets no training signal
        return x + mlp(ln2(x))

    result = EXERCISES["09.block"].check(block_forward)
    assert result.mistake == "different gradient", result.message
    assert "the signal training sends back" in result.message


# --------------------------------------------------------------------------- forbidden calls, however reached


def _softmax_routes():
    import torch.nn.functional as F

    softmax_alias = F.softmax

    def helper(x, dim):
        return softmax_alias(x, dim)

    return {
        "F.softmax": lambda x, dim: F.softmax(x, dim=dim),
        "torch.softmax": lambda x, dim: torch.softmax(x, dim),
        "Tensor.softmax": lambda x, dim: x.softmax(dim),
        "nn.Softmax": lambda x, dim: nn.Softmax(dim=dim)(x),
        "an alias in a helper": lambda x, dim: helper(x, dim),
        "getattr": lambda x, dim: getattr(torch, "soft" + "max")(x, dim),
        "log_softmax(...).exp()": lambda x, dim: torch.log_softmax(x, dim).exp(),
    }


@pytest.mark.parametrize("route", sorted(_softmax_routes()))
def test_softmax_written_with_torchs_softmax_does_not_pass_whatever_the_route(route):
    result = EXERCISES["01.softmax"].check(_softmax_routes()[route])
    assert not result.passed and result.kind == "mistake" and result.mistake == "called torch's softmax", f"{route}: {result.message}"


def _rope_routes():
    import course_utils
    from course_utils import positions

    alias = positions.apply_rope

    def helper(x, p):
        return alias(x, p)

    return {
        "direct": lambda x, p: positions.apply_rope(x, p),
        "an alias in a helper": helper,
        "getattr": lambda x, p: getattr(positions, "apply_" + "rope")(x, p),
        "module attribute": lambda x, p: course_utils.positions.apply_rope(x, p),
    }


@pytest.mark.parametrize("route", sorted(_rope_routes()))
def test_rope_and_alibi_through_the_course_functions_do_not_pass_whatever_the_route(route):
    from course_utils import positions

    result = EXERCISES["08.rope"].check(_rope_routes()[route])
    assert not result.passed and result.mistake == "called apply_rope", f"{route}: {result.message}"
    table = positions.alibi_bias

    def alibi(n_head, length):
        return table(n_head, length) + 0.0

    result = EXERCISES["08.alibi"].check(alibi)
    assert not result.passed and result.mistake == "called alibi_bias", result.message


def test_the_solutions_that_write_it_themselves_pass():
    from course_utils.checks import nb08

    def softmax(x, dim):
        e = torch.exp(x - x.amax(dim=dim, keepdim=True))
        return e / e.sum(dim=dim, keepdim=True)

    assert EXERCISES["01.softmax"].check(softmax).passed
    assert EXERCISES["08.rope"].check(lambda x, p: nb08._rope(x, p)).passed
    assert EXERCISES["08.alibi"].check(lambda n, L: nb08._alibi(n, L)).passed


# --------------------------------------------------------------------------- the no-loop rule, however reached


def _pair_angles(num_positions, d_model):
    rows = []
    for p in range(num_positions):  # the loop, moved into a helper
        rows.append(torch.arange(0, d_model, 2) * 0 + p)
    return torch.stack(rows).double()


def _table_from_a_looping_helper(num_positions, d_model):
    p = _pair_angles(num_positions, d_model)  # (P, d/2)
    angle = p / 10000 ** (torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    table = torch.empty(num_positions, d_model, dtype=torch.float64)
    table[:, 0::2], table[:, 1::2] = angle.sin(), angle.cos()
    return table.float()


def test_a_loop_moved_into_a_helper_does_not_pass_the_no_loop_rule():
    result = EXERCISES["08.sinusoidal"].check(_table_from_a_looping_helper)
    assert not result.passed and result.mistake == "python loop", result.message
    assert "a for loop" in result.message and "`_pair_angles`" in result.message
    assert f"line {inspect.getsourcelines(_pair_angles)[1] + 2}" in result.message


# --------------------------------------------------------------------------- 07.chunked_attention: the rules its prompt states


def _chunked_freeing_each_block(q, k, v, chunk_size):
    outputs = []
    for start in range(0, q.shape[-2], chunk_size):
        scores = q[..., start : start + chunk_size, :] @ k.transpose(-2, -1) / q.shape[-1] ** 0.5  # (N, h, c, S)
        weights = scores.softmax(dim=-1)
        del scores
        outputs.append(weights @ v)
    return torch.cat(outputs, dim=-2)


def _chunked_into_a_preallocated_output(q, k, v, chunk_size):
    out = torch.empty_like(q)
    for start in range(0, q.shape[-2], chunk_size):
        scores = q[..., start : start + chunk_size, :] @ k.transpose(-2, -1) * q.shape[-1] ** -0.5
        out[..., start : start + chunk_size, :] = torch.softmax(scores, dim=-1) @ v
    return out


def _chunked_sdpa(q, k, v, chunk_size):
    import torch.nn.functional as F

    return torch.cat([F.scaled_dot_product_attention(q[..., s : s + chunk_size, :], k, v) for s in range(0, q.shape[-2], chunk_size)], dim=-2)


@pytest.mark.parametrize("solution", [_chunked_freeing_each_block, _chunked_into_a_preallocated_output, _chunked_sdpa])
def test_correct_chunked_solutions_pass_on_every_chunk_count_including_two(solution):
    labels = [case.label for case in EXERCISES["07.chunked_attention"].cases()]
    assert any("two chunks" in label for label in labels) and any("one chunk" in label for label in labels)
    result = EXERCISES["07.chunked_attention"].check(solution)
    assert result.passed, result.message


def test_one_unchunked_attention_call_does_not_pass():
    import torch.nn.functional as F

    result = EXERCISES["07.chunked_attention"].check(lambda q, k, v, c: F.scaled_dot_product_attention(q, k, v))
    assert result.mistake == "one SDPA call", result.message
    with torch.nn.attention.sdpa_kernel([torch.nn.attention.SDPBackend.MATH]):  # the learner's switch does not reach the check
        result = EXERCISES["07.chunked_attention"].check(lambda q, k, v, c: F.scaled_dot_product_attention(q, k, v))
    assert result.mistake == "one SDPA call", result.message


# --------------------------------------------------------------------------- 09.sample: several seeds, the learner's RNG, ties


def _sampler(*, generator_used=True, reseed=False, exactly_k=False):
    import torch.nn.functional as F

    def sample_next(logits, temperature, top_k, generator):
        if temperature == 0:
            return logits.argmax(dim=-1, keepdim=True)
        logits = logits / temperature
        if top_k is not None:
            if exactly_k:
                keep = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, logits.topk(top_k, dim=-1).indices, True)
                logits = logits.masked_fill(~keep, float("-inf"))
            else:
                logits = logits.masked_fill(logits < logits.topk(top_k, dim=-1).values[:, -1:], float("-inf"))
        if reseed:
            torch.manual_seed(0)
        probs = F.softmax(logits, dim=-1)
        return torch.multinomial(probs, 1, generator=generator) if generator_used else torch.multinomial(probs, 1)

    return sample_next


def test_a_sampler_that_ignores_its_generator_does_not_pass_even_if_it_seeds_0():
    result = EXERCISES["09.sample"].check(_sampler(generator_used=False, reseed=True))
    assert result.mistake == "reseeded global generator", result.message
    result = EXERCISES["09.sample"].check(_sampler(generator_used=False))
    assert result.mistake == "global generator", result.message
    assert EXERCISES["09.sample"].check(_sampler()).passed


def test_the_top_k_tie_rule_is_checked_on_tied_logits():
    exercise = EXERCISES["09.sample"]
    tied = [case for case in exercise.cases() if "ties" in case.label]
    assert tied
    logits, _t, k = tied[0].args
    kth = logits.topk(k, dim=-1).values[:, -1:]
    assert ((logits >= kth).sum(dim=-1) > k).any(), "no row keeps more than k tokens: the case shows no tie"
    result = exercise.check(_sampler(exactly_k=True))
    assert result.mistake == "exactly k kept" and "tied" in result.message, result.message


# --------------------------------------------------------------------------- sizes: pairwise distinct in every case


def _sizes(value, shapes, numbers):
    """Collect each tensor's dimensions (above 1) and the whole-number arguments (above 1) a case shows."""
    if isinstance(value, torch.Tensor):
        shapes.append(tuple(s for s in value.shape if s > 1))
    elif isinstance(value, int) and not isinstance(value, bool):
        numbers.extend([value] if value > 1 else [])
    elif isinstance(value, (tuple, list)):
        for v in value:
            _sizes(v, shapes, numbers)


def _repeats(shape):
    """Sizes that repeat within one tensor, a square trailing pair (an (L, L) mask, an (E, E) weight) aside."""
    core = shape[:-2] + shape[-1:] if len(shape) >= 2 and shape[-1] == shape[-2] else shape
    return [d for d in set(core) if core.count(d) > 1]


#: Cases where a whole number equals a tensor's size because it IS that size (same role), with the reason.
SAME_ROLE = {
    "02.mlp": "sizes[0] is x's width, and two hidden layers may have one width",
    "03.head": "block_size and n_embd are x's length and width in the full-length case",
    "06.dense_head": "max_len equals the length in the full-length case (another case is shorter)",
    "06.random_head": "max_len equals the length in the full-length case (another case is shorter)",
    "10.cache_bytes": "a product of its arguments: the order of the factors cannot show",
}


def _clashes(ex_id, case):
    shapes, numbers = [], []
    _sizes(list(case.args) + list(case.kwargs.values()), shapes, numbers)
    found = [(shape, _repeats(shape)) for shape in shapes if _repeats(shape)]
    if ex_id not in SAME_ROLE:
        found += [("numbers", n) for n in set(numbers) if numbers.count(n) > 1]
        found += [("number and size", n) for n in set(numbers) if any(n in shape for shape in shapes)]
    return found


@pytest.mark.parametrize("ex_id", EXERCISE_IDS)
def test_every_case_has_pairwise_distinct_sizes(ex_id):
    """Batch, heads, lengths and widths differ in every case, so that a transposed or mis-viewed axis always shows."""
    bad = {case.label: _clashes(ex_id, case) for case in EXERCISES[ex_id].cases() if _clashes(ex_id, case)}
    assert not bad, f"{ex_id}: sizes that repeat within a case: {bad}"


# --------------------------------------------------------------------------- messages that name the mistake made


def test_celu_and_selu_are_named_as_pytorchs_own_elu():
    import torch.nn.functional as F

    for candidate in (lambda x, alpha=1.0: F.celu(x, alpha), lambda x, alpha=1.0: F.selu(x), lambda x, alpha=1.0: nn.ELU(alpha)(x)):
        result = EXERCISES["01.elu"].check(candidate)
        assert result.mistake == "called torch's ELU", result.message
        assert "you called PyTorch's own ELU" in result.message


def test_an_explicit_dim_0_is_named_as_dim_0():
    from course_utils.checks.nb06 import DenseSynthesizerHead

    class DimZero(DenseSynthesizerHead):
        def forward(self, x, causal=False):
            L = x.shape[1]
            logits = self.linear2(torch.relu(self.linear1(x)))[..., :L]
            if causal:
                logits = logits.masked_fill(torch.ones(L, L, dtype=torch.bool).triu(1), float("-inf"))
            weights = torch.softmax(logits, dim=0)
            return weights @ self.value(x), weights

    result = EXERCISES["06.dense_head"].check(DimZero)
    assert result.mistake == "softmax over dim 0" and "dim=0" in result.message and "written as dim=0" in result.message


def test_tied_weights_through_a_new_parameter_are_not_blamed_on_data():
    from course_utils.checks.nb09 import TiedBigramLM

    class NewParameter(TiedBigramLM):
        def __init__(self, vocab_size, n_embd):
            nn.Module.__init__(self)
            self.token_embedding = nn.Embedding(vocab_size, n_embd)
            self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
            self.lm_head.weight = nn.Parameter(self.token_embedding.weight)  # no .data anywhere

    result = EXERCISES["09.tied_lm"].check(NewParameter)
    assert result.mistake == "shared storage, two parameters", result.message
    assert "you shared the storage through .data" not in result.message and "two Parameter objects" in result.message


def test_a_head_without_super_init_and_a_head_with_an_inverted_mask_are_named():
    from course_utils.checks.nb03 import Head

    class NoSuper(Head):
        def __init__(self, n_embd, head_size, block_size, dropout=0.0):
            self.key = nn.Linear(n_embd, head_size, bias=False)

    result = EXERCISES["03.head"].check(NoSuper)
    assert result.mistake == "no super().__init__()", result.message

    class Inverted(Head):
        def forward(self, x):
            B, T, C = x.shape
            k, q, v = self.key(x), self.query(x), self.value(x)
            wei = (q @ k.transpose(-2, -1) * k.shape[-1] ** -0.5).masked_fill(self.tril[:T, :T] == 1, float("-inf"))
            return self.dropout(torch.softmax(wei, dim=-1)) @ v

    result = EXERCISES["03.head"].check(Inverted)
    assert result.mistake == "inverted mask", result.message


def test_a_difference_shows_enough_digits_to_be_seen():
    from course_utils.checks.core import _significant

    assert (_significant(0.62621, 0.62624), _significant(0.62624, 0.62621)) == ("0.62621", "0.62624")
    assert _significant(0.5, 0.25) == "0.5" and _significant(1.0, 1.0 + 1e-12) == "1"
    result = EXERCISES["00.center"].check(lambda x: x - x.mean() + 1e-4)
    yours, expected = result.message.split("yours ")[1].split(", expected ")
    assert yours != expected.rstrip(").")


# --------------------------------------------------------------------------- the difficulty-3 exercises


def test_cached_generation_equals_recomputation_and_fills_the_cache():
    from course_utils.checks import nb10

    exercise = EXERCISES["10.cached_generate"]
    for case in exercise.cases():
        cached, recomputed = exercise.observe(nb10.cached_generate, case), exercise.observe(nb10._recompute, case)
        config, idx, new = case.args
        assert torch.equal(cached["tokens"], recomputed["tokens"]) and cached["tokens"].shape == (idx.shape[0], idx.shape[1] + new)
        assert cached[nb10.FED_KEY] == idx.shape[1] + new - 1
        head_dim = config["n_embd"] // config["n_head"]
        kv_heads = config.get("n_kv_head", config["n_head"])
        assert cached[nb10.CACHE_KEY] == [(idx.shape[0], kv_heads, idx.shape[1] + new - 1, head_dim)] * config["n_layer"]


def test_online_attention_equals_sdpa_and_never_holds_the_whole_matrix():
    import torch.nn.functional as F

    exercise = EXERCISES["07.online_attention"]
    for case in exercise.cases():
        q, k, v, block = case.args
        assert torch.allclose(exercise.reference(q, k, v, block), F.scaled_dot_product_attention(q, k, v), atol=1e-5)
        observed = exercise.observe(exercise.reference, case)
        assert all(value is True for key, value in observed.items() if key != "output")
    result = exercise.check(lambda q, k, v, b: F.scaled_dot_product_attention(q, k, v))
    assert result.mistake == "SDPA", result.message


def test_the_language_model_loss_equals_the_gpts_own_loss():
    from course_utils.gpt import GPT

    torch.manual_seed(0)
    model = GPT(vocab_size=11, block_size=8, n_embd=8, n_head=2, n_layer=1)
    tokens = torch.randint(0, 11, (3, 8))
    logits, _ = model(tokens)
    targets = torch.cat([tokens[:, 1:], torch.full((3, 1), -100)], dim=1)  # the GPT's convention: -100 = no loss
    _, loss = model(tokens, targets)
    assert torch.allclose(EXERCISES["09.lm_loss"].reference(logits, tokens, -100), loss)


def test_at_least_three_exercises_of_difficulty_3_with_their_minutes():
    hard = {ex_id for ex_id, exercise in EXERCISES.items() if exercise.difficulty == 3}
    assert {"07.online_attention", "09.lm_loss", "10.cached_generate"} <= hard
    assert all(EXERCISES[ex_id].minutes >= 15 for ex_id in hard)


def test_hardsigmoid_prompt_and_contract_agree_with_pytorchs_backward():
    """PyTorch's hardsigmoid_backward gives 0 at x = -3 and 3 (the kinks belong to the flat pieces); clamp gives 1/6."""
    import json
    from pathlib import Path

    import torch.nn.functional as F

    x = torch.tensor([-3.0, 3.0], requires_grad=True)
    (torch_grad,) = torch.autograd.grad(F.hardsigmoid(x).sum(), x)
    (clamp_grad,) = torch.autograd.grad(torch.clamp(x / 6 + 0.5, 0, 1).sum(), x)
    assert torch_grad.tolist() == [0.0, 0.0] and torch.allclose(clamp_grad, torch.full((2,), 1 / 6))
    result = EXERCISES["01.hardsigmoid"].check(lambda x: torch.clamp(x / 6 + 0.5, 0, 1))
    assert result.mistake == "gradient at the kinks", result.message
    notebook = Path(__file__).resolve().parent.parent / "notebooks" / "01_activation_functions.ipynb"
    prompt = next("".join(c["source"]) for c in json.loads(notebook.read_text())["cells"]
                  if "".join(c["source"]).startswith("### Exercise 01.hardsigmoid"))
    assert "(or `clamp`)" not in prompt and "so it does not pass" in prompt


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 7, 10, 15, 16, 29, 30, 31, 64])
def test_the_chunked_memory_rule_holds_for_every_chunk_count(chunk_size):
    from course_utils.checks import Case, nb07

    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(3, 2, 30, 5, generator=g), torch.randn(3, 2, 20, 5, generator=g), torch.randn(3, 2, 20, 5, generator=g)
    case = Case("any chunk count", (q, k, v, chunk_size))
    for solution in (nb07.chunked_attention, _chunked_freeing_each_block, _chunked_into_a_preallocated_output):
        observed = nb07._observe_chunked(solution, case)
        assert all(value is True for key, value in observed.items() if key != "output"), (solution.__name__, observed)


def test_a_check_run_in_chinese_first_still_names_a_detached_output_in_english(monkeypatch):
    """What a check remembers of the reference is per language: a run in Chinese must not blind the next one."""
    from course_utils import i18n

    monkeypatch.setattr(i18n, "_chosen", i18n._chosen)
    i18n.set_language("zh")
    assert EXERCISES["00.center"].check(EXERCISES["00.center"].reference).passed
    i18n.set_language("en")
    result = EXERCISES["00.center"].check(_with_detached_output(EXERCISES["00.center"].reference))
    assert result.mistake == "cut off from training", result.message
