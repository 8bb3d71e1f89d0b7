"""The exercise-check machinery.

An :class:`Exercise` knows its reference solution, a few input cases, how to run a
candidate on a case (``observe``) and the known mistakes learners make, each as a planted
buggy implementation. ``Exercise.check(candidate)`` runs the candidate and the reference
on every case and compares what it observes. On a difference it first asks whether the
candidate behaves like one of the planted mistakes (same outputs, or the same exception)
and names that mistake; otherwise it says exactly what differs (shape, dtype, device,
NaN, values). It never raises.
"""

from __future__ import annotations

import html
import math
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

NOT_ATTEMPTED = "not attempted yet"


@dataclass(frozen=True)
class Case:
    """One input to an exercise: positional and keyword arguments, and a label."""

    label: str
    args: tuple = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Mistake:
    """A known mistake, planted as a buggy implementation.

    Attributes:
        name: a short name, e.g. ``"scaled by C"``.
        hint: what the learner is told, e.g. ``"you scaled by C instead of head_size"``.
        implementation: a candidate that makes exactly this mistake. It diagnoses (a
            candidate observed to behave the same is given ``hint``) and tests the
            diagnosis (the test suite checks each planted mistake).
    """

    name: str
    hint: str
    implementation: Callable


@dataclass(frozen=True)
class CheckResult:
    """The outcome of a check: ``passed`` and a human ``message``."""

    exercise_id: str
    passed: bool
    message: str
    attempted: bool = True

    @property
    def icon(self) -> str:
        return "✅" if self.passed else ("⏳" if not self.attempted else "❌")

    def __str__(self) -> str:
        return f"{self.icon} {self.exercise_id}: {self.message}"

    def _repr_html_(self) -> str:
        colour = "#1a7f37" if self.passed else ("#9a6700" if not self.attempted else "#cf222e")
        body = html.escape(self.message).replace("\n", "<br>")
        return f'<div style="border-left:4px solid {colour};padding:2px 8px"><b>{self.icon} {self.exercise_id}</b>: {body}</div>'

    def __repr__(self) -> str:
        return str(self)


class ShownCheckResult(CheckResult):
    """A :class:`CheckResult` that :func:`check` has already displayed.

    Jupyter would show a cell's last value a second time; this one displays as nothing
    (``print(result)`` and ``result.passed`` work as usual).
    """

    def _ipython_display_(self) -> None:
        pass


def _default_observe(candidate: Callable, case: Case) -> Any:
    return candidate(*case.args, **dict(case.kwargs))


