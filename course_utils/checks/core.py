"""The exercise-check machinery.

An :class:`Exercise` knows its reference solution, a few input cases, how to run a
candidate on a case (``observe``) and the known mistakes learners make, each as a planted
buggy implementation. ``Exercise.check(candidate)`` runs the reference and the candidate
on every case and compares what it observes. When they differ, it names a planted mistake
only if the candidate behaves like that mistake on *every* case; otherwise it says exactly
what differs on the first case that differs (type, shape, dtype, device, NaN, values).
When every value agrees, it also compares what flows back to the inputs and weights (the
gradients of the outputs) with the reference's, so that a ``.detach()`` does not pass.

A check never raises (only ``KeyboardInterrupt`` goes through, so a cell can be stopped),
stops a candidate that runs past its time limit, and leaves the notebook's global state as
it found it (see :mod:`course_utils.checks.isolation`). Each :class:`CheckResult` has a
``kind`` (see :data:`KINDS`) and a message of a few lines at most.
"""

from __future__ import annotations

import ast
import difflib
import html
import importlib
import inspect
import math
import re
import sysconfig
import textwrap
import time
import traceback
import warnings
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from .. import i18n
from ..i18n import N_, _, get_language
from . import isolation
from .isolation import BoundedText, CaseTimeout

#: The start of the message for a missing solution (shown through ``_``, in the language in force).
NOT_ATTEMPTED = N_("not attempted yet")

#: Seconds a candidate may take on one case (an :class:`Exercise` can set its own).
DEFAULT_TIME_LIMIT_S = 5.0
#: A candidate may also take this many times what the reference took on the case.
TIME_LIMIT_FACTOR = 10
#: A message shows at most this many lines (and what the code printed at most PRINTED_LINES).
MESSAGE_LINES = 5
PRINTED_LINES = 3
LINE_CHARS = 1000
#: Seconds the progress recorder may take before a check gives up on it.
RECORD_LIMIT_S = 2.0

#: What ``CheckResult.kind`` can be (the descriptions are shown through ``_``).
KINDS = {
    "passed": N_("every case agrees with the reference"),
    "not attempted": N_("no solution yet (None, ..., or the stub's NotImplementedError)"),
    "unknown exercise": N_("no exercise has this id"),
    "type": N_("not a function or class, a class instance, or a returned value of the wrong type"),
    "returned none": N_("the code returned None where a value was expected"),
    "exception": N_("the code raised an exception (not a planted one)"),
    "timeout": N_("the code ran past its time limit on a case"),
    "changed input": N_("the code changed one of its inputs in place"),
    "shape": N_("an output has the wrong shape"),
    "dtype": N_("an output has the wrong dtype"),
    "device": N_("an output is on the wrong device"),
    "nan": N_("an output has NaN or inf where the reference is finite"),
    "values": N_("outputs differ in value (or entries are missing or unexpected)"),
    "mistake": N_("the code behaves like a planted mistake on every case (see ``CheckResult.mistake``)"),
    "check fault": N_("the check itself failed: a fault of the course, not of the code checked"),
}

_CHECKS_DIR = Path(__file__).resolve().parent
_PACKAGE_DIR = _CHECKS_DIR.parent
_LIBRARY_DIRS = tuple({str(Path(p).resolve()) for k, p in sysconfig.get_paths().items() if k in ("stdlib", "purelib", "platlib")})


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
            candidate observed to behave the same on every case is given ``hint``) and
            tests the diagnosis (the test suite checks each planted mistake).
    """

    name: str
    hint: str
    implementation: Callable


@dataclass(frozen=True)
class CheckResult:
    """The outcome of a check.

    Attributes:
        exercise_id: the exercise checked.
        passed: True when every case agrees with the reference.
        message: what a learner reads: a few lines at most.
        attempted: False for a stub or a missing solution.
        kind: one of :data:`KINDS` (``""`` when built by hand).
        mistake: the name of the planted mistake when ``kind == "mistake"``.
        case: the label of the case the message is about, if any.
    """

    exercise_id: str
    passed: bool
    message: str
    attempted: bool = True
    kind: str = ""
    mistake: str | None = None
    case: str | None = None

    @property
    def icon(self) -> str:
        return "✅" if self.passed else ("⏳" if not self.attempted else "❌")

    def __str__(self) -> str:
        return f"{self.icon} {self.exercise_id}: {self.message}"

    def _repr_html_(self) -> str:
        colour = "#1a7f37" if self.passed else ("#9a6700" if not self.attempted else "#cf222e")
        body = html.escape(self.message).replace("\n", "<br>")
        return f'<div style="border-left:4px solid {colour};padding:2px 8px"><b>{self.icon} {html.escape(self.exercise_id)}</b>: {body}</div>'

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
class _Outcome:
    """What running one implementation on one case gave: a value, an exception, or a timeout."""

    value: Any = None
    error: BaseException | None = None
    changed: str | None = None  # the input it changed in place
    timed_out: bool = False
    seconds: float = 0.0


class _CheckFault(Exception):
    """The check's own code (its cases, its reference) failed."""


