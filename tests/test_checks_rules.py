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
    "08.sinusoidal", "09.sample", "10.cache_bytes", "10.sliding_window",
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


@pytest.mark.parametrize("ex_id", sorted(set(EXERCISE_IDS) - NOT_DIFFERENTIABLE))
def test_a_detached_output_is_named_in_plain_words(ex_id):
    result = EXERCISES[ex_id].check(_with_detached_output(EXERCISES[ex_id].reference))
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