@dataclass
class Exercise:
    """One exercise of a notebook.

    Attributes:
        id: ``"NN.name"``, NN being the notebook's two-digit number.
        title: one line, shown in messages.
        reference: the reference solution (a function or a class).
        cases: a function returning the list of :class:`Case` to run (built lazily,
            seeded, so every check sees the same inputs).
        mistakes: the known mistakes, most specific first.
        observe: ``observe(candidate, case) -> observation``: runs a candidate on a
            case and returns what is compared (a tensor, a number, or a dict/tuple of
            them). Default: ``candidate(*case.args, **case.kwargs)``.
        atol, rtol: tolerances for comparing tensors.
        minutes: estimated time for the exercise.
        difficulty: 1 (warm-up) to 3 (hard).
    """

    id: str
    title: str
    reference: Callable
    cases: Callable[[], Sequence[Case]]
    mistakes: Sequence[Mistake] = ()
    observe: Callable[[Callable, Case], Any] = _default_observe
    atol: float = 1e-6
    rtol: float = 1e-5
    minutes: int = 5
    difficulty: int = 1

    def check(self, candidate: Any) -> CheckResult:
        """Run ``candidate`` on every case and compare with the reference. Never raises."""
        try:
            return self._check(candidate)
        except Exception as exc:  # a bug in a check must not crash a learner's notebook
            return self._fail(f"the check itself failed ({type(exc).__name__}: {exc}); please report this.")

    def _fail(self, message: str, attempted: bool = True) -> CheckResult:
        return CheckResult(self.id, False, message, attempted)

    def _check(self, candidate: Any) -> CheckResult:
        if candidate is None or candidate is Ellipsis:
            return self._fail(f"{NOT_ATTEMPTED}: define your solution, then run this cell again.", attempted=False)
        if not callable(candidate):
            return self._fail(f"expected a function or class to check, got {type(candidate).__name__} ({_short(candidate)}).")
        cases = list(self.cases())
        for case in cases:
            expected = self.observe(self.reference, case)
            inputs_before = _tensor_inputs(case)
            try:
                got = self.observe(candidate, case)
            except NotImplementedError:
                return self._fail(f"{NOT_ATTEMPTED}: replace the `raise NotImplementedError` with your code.", attempted=False)
            except Exception as exc:
                return self._fail(self._explain_exception(exc, case))
            changed = _changed_inputs(inputs_before, case)
            if changed:
                return self._fail(
                    f"on {case.label}: your code changed its input {changed} in place; "
                    "leave inputs untouched (use out-of-place operations such as `x - m`, not `x -= m` or `x.sub_(m)`)."
                )
            difference = compare(got, expected, self.atol, self.rtol)
            if difference is not None:
                mistake = self._matching_mistake(case, got)
                if mistake is not None:
                    return self._fail(f"on {case.label}: {mistake.hint}.")
                return self._fail(f"on {case.label}: {difference}")
        n = len(cases)
        return CheckResult(self.id, True, f"all {n} test{'s' if n != 1 else ''} passed.")

    def _matching_mistake(self, case: Case, got: Any) -> Mistake | None:
        for mistake in self.mistakes:
            try:
                planted = self.observe(mistake.implementation, case)
            except Exception:
                continue
            if compare(got, planted, self.atol, self.rtol) is None:
                return mistake
        return None

    def _explain_exception(self, exc: Exception, case: Case) -> str:
        for mistake in self.mistakes:
            try:
                self.observe(mistake.implementation, case)
            except Exception as planted:
                if type(planted) is type(exc) and str(planted) == str(exc):
                    return f"on {case.label} your code raised {type(exc).__name__}: {mistake.hint}."
        where = _learner_frame(exc)
        return f"on {case.label} your code raised {type(exc).__name__}: {exc}{where}"


def _tensor_inputs(case: Case) -> dict[str, torch.Tensor]:
    """Copies of the case's tensor arguments, to notice a candidate that modifies them."""
    named = {f"argument {i + 1}": a for i, a in enumerate(case.args)} | {f"`{k}`": v for k, v in case.kwargs.items()}
    return {name: t.detach().clone() for name, t in named.items() if isinstance(t, torch.Tensor)}


def _changed_inputs(before: dict[str, torch.Tensor], case: Case) -> str | None:
    named = {f"argument {i + 1}": a for i, a in enumerate(case.args)} | {f"`{k}`": v for k, v in case.kwargs.items()}
    for name, copy in before.items():
        now = named[name].detach()
        if now.shape != copy.shape or not torch.equal(torch.nan_to_num(now), torch.nan_to_num(copy)):
            return name
    return None


