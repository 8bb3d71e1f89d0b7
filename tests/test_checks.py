"""The exercise framework, and every registered exercise: reference passes, each planted mistake is named."""

import inspect
import re
from pathlib import Path

import pytest
import torch

from course_utils.checks import EXERCISES, NOT_ATTEMPTED, Case, Exercise, Mistake, check, compare
from course_utils.checks.core import ShownCheckResult

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
EXERCISE_IDS = sorted(EXERCISES)
MISTAKES = [(ex_id, m.name) for ex_id in EXERCISE_IDS for m in EXERCISES[ex_id].mistakes]


def _mistake(ex_id, name):
    return next(m for m in EXERCISES[ex_id].mistakes if m.name == name)


# --- every registered exercise --------------------------------------------------------------

@pytest.mark.parametrize("ex_id", EXERCISE_IDS)
def test_exercise_id_names_its_notebook(ex_id):
    assert re.fullmatch(r"\d\d\.[a-z0-9_]+", ex_id), ex_id
    assert list(NOTEBOOKS.glob(f"{ex_id[:2]}_*.ipynb")), f"no notebook {ex_id[:2]}_*.ipynb for exercise {ex_id}"


@pytest.mark.parametrize("ex_id", EXERCISE_IDS)
def test_reference_passes_its_own_check(ex_id):
    result = EXERCISES[ex_id].check(EXERCISES[ex_id].reference)
    assert result.passed, result.message
    assert result.kind == "passed" and result.message.endswith("passed.")


@pytest.mark.parametrize("ex_id,mistake_name", MISTAKES)
def test_each_planted_mistake_is_named(ex_id, mistake_name):
    exercise = EXERCISES[ex_id]
    mistake = _mistake(ex_id, mistake_name)
    result = exercise.check(mistake.implementation)
    assert not result.passed, f"{ex_id}: the planted mistake {mistake_name!r} passes the check"
    assert mistake.hint in result.message, f"{ex_id}: planted {mistake_name!r} got: {result.message}"
    assert (result.kind, result.mistake) == ("mistake", mistake_name)


@pytest.mark.parametrize("ex_id", EXERCISE_IDS)
def test_not_attempted_stub_non_callable_and_crash_get_their_own_messages(ex_id):
    exercise = EXERCISES[ex_id]

    def stub(*args, **kwargs):
        raise NotImplementedError("your code here: replace this line")

    def crashes(*args, **kwargs):
        raise ZeroDivisionError("boom")

    stub_result = exercise.check(stub)
    assert not stub_result.passed and not stub_result.attempted
    assert NOT_ATTEMPTED in stub_result.message

    result = exercise.check(42)
    assert not result.passed and "expected a function or class" in result.message and result.kind == "type"

    result = exercise.check(crashes)
    assert not result.passed and result.attempted
    assert "your code raised ZeroDivisionError: boom" in result.message


@pytest.mark.parametrize("ex_id", EXERCISE_IDS)
def test_each_exercise_has_a_check_cell_and_a_solution_in_its_notebook(ex_id):
    (path,) = NOTEBOOKS.glob(f"{ex_id[:2]}_*.ipynb")
    text = path.read_text()
    assert f'check(\\"{ex_id}\\"' in text, f"{path.name} never calls check({ex_id!r}, ...)"
    assert "### BEGIN SOLUTION" in text


@pytest.mark.parametrize("number", ["01", "02", "03", "04", "05", "06", "07"])
def test_content_notebooks_have_at_least_three_exercises(number):
    if not list(NOTEBOOKS.glob(f"{number}_*.ipynb")):
        pytest.skip(f"notebook {number} not written yet")
    assert len([k for k in EXERCISES if k.startswith(number + ".")]) >= 3


# --- the framework itself -------------------------------------------------------------------

def _double(x):
    return 2 * x


DEMO = Exercise(
    id="99.double",
    title="double",
    reference=_double,
    cases=lambda: [Case("three values", (torch.tensor([1.0, -2.0, 3.0]),))],
    mistakes=[
        Mistake("squared", "you squared x instead of doubling it", lambda x: x * x),
        Mistake("int", "you converted to int", lambda x: int(x)),
    ],
)


def test_planted_exception_is_recognised_by_type_and_message():
    result = DEMO.check(lambda x: int(x))
    assert "raised ValueError: you converted to int" in result.message