@dataclass
class Exercise:
    """One exercise of a notebook.

    Attributes:
        id: ``"NN.name"``, NN being the notebook's two-digit number.
        title: one line, shown in messages.
        reference: the reference solution (a function or a class).
        cases: a function returning the list of :class:`Case` to run (built lazily,
            seeded, so every check sees the same inputs).
        mistakes: the known mistakes. Each must behave differently from the reference and
            from every other mistake on the cases (a test enforces it).
        observe: ``observe(candidate, case) -> observation``: runs a candidate on a
            case and returns what is compared (a tensor, a number, or a dict/tuple of
            them). Default: ``candidate(*case.args, **case.kwargs)``.
        atol, rtol: tolerances for comparing tensors.
        minutes: estimated time for the exercise.
        difficulty: 1 (warm-up) to 3 (hard).
        time_limit: seconds the candidate may take on one case (at least
            :data:`TIME_LIMIT_FACTOR` times what the reference took).
        vectorised: the prompt asks for tensor operations only: a candidate whose own
            source, or the source of any learner function it calls, has a Python loop
            (``for``, ``while`` or a comprehension) does not pass, even when its outputs are right.
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
    time_limit: float = DEFAULT_TIME_LIMIT_S
    vectorised: bool = False
    _memo: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    # ----------------------------------------------------------------------- the check

    def check(self, candidate: Any, *, time_limit: float | None = None) -> CheckResult:
        """Run ``candidate`` on every case and compare with the reference. Never raises.

        Args:
            candidate: the learner's function or class.
            time_limit: seconds per case, instead of the exercise's own limit.
        """
        with warnings.catch_warnings(), isolation.isolated() as saved:
            warnings.simplefilter("default")  # a learner's "error" filter must not break the check; warnings are shown once
            try:
                result = self._check(candidate, saved, time_limit)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # a fault of the check must not crash a learner's notebook
                result = self._result("check fault", _("the check itself failed ({error}); please report this.").format(error=_exception_text(exc)))
        return result

    def _check(self, candidate: Any, saved: isolation.Snapshot, time_limit: float | None) -> CheckResult:
        if candidate is None or candidate is Ellipsis:
            return self._result("not attempted", _("{not_attempted}: define your solution, then run this cell again.").format(not_attempted=_shown(NOT_ATTEMPTED)))
        problem = self._unusable(candidate)
        if problem:
            return self._result("type", problem)
        cases = self._fresh_cases(saved)
        expected = self._expected(saved)
        printed = BoundedText()
        outcomes = []
        for index, case in enumerate(cases):
            limit = time_limit if time_limit is not None else max(self.time_limit, TIME_LIMIT_FACTOR * expected[index].seconds)
            outcomes.append(self._run(candidate, case, index, saved, limit, printed))
            if outcomes[-1].timed_out:
                break
        result = self._verdict(cases, outcomes, expected, saved)
        if result.passed:
            result = self._gradient_verdict(candidate, cases, expected, saved, time_limit) or result
        loop = self._loop_reached(candidate, cases[0], saved) if result.passed and self.vectorised else None
        if loop is not None:
            result = self._result("mistake", _(
                "every output is right, but your code uses {construct} ({where}); this exercise "
                "asks for tensor operations only: let broadcasting and whole-tensor functions do the looping."
            ).format(construct=_shown(loop[0]), where=loop[1]), mistake="python loop")
        note = _printed_note(printed)
        return _replace(result, message=result.message + note) if note else result

    def _verdict(self, cases, outcomes, expected, saved) -> CheckResult:
        """The result for the candidate's ``outcomes``: passed, a named mistake, or what differs first."""
        for index, (case, got) in enumerate(zip(cases, outcomes)):
            if got.timed_out:
                limit = f"{got.seconds:.2g}" if got.seconds < 10 else f"{got.seconds:.0f}"
                return self._result("timeout", _("on {case}: your code was stopped after {limit} s; does a loop in it never end?")
                                    .format(case=_shown(case.label), limit=limit), case=case.label)
            difference = self._difference(got, expected[index], case)
            if difference is None:
                continue
            kind, text = difference
            if kind == "not attempted":
                return self._result(kind, text, case=case.label)
            mistake = self._matching_mistake(outcomes, len(cases), saved)
            if mistake is not None:
                return self._mistake_result(mistake, case, got)
            return self._result(kind, text, case=case.label)
        n = len(cases)
        return self._result("passed", _("1 test passed.") if n == 1 else _("all {n} tests passed.").format(n=n))

    def _difference(self, got: _Outcome, expected: _Outcome, case: Case) -> tuple[str, str] | None:
        """(kind, message) saying how ``got`` differs from ``expected`` on ``case``, or None."""
        if got.error is not None:
            if isinstance(got.error, NotImplementedError):
                return "not attempted", _("{not_attempted}: replace the `raise NotImplementedError` with your code.").format(
                    not_attempted=_shown(NOT_ATTEMPTED))
            return _explain_exception(got.error, case)
        if got.changed:
            return "changed input", _(
                "on {case}: your code changed its input {name} in place; leave inputs untouched "
                "(use out-of-place operations such as `x - m`, not `x -= m` or `x.sub_(m)`)."
            ).format(case=_shown(case.label), name=got.changed)
        difference = _guarded_compare(got.value, expected.value, self.atol, self.rtol, self._locator(case))
        return None if difference is None else (difference[0], _("on {case}: {difference}").format(case=_shown(case.label), difference=difference[1]))

    def _mistake_result(self, mistake: Mistake, case: Case, got: _Outcome) -> CheckResult:
        if got.error is not None:
            text = _("on {case} your code raised {error}: {hint}.").format(case=_shown(case.label), error=type(got.error).__name__,
                                                                          hint=_shown(mistake.hint))
        else:
            text = _("on {case}: {hint}.").format(case=_shown(case.label), hint=_shown(mistake.hint))
        return self._result("mistake", text, mistake=mistake.name, case=case.label)

    def _result(self, kind: str, message: str, mistake: str | None = None, case: str | None = None) -> CheckResult:
        return CheckResult(self.id, kind == "passed", _capped(message), kind != "not attempted", kind, mistake, case)

    # ----------------------------------------------------------------------- running code

    def _run(self, implementation, case: Case, index: int, saved, limit: float | None = None,
             printed: BoundedText | None = None) -> _Outcome:
        """Observe ``implementation`` on ``case`` in the clean state, within ``limit`` seconds."""
        before = _tensor_inputs(case, self._parameter_names())
        isolation.prepare(saved, zlib.crc32(self.id.encode()) + index)
        outcome = _Outcome()
        start = time.monotonic()
        try:
            with isolation.captured_output(printed or BoundedText(0)), isolation.time_limit(limit):
                outcome.value = self.observe(implementation, case)
        except KeyboardInterrupt:
            raise
        except CaseTimeout:
            return _Outcome(timed_out=True, seconds=limit or 0.0)
        except BaseException as exc:  # SystemExit, GeneratorExit, ... are the learner's too
            outcome.error = exc
        outcome.seconds = time.monotonic() - start
        outcome.changed = _changed_inputs(before, case, self._parameter_names())
        return outcome

    def _expected(self, saved) -> list[_Outcome]:
        """The reference's outcome on every case (computed once, then remembered)."""
        memo = self._fresh_memo()
        if "expected" not in memo:
            cases = self._fresh_cases(saved)
            outcomes = [self._run(self.reference, case, i, saved) for i, case in enumerate(cases)]
            for case, outcome in zip(cases, outcomes):
                if outcome.error is not None or outcome.changed:
                    problem = (_exception_text(outcome.error) if outcome.error is not None
                               else _("changed {name}").format(name=outcome.changed))
                    raise _CheckFault(_("the reference failed on {case}: {problem}").format(case=_shown(case.label), problem=problem))
            memo["expected"] = outcomes
        return memo["expected"]

    def _planted(self, mistake_index: int, case_index: int, saved) -> _Outcome:
        """A planted mistake's outcome on one case (computed once, then remembered)."""
        memo = self._fresh_memo().setdefault("planted", {})
        key = (mistake_index, case_index)
        if key not in memo:
            case = self._fresh_cases(saved)[case_index]  # fresh inputs: the candidate may have changed its own
            outcome = self._run(self.mistakes[mistake_index].implementation, case, case_index, saved)
            if outcome.error is not None:  # remembered: drop the frames (and tensors) its traceback holds
                outcome.error = outcome.error.with_traceback(None)
            memo[key] = outcome
        return memo[key]

    def _fresh_cases(self, saved) -> list[Case]:
        """The cases, built in the clean state (a learner's float64 default dtype must not change them)."""
        isolation.prepare(saved, zlib.crc32(self.id.encode()))
        return list(self.cases())

    def _fresh_memo(self) -> dict:
        """The memo, emptied if the reference, cases, observe or mistakes were replaced since, or the
        language changed (what it holds names outputs in the language of the run that made it)."""
        key = (id(self.reference), id(self.cases), id(self.observe), tuple(id(m.implementation) for m in self.mistakes),
               get_language())
        if self._memo.get("key") != key:
            self._memo.clear()
            self._memo["key"] = key
        return self._memo

    def _matching_mistake(self, outcomes: list[_Outcome], n_cases: int, saved) -> Mistake | None:
        """The first planted mistake that behaves like the candidate on EVERY case, else None."""
        if len(outcomes) < n_cases:
            return None
        for m, mistake in enumerate(self.mistakes):
            if all(_same_outcome(got, self._planted(m, i, saved), self.atol, self.rtol) for i, got in enumerate(outcomes)):
                return mistake
        return None

    # ----------------------------------------------------------------------- gradients and loops

    def _gradient_verdict(self, candidate, cases, expected, saved, time_limit) -> CheckResult | None:
        """After every value agreed: does training's signal flow back through the candidate as through the reference?

        Each case runs again with its floating-point tensor inputs requiring gradients. An
        output that is differentiable for the reference must be for the candidate; the
        gradients of a fixed weighted sum of the outputs must agree for every input, and in
        total (squared norm) for the weights the code created. None when all agree.
        """
        memo = self._fresh_memo().setdefault("gradients", {})
        seed = zlib.crc32(self.id.encode())  # the seeds of the check's own runs
        for index, case in enumerate(cases):
            if index not in memo:
                memo[index] = _gradient_outcome(self._gradients, self.reference, self._fresh_cases(saved)[index], seed + index, saved, None)
                if memo[index].error is not None:
                    raise _CheckFault(_("the reference's gradients failed on {case}: {problem}").format(
                        case=_shown(case.label), problem=_exception_text(memo[index].error)))
            reference = memo[index].value
            if not reference["connected"] or not any(reference["connected"].values()):
                continue
            limit = time_limit if time_limit is not None else max(self.time_limit, TIME_LIMIT_FACTOR * expected[index].seconds)
            got = _gradient_outcome(self._gradients, candidate, self._fresh_cases(saved)[index], seed + index, saved, limit)
            if got.error is not None or got.timed_out:
                continue  # it ran once already: what differs here is not about gradients
            problem = _gradient_difference(got.value, reference, self.atol, self.rtol)
            if problem is not None:
                kind, text = problem
                return self._result("mistake", _("on {case}: {problem}").format(case=_shown(case.label), problem=text),
                                    mistake=kind, case=case.label)
        return None

    def _gradients(self, implementation, case: Case) -> dict:
        """Which outputs are differentiable, and the gradients of a fixed weighted sum of them."""
        grad_case = _requiring_grad(case)
        observed = self.observe(implementation, grad_case)
        outputs = [(where, t) for where, t in _tensors_in(observed, _("the output")) if t.is_floating_point()]
        connected = {where: bool(t.requires_grad) for where, t in outputs}
        differentiable = [t for _where, t in outputs if t.requires_grad]
        inputs = [(name, t) for name, t in _named_inputs(grad_case, self._parameter_names()) if isinstance(t, torch.Tensor) and t.requires_grad]
        found = {"connected": connected, "inputs": {}, "weights": 0.0}
        if not differentiable:
            return found
        total = sum((_plain_tensor(t) * _fixed_weights(t)).sum() for t in differentiable)
        inner = [leaf for leaf in _leaves(differentiable) if not any(leaf is t for _name, t in inputs)]
        grads = torch.autograd.grad(total, [t for _name, t in inputs] + inner, allow_unused=True)
        for (name, t), grad in zip(inputs, grads):
            found["inputs"][name] = torch.zeros_like(t) if grad is None else grad.detach()
        found["weights"] = float(sum(float(g.detach().double().pow(2).sum()) for g in grads[len(inputs):] if g is not None))
        return found

    def _loop_reached(self, candidate, case: Case, saved) -> tuple[str, str] | None:
        """(what, where) of the first Python loop in the candidate's source or in learner code it calls, or None."""
        own = _python_loop(candidate)
        if own is not None:
            return own[0], _("line {line} of your cell's code").format(line=own[1])
        isolation.prepare(saved, zlib.crc32(self.id.encode()))
        calls = isolation.CallRecorder(library=(_LIBRARY_DIRS + (str(_PACKAGE_DIR),)))
        try:
            with isolation.captured_output(BoundedText(0)), isolation.time_limit(self.time_limit), calls:
                self.observe(candidate, case)
        except KeyboardInterrupt:
            raise
        except BaseException:
            pass
        for code in calls.codes:
            found = _python_loop(code)
            if found is not None:
                return found[0], _("in {function}, line {line}").format(function=f"`{code.co_name}`", line=found[1])
        return None

    # ----------------------------------------------------------------------- messages

    def _unusable(self, candidate: Any) -> str | None:
        """Why ``candidate`` cannot be run at all, or None."""
        try:
            if inspect.isclass(self.reference) and isinstance(candidate, torch.nn.Module):
                name = type(candidate).__name__
                return _("you passed an instance of {name}, built with {name}(...); pass the class itself: "
                         "check({id}, {name})").format(name=name, id=repr(self.id))
            if inspect.isgenerator(candidate):
                return _("you passed a generator object (what a function with `yield` returns); pass the function itself.")
            if not callable(candidate):
                return _("expected a function or class to check, got {what}.").format(what=_describe(candidate))
        except Exception as exc:
            return _("expected a function or class to check, got an object that cannot be inspected ({error}).").format(
                error=_exception_text(exc))
        return None

    def _parameter_names(self) -> list[str]:
        """The reference's parameter names (for a function), to name the inputs in messages."""
        if "parameters" not in self._memo:
            try:
                names = [] if inspect.isclass(self.reference) else list(inspect.signature(self.reference).parameters)
            except (TypeError, ValueError):
                names = []
            self._memo["parameters"] = names
        return self._memo["parameters"]

    def _locator(self, case: Case) -> Callable[[tuple, tuple], str | None] | None:
        """A function naming a position by the input value there, when the case has one tensor input."""
        if not self._parameter_names():  # a class: its inputs are constructor arguments and a batch
            return None
        tensors = [(name, t) for name, t in _named_inputs(case, self._parameter_names()) if isinstance(t, torch.Tensor)]
        if len(tensors) != 1:
            return None
        name, x = tensors[0][0].strip("`"), tensors[0][1].detach()

        def locate(shape: tuple, index: tuple) -> str | None:
            if tuple(x.shape) != tuple(shape) or x.is_complex():
                return None
            value = _number(x[index])
            return f"{name} = {value}" if x.dim() == 1 else _("index {index}, where {name} = {value}").format(index=index, name=name, value=value)

        return locate