def _learner_frame(exc: BaseException) -> str:
    """' (in cell line N: code)' for the innermost frame that lives in a notebook cell."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "ipykernel" in f.filename or f.filename.startswith("<")]
    if not frames:
        return ""
    frame = frames[-1]
    line = (frame.line or "").strip()
    return f"\n  (at line {frame.lineno} of your cell: `{line}`)" if line else ""


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, (list, tuple, dict, set)):
        return f"a {type(value).__name__} of {len(value)} items"
    return f"{type(value).__name__} {_short(value)}"


def compare(got: Any, expected: Any, atol: float = 1e-6, rtol: float = 1e-5, where: str = "the output") -> str | None:
    """Compare two observations. Returns None when they agree, else a sentence saying how they differ.

    Tensors are compared by type, shape, dtype, device, NaN/inf pattern and values;
    mappings key by key; tuples and lists item by item; other values with ``==``
    (floats with the tolerances).
    """
    if isinstance(expected, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return f"{where} should be a tensor, but your code returned {_describe(got)}."
        if got.shape != expected.shape:
            return f"{where} has shape {tuple(got.shape)}, expected {tuple(expected.shape)}."
        if got.dtype != expected.dtype:
            return f"{where} has dtype {got.dtype}, expected {expected.dtype}."
        if got.device != expected.device:
            return f"{where} is on device {got.device}, expected {expected.device} (create new tensors on the input's device)."
        got_d, exp_d = got.detach(), expected.detach()
        if got_d.is_floating_point() or got_d.is_complex():
            bad = torch.isnan(got_d) & ~torch.isnan(exp_d)
            if bad.any():
                return f"{where} contains NaN at {int(bad.sum())} position(s) where the reference is finite (first at index {_index(bad)})."
            bad = torch.isinf(got_d) & ~torch.isinf(exp_d)
            if bad.any():
                return f"{where} contains inf at {int(bad.sum())} position(s) where the reference is finite (first at index {_index(bad)})."
            if torch.allclose(got_d, exp_d, atol=atol, rtol=rtol, equal_nan=True):
                return None
            diff = (got_d - exp_d).abs().nan_to_num(0.0)
            i = _index(diff == diff.max())
            return (
                f"{where} differs from the reference by up to {float(diff.max()):.3g} "
                f"(at index {i}: yours {float(got_d[i]):.4g}, expected {float(exp_d[i]):.4g})."
            )
        if torch.equal(got_d, exp_d):
            return None
        return f"{where} differs from the reference at {int((got_d != exp_d).sum())} position(s)."
    if isinstance(expected, Mapping):
        if not isinstance(got, Mapping):
            return f"{where} should be a mapping, got {_describe(got)}."
        unexpected = [key for key in got if key not in expected]
        if unexpected:
            return f"{where} has unexpected entries {', '.join(map(repr, unexpected))}; expected only {', '.join(map(repr, expected))}."
        for key, value in expected.items():
            if key not in got:
                return f"{where} is missing {key!r}."
            difference = compare(got[key], value, atol, rtol, where=str(key))
            if difference is not None:
                return difference
        return None
    if isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            return f"{where} should be a {type(expected).__name__} of {len(expected)} items, got {_describe(got)}."
        for k, (g, e) in enumerate(zip(got, expected)):
            difference = compare(g, e, atol, rtol, where=f"item {k} of {where}")
            if difference is not None:
                return difference
        return None
    if isinstance(expected, float) and isinstance(got, (int, float)):
        if math.isclose(got, expected, rel_tol=rtol, abs_tol=atol) or (math.isnan(got) and math.isnan(expected)):
            return None
        return f"{where} is {got:.6g}, expected {expected:.6g}."
    if got == expected:
        return None
    return f"{where} is {_short(got)}, expected {_short(expected)}."


def _index(mask: torch.Tensor) -> tuple[int, ...]:
    return tuple(int(i) for i in mask.nonzero()[0])


EXERCISES: dict[str, Exercise] = {}


def register(exercise: Exercise) -> Exercise:
    """Add ``exercise`` to :data:`EXERCISES` (ids are unique)."""
    if exercise.id in EXERCISES:
        raise ValueError(f"exercise id {exercise.id!r} is registered twice")
    EXERCISES[exercise.id] = exercise
    return exercise


def check(exercise_id: str, candidate: Any) -> CheckResult:
    """Check ``candidate`` against exercise ``exercise_id`` and show the result.

    Args:
        exercise_id: e.g. ``"03.head"``; see ``EXERCISES`` for all of them.
        candidate: your function or class.

    Returns:
        The :class:`CheckResult`, already displayed in the notebook (so the cell does not
        show it a second time).
    """
    exercise = EXERCISES.get(exercise_id)
    if exercise is None:
        known = ", ".join(sorted(EXERCISES))
        result = CheckResult(exercise_id, False, f"no exercise with id {exercise_id!r}; known ids: {known}.")
    else:
        result = exercise.check(candidate)
    try:
        from IPython.display import display

        display(result)
    except ImportError:  # pragma: no cover - IPython is always installed with the course
        print(result)
    return ShownCheckResult(result.exercise_id, result.passed, result.message, result.attempted)


def exercises_of(notebook: str) -> Iterable[Exercise]:
    """The exercises of notebook ``"03"`` (or any id prefix), in id order."""
    return [EXERCISES[k] for k in sorted(EXERCISES) if k.startswith(notebook)]