def test_unknown_difference_is_described_with_position_and_values():
    result = DEMO.check(lambda x: 2 * x + torch.tensor([0.0, 0.5, 0.0]))
    assert not result.passed
    assert "differs from the reference by up to 0.5" in result.message
    assert "at x = -2: yours -3.5, expected -4" in result.message  # the input value, not "index (1,)"
    assert result.kind == "values"


def test_a_candidate_that_modifies_its_input_in_place_is_told_so():
    def doubles_in_place(x):
        x.mul_(2)
        return x

    result = DEMO.check(doubles_in_place)
    assert not result.passed and "changed its input `x` in place" in result.message
    assert result.kind == "changed input"


def test_extra_entries_in_a_mapping_are_reported():
    assert "unexpected entries 'c'" in compare({"a": 1, "c": 2}, {"a": 1})


def test_none_means_not_attempted():
    assert not DEMO.check(None).attempted


@pytest.mark.parametrize(
    "got,expected,words",
    [
        (torch.zeros(2, 3), torch.zeros(3, 2), "shape (2, 3), expected (3, 2)"),
        (torch.zeros(2, dtype=torch.float32), torch.zeros(2, dtype=torch.float64), "dtype torch.float32, expected torch.float64"),
        (torch.zeros(2, device="meta"), torch.zeros(2), "on device meta, expected cpu"),
        (torch.tensor([0.0, float("nan")]), torch.zeros(2), "NaN at 1 position"),
        (torch.tensor([float("inf"), 0.0]), torch.zeros(2), "inf at 1 position"),
        ([1, 2], torch.zeros(2), "should be a tensor, but your code returned a list of 2 items"),
        ({"a": torch.zeros(1)}, {"a": torch.zeros(1), "b": 1}, "missing 'b'"),
        ((torch.zeros(1), 2), (torch.zeros(1), 3), "item 1 of the output is 2, expected 3"),
        (0.5, 0.25, "is 0.5, expected 0.25"),
    ],
)
def test_compare_says_how_things_differ(got, expected, words):
    assert words in compare(got, expected)


def test_compare_accepts_equal_nan_and_close_values():
    nan = float("nan")
    assert compare(torch.tensor([nan, 1.0]), torch.tensor([nan, 1.0 + 1e-9])) is None


def test_a_bug_in_the_check_itself_never_raises():
    broken = Exercise("99.broken", "broken", _double, cases=lambda: 1 / 0)
    result = broken.check(_double)
    assert not result.passed and "the check itself failed" in result.message and result.kind == "check fault"


def test_a_failing_reference_is_a_fault_of_the_check():
    broken = Exercise("99.broken", "broken", lambda x: 1 / 0, cases=DEMO.cases)
    assert broken.check(_double).kind == "check fault"


@pytest.mark.parametrize("n,words", [(1, "1 test passed."), (3, "all 3 tests passed.")])
def test_the_pass_message_counts_tests_in_good_english(n, words):
    exercise = Exercise("99.n", "n", _double, cases=lambda: [Case(f"case {i}", (torch.ones(2),)) for i in range(n)])
    assert exercise.check(_double).message == words


def test_a_list_of_names_says_which_name_is_missing_or_unexpected():
    assert compare(["running_mean"], ["running_mean", "steps"], where="buffers") == (
        "buffers: 'steps' missing (expected ['running_mean', 'steps']).")
    assert "'bias' not expected" in compare(["bias", "weight"], ["weight"], where="parameters")


def test_nan_on_an_elementwise_function_points_at_the_input_value():
    def log1p(x):
        return torch.log1p(x)

    exercise = Exercise("99.log", "log", log1p, cases=lambda: [Case("x = -0.5..1", (torch.tensor([-0.5, 0.0, 1.0]),))])
    result = exercise.check(lambda x: torch.log(1 + x) * x / x)
    assert result.kind == "nan" and "NaN at 1 position where the reference is finite (first at x = 0)" in result.message