# --------------------------------------------------------------------------- outcomes and inputs


def _same_outcome(got: _Outcome, planted: _Outcome, atol: float, rtol: float) -> bool:
    """Whether the candidate behaved like a planted implementation on one case."""
    if got.timed_out or planted.timed_out or (got.error is None) != (planted.error is None):
        return False
    if got.error is not None:
        return type(got.error) is type(planted.error) and _safe_str(got.error) == _safe_str(planted.error)
    if got.changed != planted.changed:
        return False
    return _guarded_compare(got.value, planted.value, atol, rtol) is None


def _named_inputs(case: Case, names: Sequence[str]) -> list[tuple[str, Any]]:
    positional = [(f"`{names[i]}`" if i < len(names) else _("argument {n}").format(n=i + 1), a) for i, a in enumerate(case.args)]
    return positional + [(f"`{k}`", v) for k, v in case.kwargs.items()]


def _tensor_inputs(case: Case, names: Sequence[str]) -> dict[str, torch.Tensor]:
    """Copies of the case's tensor arguments, to notice a candidate that modifies them."""
    return {name: t.detach().clone() for name, t in _named_inputs(case, names) if isinstance(t, torch.Tensor)}


def _changed_inputs(before: dict[str, torch.Tensor], case: Case, names: Sequence[str]) -> str | None:
    named = dict(_named_inputs(case, names))
    for name, copy in before.items():
        try:
            now = named[name].detach()
            if now.shape != copy.shape or now.dtype != copy.dtype or not torch.equal(torch.nan_to_num(now), torch.nan_to_num(copy)):
                return name
        except Exception:
            return name
    return None


