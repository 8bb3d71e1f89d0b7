"""Every diagnosis is unique and fair, over every registered exercise.

No planted mistake behaves like the reference or like another planted mistake on the
check's cases, each has its own hint, and a mistake is named only when the learner's code
behaves like it on EVERY case (not just on the first case that differs).
"""

import pytest
import torch

from course_utils.checks import EXERCISES, Case, Exercise, Mistake, isolation
from course_utils.checks.core import _same_outcome

EXERCISE_IDS = sorted(EXERCISES)


def _behaviours(exercise):
    """The outcomes of the reference and of each planted mistake on every case (the check's own runs)."""
    with isolation.isolated() as saved:
        expected = exercise._expected(saved)
        planted = {m.name: [exercise._planted(k, i, saved) for i in range(len(expected))] for k, m in enumerate(exercise.mistakes)}
    return expected, planted


def _alike(a, b, exercise):
    return all(_same_outcome(x, y, exercise.atol, exercise.rtol) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("ex_id", EXERCISE_IDS)
def test_no_planted_mistake_behaves_like_the_reference_or_another_mistake(ex_id):
    exercise = EXERCISES[ex_id]
    expected, planted = _behaviours(exercise)
    names = list(planted)
    alike = [f"{a!r} behaves like the reference" for a in names if _alike(planted[a], expected, exercise)]
    alike += [f"{a!r} and {b!r} behave alike" for i, a in enumerate(names) for b in names[i + 1:]
              if _alike(planted[a], planted[b], exercise)]
    assert not alike, f"{ex_id}, on the check's cases: " + "; ".join(alike)


@pytest.mark.parametrize("ex_id", EXERCISE_IDS)
def test_each_planted_mistake_has_its_own_name_and_hint(ex_id):
    mistakes = EXERCISES[ex_id].mistakes
    assert len({m.name for m in mistakes}) == len(mistakes), f"{ex_id}: two mistakes share a name"
    assert len({m.hint for m in mistakes}) == len(mistakes), f"{ex_id}: two mistakes share a hint"
    for m in mistakes:
        others = [o.name for o in mistakes if o is not m and m.hint in o.hint]
        assert not others, f"{ex_id}: the hint of {m.name!r} is part of the hint of {others}, so a message cannot tell them apart"


@pytest.mark.parametrize("ex_id", EXERCISE_IDS)
def test_a_mistake_matching_on_one_case_only_is_not_named(ex_id):
    """Code that behaves like a planted mistake on one case and like the reference elsewhere gets no name."""
    exercise = EXERCISES[ex_id]
    expected, planted = _behaviours(exercise)
    cases = list(exercise.cases())
    with isolation.isolated() as saved:
        for name, outcomes in planted.items():
            differing = [i for i, (got, exp) in enumerate(zip(outcomes, expected)) if not _same_outcome(got, exp, exercise.atol, exercise.rtol)]
            if len(differing) < 2:
                continue  # the hybrid below would be this very mistake
            hybrid = list(expected)
            hybrid[differing[0]] = outcomes[differing[0]]
            result = exercise._verdict(cases, hybrid, expected, saved)
            assert not result.passed and result.mistake != name, f"{ex_id}: {name!r} named after one case: {result.message}"
            if result.kind == "mistake":  # another mistake may be named only if it matches the hybrid everywhere
                assert _alike(hybrid, planted[result.mistake], exercise), f"{ex_id}: {result.message}"


# --- the rule, on a small exercise ----------------------------------------------------------


def _double(x):
    return 2 * x


TWO_CASES = Exercise(
    id="99.double",
    title="double",
    reference=_double,
    cases=lambda: [Case("x = [1, -2, 3]", (torch.tensor([1.0, -2.0, 3.0]),)), Case("x = [0.5, 4]", (torch.tensor([0.5, 4.0]),))],
    mistakes=[Mistake("squared", "you squared x instead of doubling it", lambda x: x * x)],
)


def test_code_that_squares_on_every_case_is_told_so():
    result = TWO_CASES.check(lambda x: x**2)
    assert (result.kind, result.mistake) == ("mistake", "squared")
    assert result.message == "on x = [1, -2, 3]: you squared x instead of doubling it."


def test_code_that_squares_on_the_first_case_only_gets_an_honest_difference():
    def squares_then_adds(x):
        return x * x if len(x) == 3 else x + 1

    result = TWO_CASES.check(squares_then_adds)
    assert result.kind == "values" and result.mistake is None
    assert "squared" not in result.message
    assert result.message == "on x = [1, -2, 3]: the output differs from the reference by up to 8 (at x = -2: yours 4, expected -4)."


def test_a_planted_exception_must_also_match_on_every_case():
    exercise = Exercise("99.int", "int", _double, cases=TWO_CASES.cases,
                        mistakes=[Mistake("int", "you converted to int", lambda x: int(x))])
    assert exercise.check(lambda x: int(x)).mistake == "int"

    def raises_like_int_then_differs(x):
        return int(x) if len(x) == 3 else x

    result = exercise.check(raises_like_int_then_differs)
    assert result.kind == "exception" and "you converted to int" not in result.message
