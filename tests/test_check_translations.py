"""The exercise checks in Chinese: every hint, title, case label and generic message a learner can get.

The checks' texts are written in English and translated when a message is built, so choosing
the language after ``course_utils.checks`` is imported works. These tests run checks under
Chinese (``set_language("zh")``, or ``COURSE_LANG=zh``) and make sure the learner reads Chinese,
and that English stays exactly what it was.
"""

import re

import pytest
import torch
from torch import nn

from course_utils import i18n
from course_utils.checks import EXERCISES, KINDS, NOT_ATTEMPTED, Case, Exercise, check, compare
from course_utils.tooling import translate

EXERCISE_IDS = sorted(EXERCISES)
MISTAKES = [(ex_id, m.name) for ex_id in EXERCISE_IDS for m in EXERCISES[ex_id].mistakes]
CJK = re.compile(r"[\u4e00-\u9fff]")


def _mistake(ex_id, name):
    return next(m for m in EXERCISES[ex_id].mistakes if m.name == name)


def _chinese(text):
    return bool(CJK.search(text))


@pytest.fixture
def zh(monkeypatch):
    """Chinese for the test; the language chosen before comes back afterwards."""
    monkeypatch.setattr(i18n, "_chosen", i18n._chosen)
    i18n.set_language("zh")


@pytest.fixture
def en(monkeypatch):
    """English for the test, whatever ``COURSE_LANG`` says; the language chosen before comes back afterwards."""
    monkeypatch.setattr(i18n, "_chosen", i18n._chosen)
    i18n.set_language("en")


# --- every exercise, every planted mistake ---------------------------------------------------


@pytest.mark.parametrize("ex_id,mistake_name", MISTAKES)
def test_each_planted_mistake_is_explained_in_chinese(zh, ex_id, mistake_name):
    mistake = _mistake(ex_id, mistake_name)
    hint = i18n.catalogue("zh").get(mistake.hint)
    assert hint and _chinese(hint), f"{ex_id}: the hint of {mistake_name!r} has no Chinese translation"
    result = EXERCISES[ex_id].check(mistake.implementation)
    assert (result.kind, result.mistake) == ("mistake", mistake_name), result.message
    assert _chinese(result.message) and hint in result.message, f"{ex_id}, {mistake_name!r}: {result.message}"
    assert mistake.hint not in result.message, f"{ex_id}, {mistake_name!r}: the English hint is shown: {result.message}"
    assert result.case in [case.label for case in EXERCISES[ex_id].cases()]  # result.case stays the English label


@pytest.mark.parametrize("ex_id", EXERCISE_IDS)
def test_each_exercise_title_and_case_label_is_translated(ex_id):
    exercise = EXERCISES[ex_id]
    translations = i18n.catalogue("zh")
    assert _chinese(translations.get(exercise.title, "")), f"{ex_id}: the title {exercise.title!r} is not translated"
    missing = [case.label for case in exercise.cases() if case.label not in translations]
    assert not missing, f"{ex_id}: case labels not in any catalogue: {missing}"


@pytest.mark.parametrize("ex_id", EXERCISE_IDS)
def test_reference_stub_and_crash_get_chinese_messages(zh, ex_id):
    exercise = EXERCISES[ex_id]

    def stub(*args, **kwargs):
        raise NotImplementedError("your code here: replace this line")

    def crashes(*args, **kwargs):
        raise ZeroDivisionError("boom")

    passed = exercise.check(exercise.reference)
    assert passed.passed and _chinese(passed.message) and "passed" not in passed.message, passed.message
    result = exercise.check(stub)
    assert result.kind == "not attempted" and _chinese(result.message) and NOT_ATTEMPTED not in result.message, result.message
    result = exercise.check(crashes)
    assert result.kind == "exception" and _chinese(result.message) and "ZeroDivisionError" in result.message, result.message
    assert "your code raised" not in result.message and "on " not in result.message[:3]


def test_the_kinds_and_not_attempted_are_translated():
    translations = i18n.catalogue("zh")
    for kind, description in KINDS.items():
        assert _chinese(translations.get(description, "")), f"the description of {kind!r} is not translated"
    assert _chinese(translations.get(NOT_ATTEMPTED, ""))


@pytest.mark.parametrize("module", [m for m in translate.package_modules() if "checks" in m.parts], ids=lambda m: m.stem)
def test_every_check_module_catalogue_is_complete(module):
    assert translate.package_problems(module) == []


# --- the generic messages ----------------------------------------------------------------


def _centered(x):
    return x - x.mean(dim=-1, keepdim=True)


def _assert_chinese(result, kind, *english):
    assert result.kind == kind, result.message
    assert _chinese(result.message), result.message
    for text in english:
        assert text not in result.message, f"{text!r} left in English: {result.message}"