def _gradient_outcome(gradients, implementation, case: Case, seed: int, saved, limit) -> _Outcome:
    """Run ``gradients(implementation, case)`` in the clean state seeded with ``seed``, within ``limit`` seconds."""
    outcome = _Outcome()
    isolation.prepare(saved, seed)
    try:
        with isolation.captured_output(BoundedText(0)), isolation.time_limit(limit):
            outcome.value = gradients(implementation, case)
    except KeyboardInterrupt:
        raise
    except CaseTimeout:
        outcome.timed_out = True
    except BaseException as exc:
        outcome.error = exc.with_traceback(None)
    return outcome


def _requiring_grad(case: Case) -> Case:
    """``case`` with fresh leaf copies of its floating-point tensor inputs that require gradients."""

    def leaf(value):
        if isinstance(value, torch.Tensor) and (value.is_floating_point() or value.is_complex()):
            return value.detach().clone().requires_grad_(True)
        return value

    return Case(case.label, tuple(leaf(a) for a in case.args), {k: leaf(v) for k, v in case.kwargs.items()})


def _tensors_in(observed: Any, where: str) -> list[tuple[str, torch.Tensor]]:
    """(where, tensor) for every tensor in an observation (a tensor, or mappings and sequences of them)."""
    if isinstance(observed, torch.Tensor):
        return [(where, observed)]
    if isinstance(observed, Mapping):
        return [found for key, value in observed.items() for found in _tensors_in(value, _shown(key) if isinstance(key, str) else str(key))]
    if isinstance(observed, (tuple, list)):
        return [found for k, value in enumerate(observed)
                for found in _tensors_in(value, _("item {k} of {where}").format(k=k, where=where))]
    return []