def test_the_result_records_the_case_and_kind_of_each_outcome():
    assert DEMO.check(_double).kind == "passed"
    result = DEMO.check(lambda x: x * x)
    assert (result.kind, result.mistake, result.case) == ("mistake", "squared", "three values")
    assert DEMO.check(lambda x: x[:2]).kind == "shape"
    assert DEMO.check(lambda x: (2 * x).double()).kind == "dtype"
    assert DEMO.check(lambda x: [1.0, 2.0]).kind == "type"
    assert DEMO.check(lambda x: None).kind == "returned none"
    assert DEMO.check(None).kind == "not attempted"


def test_check_displays_once_and_returns_the_result(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    result = check("00.center", EXERCISES["00.center"].reference)
    assert result.passed and isinstance(result, ShownCheckResult)
    assert len(shown) == 1 and str(shown[0]).startswith("✅ 00.center")


def test_check_with_unknown_id_lists_the_closest_ones(monkeypatch):
    monkeypatch.setattr("IPython.display.display", lambda obj: None)
    result = check("03.nope", _double)
    assert not result.passed and result.kind == "unknown exercise" and "03.head" in result.message
    assert "did you mean '03.head'" in check("03.haed", _double).message
    assert "did you mean '00.center'" in check("center", _double).message


@pytest.mark.parametrize("bad_id", [3, None, ["03.head"], b"03.head"])
def test_check_with_a_non_string_id_says_so(monkeypatch, bad_id):
    monkeypatch.setattr("IPython.display.display", lambda obj: None)
    result = check(bad_id, _double)
    assert not result.passed and result.kind == "unknown exercise"
    assert "the exercise id must be a string such as '03.head'" in result.message


def test_warm_up_diagnoses_a_planted_broken_submission():
    def broken_center(x):  # a learner's attempt: the mean over the wrong dimension
        return x - x.mean(dim=0, keepdim=True)

    result = EXERCISES["00.center"].check(broken_center)
    assert not result.passed
    assert "you took the mean over dim 0" in result.message


# --------------------------------------------------------------------------- exercises that forbid Python loops


def _average_with_a_loop(x):
    return torch.stack([x[:, : t + 1].mean(dim=1) for t in range(x.shape[1])], dim=1)


def _average_with_cumsum(x):
    T = x.shape[1]
    return x.cumsum(dim=1) / torch.arange(1, T + 1, dtype=x.dtype).view(1, T, 1)


def _table_with_loops(num_positions, d_model):
    table = torch.zeros(num_positions, d_model)
    for p in range(num_positions):
        i = 0
        while i < d_model:
            angle = torch.tensor(p / 10000 ** (i / d_model))
            table[p, i], table[p, i + 1] = torch.sin(angle), torch.cos(angle)
            i += 2
    return table


@pytest.mark.parametrize("exercise_id, candidate, construct, offset", [
    ("03.causal_average", _average_with_a_loop, "a list comprehension", 1),
    ("08.sinusoidal", _table_with_loops, "a for loop", 2),
])
def test_a_right_answer_from_a_python_loop_does_not_pass_where_the_prompt_forbids_loops(exercise_id, candidate, construct, offset):
    result = EXERCISES[exercise_id].check(candidate)
    assert not result.passed and result.kind == "mistake" and result.mistake == "python loop"
    assert construct in result.message and "every output is right" in result.message
    assert f"line {inspect.getsourcelines(candidate)[1] + offset} " in result.message


def test_loop_free_answers_and_code_without_source_pass_the_loop_rule():
    exercise = EXERCISES["03.causal_average"]
    assert exercise.check(_average_with_cumsum).passed
    assert exercise.check(exercise.reference).passed
    assert exercise.check(eval("lambda x: __import__('course_utils').checks.nb03.causal_average(x)")).passed  # no source to read
    assert EXERCISES["03.causal_softmax"].check(lambda s: [v for v in [EXERCISES["03.causal_softmax"].reference(s)]][0]).passed


def test_head_with_biases_is_told_which_parameters_are_extra():
    from torch import nn

    from course_utils.checks.nb03 import Head

    class HeadWithBiases(Head):
        def __init__(self, *args):
            super().__init__(*args)
            for name in ("key", "query", "value"):
                layer = getattr(self, name)
                setattr(self, name, nn.Linear(layer.in_features, layer.out_features, bias=True))

    result = EXERCISES["03.head"].check(HeadWithBiases)
    assert not result.passed and "'key.bias', 'query.bias', 'value.bias' not expected" in result.message