def test_generic_failures_of_a_function_exercise_are_in_chinese(zh):
    exercise = EXERCISES["00.center"]
    _assert_chinese(exercise.check(None), "not attempted", NOT_ATTEMPTED, "define your solution")
    _assert_chinese(exercise.check(42), "type", "expected a function")
    _assert_chinese(exercise.check(x for x in ()), "type", "you passed a generator")
    _assert_chinese(exercise.check(lambda x: x[:1]), "shape", "has shape", "expected")
    _assert_chinese(exercise.check(lambda x: _centered(x).double()), "dtype", "has dtype")
    _assert_chinese(exercise.check(lambda x: None), "returned none", "did you forget")
    _assert_chinese(exercise.check(lambda x: _centered(x) + 1), "values", "differs from the reference", "yours")
    _assert_chinese(exercise.check(lambda x: _centered(x) / 0), "nan", "contains", "where the reference")
    _assert_chinese(exercise.check(lambda x: x.sub_(x.mean(dim=-1, keepdim=True))), "changed input", "in place")
    _assert_chinese(exercise.check(lambda x: [1, 2]), "type", "should be a tensor")

    def loops(x):
        while True:
            pass

    _assert_chinese(exercise.check(loops, time_limit=0.2), "timeout", "your code was stopped")

    def chatty(x):
        print("working on it")
        raise ValueError("boom")

    result = exercise.check(chatty)
    _assert_chinese(result, "exception", "your code printed", "your code raised")
    assert "ValueError" in result.message and "boom" in result.message and "working on it" in result.message


def test_generic_failures_of_a_class_exercise_are_in_chinese(zh):
    _assert_chinese(EXERCISES["02.mlp"].check(nn.Linear(2, 3)), "type", "you passed an instance")

    class NoBuffers(nn.Module):
        def __init__(self, num_features, momentum=0.1):
            super().__init__()

        def forward(self, x):
            return x.clone()

    result = EXERCISES["02.centering"].check(NoBuffers)
    _assert_chinese(result, "values", "persistent buffers", "missing", "expected")
    assert "'running_mean'" in result.message

    class NoKey(nn.Module):
        def __init__(self, n_embd, head_size, block_size, dropout=0.0):
            super().__init__()

    _assert_chinese(EXERCISES["03.head"].check(NoKey), "type", "has no attribute", "which the check uses")


def test_a_tuple_output_and_a_check_fault_are_in_chinese(zh):
    result = EXERCISES["04.mha_forward"].check(lambda query, *args, **kwargs: (query, query))
    _assert_chinese(result, "values", "item 0 of the output", "differs from the reference")
    broken = Exercise(id="99.broken", title="broken", reference=lambda x: 1 / 0, cases=lambda: [Case("x = 1", (1,))])
    _assert_chinese(broken.check(lambda x: x), "check fault", "the check itself failed", "please report")


def test_unknown_exercise_ids_and_compare_are_in_chinese(zh, capsys):
    result = check("00.centre", lambda x: x)
    _assert_chinese(result, "unknown exercise", "no exercise with id", "did you mean")
    assert "'00.center'" in result.message
    _assert_chinese(check(3, lambda x: x), "unknown exercise", "must be a string")
    capsys.readouterr()
    message = compare(torch.tensor([1, 2, 3]), torch.tensor([1, 5, 3]))
    assert _chinese(message) and "differs" not in message and "position" not in message, message
    message = compare((1.0, 2.0), (1.0, 2.0, 3.0))
    assert _chinese(message) and "should be" not in message and "items" not in message, message


def test_course_lang_selects_chinese(monkeypatch):
    monkeypatch.setattr(i18n, "_chosen", None)
    monkeypatch.setenv("COURSE_LANG", "zh")
    assert i18n.get_language() == "zh"
    result = EXERCISES["00.center"].check(None)
    assert _chinese(result.message) and NOT_ATTEMPTED not in result.message
    monkeypatch.setenv("COURSE_LANG", "en")
    assert EXERCISES["00.center"].check(None).message.startswith(NOT_ATTEMPTED)


def test_set_language_rejects_an_unknown_language(monkeypatch):
    monkeypatch.setattr(i18n, "_chosen", "en")
    with pytest.raises(ValueError, match="zh") as raised:
        i18n.set_language("klingon")
    assert "'klingon'" in str(raised.value)
    with pytest.raises(TypeError):
        i18n.set_language(None)
    assert i18n.get_language() == "en"


# --- English stays as it was -----------------------------------------------------------------


def test_english_messages_are_unchanged(en):
    exercise = EXERCISES["00.center"]
    assert exercise.check(exercise.reference).message == "all 3 tests passed."
    assert exercise.check(None).message == "not attempted yet: define your solution, then run this cell again."
    assert exercise.check(lambda x: x[:1]).message == "on a 1-D tensor of 5 values: the output has shape (1,), expected (5,)."
    returned_mean = _mistake("00.center", "returned the mean")
    assert exercise.check(returned_mean.implementation).message == f"on a 1-D tensor of 5 values: {returned_mean.hint}."
    no_keepdim = _mistake("00.center", "no keepdim")
    assert exercise.check(no_keepdim.implementation).message == (
        f"on a (3, 4) tensor your code raised RuntimeError: {no_keepdim.hint}."
    )
    assert compare(torch.tensor([1, 2, 3]), torch.tensor([1, 5, 3])) == (
        "the output differs from the reference at 1 position (first at index (1,): yours 2, expected 5)."
    )
    assert compare([1.0], (1.0, 2.0)) == "the output should be a tuple of 2 items, got a list of 1 item."


@pytest.mark.parametrize("ex_id,mistake_name", MISTAKES[::7])
def test_english_mistake_messages_quote_the_english_hint(en, ex_id, mistake_name):
    mistake = _mistake(ex_id, mistake_name)
    result = EXERCISES[ex_id].check(mistake.implementation)
    assert mistake.hint in result.message and not _chinese(result.message), result.message