def _fixed_weights(t: torch.Tensor) -> torch.Tensor:
    """Weights in [0.5, 1.5) that depend only on the shape: the same for the reference and the candidate."""
    g = torch.Generator().manual_seed(t.numel())
    return (0.5 + torch.rand(tuple(t.shape), generator=g, dtype=torch.float64)).to(t.dtype)


def _leaves(outputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The tensors that require gradients and that ``outputs`` were computed from (weights, inputs)."""
    found, seen, stack = [], set(), [t.grad_fn for t in outputs if t.grad_fn is not None]
    found += [t for t in outputs if t.grad_fn is None and t.requires_grad]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)
        if isinstance(variable, torch.Tensor):
            found.append(variable)
        stack.extend(next_node for next_node, _ in node.next_functions)
    unique = []
    for t in found:
        if not any(t is u for u in unique):
            unique.append(t)
    return unique


def _gradient_difference(got: dict, expected: dict, atol: float, rtol: float) -> tuple[str, str] | None:
    """(mistake name, sentence) saying how the candidate's gradients differ from the reference's, or None."""
    for where, connected in expected["connected"].items():
        if connected and not got["connected"].get(where, True):
            return "cut off from training", _(
                "every value is right, but {where} is cut off from the inputs and weights it was computed from: training could "
                "not learn anything through it (a `.detach()`, `.data`, `torch.no_grad()` or a round trip through `.item()`, "
                "`.tolist()` or numpy does that); return the tensor your operations produced."
            ).format(where=where)
    for name, grad in expected["inputs"].items():
        mine = got["inputs"].get(name)
        if mine is None:
            continue
        difference = _guarded_compare(mine, grad, max(atol, 1e-5), max(rtol, 1e-4))
        if difference is not None:
            return "different gradient", _(
                "every value is right, but the signal training sends back to {name} differs from the reference's "
                "(its gradient: {difference}); something in your code bends or blocks it, such as a `.detach()` on part "
                "of the computation or an in-place write."
            ).format(name=name, difference=difference[1])
    if not math.isclose(got["weights"], expected["weights"], rel_tol=1e-3, abs_tol=1e-8):
        return "different gradient", _(
            "every value is right, but the signal training sends back to the weights differs from the reference's (squared "
            "size of their gradients: yours {got}, expected {expected}); part of your computation is cut off from training, "
            "by a `.detach()`, `.data` or `torch.no_grad()`."
        ).format(got=_significant(got["weights"], expected["weights"]), expected=_significant(expected["weights"], got["weights"]))
    return None


# --------------------------------------------------------------------------- explaining exceptions


def _explain_exception(exc: BaseException, case: Case) -> tuple[str, str]:
    """(kind, message) for an exception that came out of observing the candidate."""
    if _raised_in_check_code(exc):
        if isinstance(exc, (AttributeError, TypeError)) and re.search(r"\bNone(Type)?\b", _safe_str(exc)):
            return "returned none", _("on {case}: your code returned None where a value was expected; "
                                      "did you forget a `return` (in `forward`)?").format(case=_shown(case.label))
        missing = _missing_attribute(exc)
        if missing:
            return "type", _("on {case}: your {owner} has no attribute `{attribute}`, which the check uses: "
                             "name it as the exercise asks.").format(case=_shown(case.label), owner=missing[0], attribute=missing[1])
        return "type", _("on {case}: the check could not use what your code returned ({error}).").format(
            case=_shown(case.label), error=_exception_text(exc))
    name = type(exc).__name__
    text = _safe_str(exc, limit=400)
    if isinstance(exc, SystemExit):
        text = _("it called exit() or sys.exit(), which would stop the whole program; return a value instead")
    if text:
        return "exception", _("on {case} your code raised {error}: {text}").format(case=_shown(case.label), error=name, text=text) + _learner_frame(exc)
    return "exception", _("on {case} your code raised {error}").format(case=_shown(case.label), error=name) + _learner_frame(exc)


_LOOPS = {
    ast.For: N_("a for loop"), ast.AsyncFor: N_("a for loop"), ast.While: N_("a while loop"),
    ast.ListComp: N_("a list comprehension"), ast.SetComp: N_("a set comprehension"),
    ast.DictComp: N_("a dict comprehension"), ast.GeneratorExp: N_("a generator expression"),
}


def _python_loop(candidate: Any) -> tuple[str, int] | None:
    """(what, line) of the first Python loop in ``candidate``'s own source (a function, class or code object), or None."""
    try:
        lines, first = inspect.getsourcelines(candidate)
        tree = ast.parse(textwrap.dedent("".join(lines)))
    except Exception:  # a builtin, a lambda in a string, an object that lies about its source: nothing to read
        return None
    for node in ast.walk(tree):
        if type(node) in _LOOPS:
            return _LOOPS[type(node)], first + node.lineno - 1
    return None


def _missing_attribute(exc: BaseException) -> tuple[str, str] | None:
    """(type name, attribute) for "'Head' object has no attribute 'key'", else None."""
    obj, name = getattr(exc, "obj", None), getattr(exc, "name", None)
    if isinstance(exc, AttributeError) and isinstance(name, str) and obj is not None and not isinstance(obj, torch.Tensor):
        kind = type(obj).__name__
        return (kind if isinstance(obj, torch.nn.Module) else _("{type} object").format(type=kind), name)
    return None


def _frames(exc: BaseException) -> list[traceback.FrameSummary]:
    try:
        return list(traceback.extract_tb(exc.__traceback__))
    except Exception:
        return []


def _raised_in_check_code(exc: BaseException) -> bool:
    """Whether the innermost frame that is not library code belongs to the check (an ``observe``)."""
    for frame in reversed(_frames(exc)):
        path = str(Path(frame.filename).resolve()) if not frame.filename.startswith("<") else frame.filename
        if path.startswith(str(_CHECKS_DIR)):
            return Path(path).name not in ("core.py", "isolation.py")
        if path.startswith(str(_PACKAGE_DIR)) or path.startswith(_LIBRARY_DIRS):
            continue
        return False
    return False


def _learner_frame(exc: BaseException) -> str:
    """' (at line N of your cell: code)' for the innermost frame that lives in a notebook cell."""
    frames = [f for f in _frames(exc) if "ipykernel" in f.filename or f.filename.startswith("<")]
    if not frames:
        return ""
    frame = frames[-1]
    line = (frame.line or "").strip()
    return "\n" + _("  (at line {lineno} of your cell: `{line}`)").format(lineno=frame.lineno, line=line[:120]) if line else ""


def _safe_str(value: Any, limit: int = 100_000) -> str:
    """``str(value)``, cut to ``limit`` characters; never raises (an ``__str__`` may)."""
    try:
        text = str(value)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        return _("(its text cannot be shown: __str__ raised {error})").format(error=type(exc).__name__)
    return text if len(text) <= limit else text[:limit] + "..."


def _exception_text(exc: BaseException) -> str:
    text = _safe_str(exc, limit=500)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --------------------------------------------------------------------------- writing messages


def _shown(text: str) -> str:
    """A text marked with ``N_`` where it was defined (a hint, a case label, an exercise title), as shown now.

    Translated when it is shown, so that ``set_language`` works after the checks are imported.
    """
    return i18n._(text)


def _capped(message: str, lines: int = MESSAGE_LINES) -> str:
    """``message`` cut to ``lines`` lines of at most :data:`LINE_CHARS` characters."""
    kept = message.splitlines()[:lines] if message else [""]
    kept = [line if len(line) <= LINE_CHARS else line[: LINE_CHARS - 3] + "..." for line in kept]
    more = len(message.splitlines()) - len(kept)
    if more > 0:
        kept[-1] += " " + (_("(... 1 more line)") if more == 1 else _("(... {n} more lines)").format(n=more))
    return "\n".join(kept)


def _printed_note(printed: BoundedText) -> str:
    """A few lines of what the candidate printed, or ``""``."""
    text = printed.text
    if not text.strip():
        return ""
    lines = [line for line in text.splitlines() if line.strip()]
    shown = [f"  | {line[:120]}" for line in lines[:PRINTED_LINES]]
    more = len(lines) - len(shown) if not printed.dropped else max(printed.lines - len(shown), 1)
    tail = "\n  | ... " + (_("(1 more line)") if more == 1 else _("({n} more lines)").format(n=more)) if more > 0 else ""
    return "\n" + _("your code printed:") + "\n" + "\n".join(shown) + tail


def _replace(result: CheckResult, cls: type = CheckResult, **changes) -> CheckResult:
    values = {f.name: getattr(result, f.name) for f in fields(result)} | changes
    return cls(**values)


def _short(value: Any, limit: int = 60) -> str:
    try:
        text = repr(value)
    except KeyboardInterrupt:
        raise
    except BaseException:
        text = f"<{type(value).__name__} object>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(value: Any) -> str:
    """'a tensor of shape (2, 3)', 'a list of 5 items', ... for any value; never raises."""
    try:
        return _describe_unguarded(value)
    except KeyboardInterrupt:
        raise
    except BaseException:
        return _("a {type} object").format(type=type(value).__name__)


def _describe_unguarded(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, torch.Tensor):
        return _("a tensor of shape {shape}").format(shape=tuple(_plain_tensor(value).shape))
    if type(value).__module__ == "numpy" and hasattr(value, "shape"):
        return _("a numpy array of shape {shape}").format(shape=tuple(value.shape))
    if inspect.isgenerator(value):
        return _("a generator (is there a `yield` in your code? return the value instead)")
    if isinstance(value, (list, tuple, dict, set)):
        return _items(type(value).__name__, len(value))
    return f"{type(value).__name__} {_short(value)}"


def _number(value: Any) -> str:
    """A scalar tensor or number written briefly: ``0``, ``-1.5``, ``1e+03``, ``True``."""
    value = value.item() if isinstance(value, torch.Tensor) else value
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _significant(value: Any, other: Any) -> str:
    """``value`` with enough significant digits (4 at least, 17 at most) to tell it from ``other``."""
    value = value.item() if isinstance(value, torch.Tensor) else value
    other = other.item() if isinstance(other, torch.Tensor) else other
    if not isinstance(value, float) or not isinstance(other, (int, float)) or value == other:
        return _number(value)
    for digits in range(4, 18):
        if f"{value:.{digits}g}" != f"{float(other):.{digits}g}":
            return f"{value:.{digits}g}"
    return repr(value)


def _items(container: str, n: int) -> str:
    """'a list of 1 item', 'a tuple of 3 items', in the language in force."""
    container = {"list": _("list"), "tuple": _("tuple"), "dict": _("dict")}.get(container, container)
    if n == 1:
        return _("a {container} of 1 item").format(container=container)
    return _("a {container} of {n} items").format(container=container, n=n)


def _positions(n: int) -> str:
    """'1 position', '3 positions', in the language in force."""
    return _("1 position") if n == 1 else _("{n} positions").format(n=n)


# --------------------------------------------------------------------------- comparing observations


def compare(got: Any, expected: Any, atol: float = 1e-6, rtol: float = 1e-5, where: str = "the output") -> str | None:
    """Compare two observations. Returns None when they agree, else a sentence saying how they differ.

    Tensors are compared by type, shape, dtype, device, NaN/inf pattern and values;
    mappings key by key; tuples and lists item by item (lists of names by what is missing
    or unexpected); other values with ``==`` (floats with the tolerances).
    """
    difference = _compare(got, expected, atol, rtol, _shown(where), None)
    return None if difference is None else difference[1]


def _guarded_compare(got, expected, atol, rtol, locate=None) -> tuple[str, str] | None:
    """:func:`_compare` for a learner's value, whose methods may raise anything."""
    try:
        return _compare(got, expected, atol, rtol, _("the output"), locate)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        return "type", _("the check could not compare what your code returned ({what}) with the expected value ({error}).").format(
            what=_describe(got), error=_exception_text(exc))


def _compare(got, expected, atol, rtol, where, locate) -> tuple[str, str] | None:
    """(kind, sentence) saying how ``got`` differs from ``expected``, or None when they agree."""
    if got is None and expected is not None:
        return "returned none", _("{where} is None: did you forget a `return`?").format(where=where)
    if isinstance(expected, torch.Tensor):
        return _compare_tensors(got, expected, atol, rtol, where, locate)
    if isinstance(expected, Mapping):
        return _compare_mappings(got, expected, atol, rtol, where, locate)
    if isinstance(expected, (tuple, list)):
        return _compare_sequences(got, expected, atol, rtol, where, locate)
    if isinstance(expected, float) and isinstance(got, (int, float)):
        if math.isclose(got, expected, rel_tol=rtol, abs_tol=atol) or (math.isnan(got) and math.isnan(expected)):
            return None
        return "values", _("{where} is {got}, expected {expected}.").format(where=where, got=_significant(float(got), expected),
                                                                           expected=_significant(expected, float(got)))
    if _equal(got, expected):
        return None
    return "values", _("{where} is {got}, expected {expected}.").format(where=where, got=_short(got), expected=_short(expected))


def _equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:
        return False


def _plain_tensor(t: torch.Tensor) -> torch.Tensor:
    """A tensor subclass (a Parameter, or the learner's own) seen as a plain tensor."""
    if type(t) is torch.Tensor:
        return t
    with torch._C.DisableTorchFunctionSubclass():
        return torch.Tensor.as_subclass(t, torch.Tensor)


def _compare_tensors(got, expected, atol, rtol, where, locate) -> tuple[str, str] | None:
    if not isinstance(got, torch.Tensor):
        if type(got).__module__ == "numpy":
            return "type", _("{where} should be a tensor, but your code returned {what} (use torch operations, or "
                             "torch.from_numpy).").format(where=where, what=_describe(got))
        return "type", _("{where} should be a tensor, but your code returned {what}.").format(where=where, what=_describe(got))
    got = _plain_tensor(got)
    if got.shape != expected.shape:
        return "shape", _("{where} has shape {got}, expected {expected}.").format(where=where, got=tuple(got.shape),
                                                                                  expected=tuple(expected.shape))
    if got.dtype != expected.dtype:
        return "dtype", _("{where} has dtype {got}, expected {expected}.").format(where=where, got=got.dtype, expected=expected.dtype)
    if got.device != expected.device:
        return "device", _("{where} is on device {got}, expected {expected} (create new tensors on the input's device).").format(
            where=where, got=got.device, expected=expected.device)
    got_d, exp_d = got.detach(), expected.detach()
    if got_d.device.type == "meta":
        return None
    place = _placer(locate, tuple(got.shape))
    if got_d.is_floating_point() or got_d.is_complex():
        for name, test in (("NaN", torch.isnan), ("inf", torch.isinf)):
            bad = test(got_d) & ~test(exp_d)
            if bad.any():
                return "nan", _("{where} contains {name} at {positions} where the reference is finite (first at {first}).").format(
                    where=where, name=name, positions=_positions(int(bad.sum())), first=place(_index(bad)))
        if torch.allclose(got_d, exp_d, atol=atol, rtol=rtol, equal_nan=True):
            return None
        diff = (got_d - exp_d).abs().nan_to_num(0.0)
        i = _index(diff == diff.max())
        return "values", _("{where} differs from the reference by up to {diff} (at {place}: yours {got}, expected {expected}).").format(
            where=where, diff=f"{float(diff.max()):.3g}", place=place(i), got=_significant(got_d[i], exp_d[i]),
            expected=_significant(exp_d[i], got_d[i]))
    if torch.equal(got_d, exp_d):
        return None
    i = _index(got_d != exp_d)
    return "values", _("{where} differs from the reference at {positions} (first at {place}: yours {got}, expected {expected}).").format(
        where=where, positions=_positions(int((got_d != exp_d).sum())), place=place(i), got=_number(got_d[i]), expected=_number(exp_d[i]))


def _placer(locate, shape: tuple) -> Callable[[tuple], str]:
    def place(index: tuple) -> str:
        named = locate(shape, index) if locate is not None else None
        return named or _("index {index}").format(index=index)

    return place


def _compare_mappings(got, expected, atol, rtol, where, locate) -> tuple[str, str] | None:
    if not isinstance(got, Mapping):
        return "type", _("{where} should be a mapping, got {what}.").format(where=where, what=_describe(got))
    unexpected = [key for key in got if key not in expected]
    if unexpected:
        return "values", _("{where} has unexpected entries {unexpected}; expected only {expected}.").format(
            where=where, unexpected=", ".join(map(_short, unexpected)), expected=", ".join(map(repr, expected)))
    for key, value in expected.items():
        if key not in got:
            return "values", _("{where} is missing {key}.").format(where=where, key=repr(key))
        difference = _compare(got[key], value, atol, rtol, _shown(key) if isinstance(key, str) else str(key), locate)
        if difference is not None:
            return difference
    return None


def _compare_sequences(got, expected, atol, rtol, where, locate) -> tuple[str, str] | None:
    if not isinstance(got, (tuple, list)):
        return "type", _wrong_length(where, expected, got)
    if all(isinstance(e, str) for e in expected) and all(isinstance(g, str) for g in got):
        named = _names_missing_or_unexpected(got, expected, where)
        if named:
            return "values", named
    if len(got) != len(expected):
        return "values", _wrong_length(where, expected, got)
    for k, (g, e) in enumerate(zip(got, expected)):
        difference = _compare(g, e, atol, rtol, _("item {k} of {where}").format(k=k, where=where), locate)
        if difference is not None:
            return difference
    return None


def _wrong_length(where: str, expected: Sequence, got: Any) -> str:
    """'the output should be a tuple of 2 items, got a list of 3 items.'"""
    return _("{where} should be {expected}, got {what}.").format(where=where, expected=_items(type(expected).__name__, len(expected)),
                                                                 what=_describe(got))


def _names_missing_or_unexpected(got: Sequence[str], expected: Sequence[str], where: str) -> str | None:
    """'buffer names: 'running_mean' missing' for lists of names, or None when the same names are there."""
    missing = [e for e in expected if e not in got]
    unexpected = [g for g in got if g not in expected]
    parts = [_("{names} missing").format(names=", ".join(map(repr, missing)))] if missing else []
    parts += [_("{names} not expected").format(names=", ".join(map(_short, unexpected)))] if unexpected else []
    if not parts:
        return None
    return _("{where}: {parts} (expected {expected}).").format(where=where, parts=_("; ").join(parts), expected=list(expected))


def _index(mask: torch.Tensor) -> tuple[int, ...]:
    return tuple(int(i) for i in mask.nonzero()[0])


# --------------------------------------------------------------------------- the registry and check()


EXERCISES: dict[str, Exercise] = {}


def register(exercise: Exercise) -> Exercise:
    """Add ``exercise`` to :data:`EXERCISES` (ids are unique)."""
    if exercise.id in EXERCISES:
        raise ValueError(f"exercise id {exercise.id!r} is registered twice")
    EXERCISES[exercise.id] = exercise
    return exercise


def check(exercise_id: str, candidate: Any) -> CheckResult:
    """Check ``candidate`` against exercise ``exercise_id`` and show the result.

    Never raises (except ``KeyboardInterrupt``). Every attempt is recorded with
    ``course_utils.progress.record_attempt``.

    Args:
        exercise_id: e.g. ``"03.head"``; see ``EXERCISES`` for all of them.
        candidate: your function or class.

    Returns:
        The :class:`CheckResult`, already displayed in the notebook (so the cell does not
        show it a second time).
    """
    exercise = EXERCISES.get(exercise_id) if isinstance(exercise_id, str) else None
    result = exercise.check(candidate) if exercise is not None else _unknown_exercise(exercise_id)
    _record(result)
    _show(result)
    return _replace(result, ShownCheckResult)


def _unknown_exercise(exercise_id: Any) -> CheckResult:
    if not isinstance(exercise_id, str):
        message = _("the exercise id must be a string such as '03.head', got {what}.").format(what=_describe(exercise_id))
        return CheckResult(_short(exercise_id, 30), False, message, True, "unknown exercise")
    by_name = {k[3:]: k for k in EXERCISES}  # "head" -> "03.head"
    close = difflib.get_close_matches(exercise_id, EXERCISES, n=3, cutoff=0.6)
    close += [by_name[n] for n in difflib.get_close_matches(exercise_id, by_name, n=3, cutoff=0.6) if by_name[n] not in close]
    same_notebook = [k for k in sorted(EXERCISES) if k[:3] == exercise_id[:3]]
    message = _("no exercise with id {id}").format(id=_short(exercise_id, 40))
    if close:
        message += _("; did you mean {ids}?").format(ids=_(" or ").join(map(repr, close[:3])))
    if same_notebook:
        message += "\n" + _("the exercises of notebook {notebook}: {ids}.").format(notebook=exercise_id[:2], ids=", ".join(same_notebook))
    elif not close:
        message += _("; ids look like {ids}, ... (see EXERCISES).").format(ids=", ".join(sorted(EXERCISES)[:3]))
    return CheckResult(_short(exercise_id, 30).strip("'"), False, _capped(message), True, "unknown exercise")


def _record(result: CheckResult) -> None:
    """Record the attempt for the learner's progress table; never raises, never waits long."""
    try:
        with isolation.time_limit(RECORD_LIMIT_S):
            importlib.import_module("course_utils.progress").record_attempt(result)
    except BaseException:  # noqa: BLE001 - recording must never break a check
        pass


def _show(result: CheckResult) -> None:
    try:
        from IPython.display import display

        display(result)
    except ImportError:  # pragma: no cover - IPython is always installed with the course
        print(result)


def exercises_of(notebook: str) -> Iterable[Exercise]:
    """The exercises of notebook ``"03"`` (or any id prefix), in id order."""
    return [EXERCISES[k] for k in sorted(EXERCISES) if k.startswith(notebook)]
