"""Hostile and clumsy learner code, over EVERY registered exercise.

Each candidate below is checked against every exercise: the check must not raise, must
return within its limit, must leave the notebook's global state as it was, and must answer
with a message of the candidate's own kind, a few lines long. Also: a correct reference
passes whatever state the learner left behind, and leaves the learner's RNGs untouched.
"""

import inspect
import random
import signal
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from course_utils.checks import EXERCISES, CheckResult, check, core, isolation

EXERCISE_IDS = sorted(EXERCISES)
LIMIT_S = 0.25  # the time limit for the loops here, to keep the suite fast
MAX_MESSAGE_CHARS = 2500
MAX_MESSAGE_LINES = 9


# --- the hostile candidates -------------------------------------------------------------------


class HostileError(BaseException):
    """A BaseException that is neither an Exception nor KeyboardInterrupt."""


class UnprintableError(Exception):
    def __str__(self):
        raise RuntimeError("no text for you")


class UncomparableResult:
    def __eq__(self, other):
        raise RuntimeError("== refuses")

    __hash__ = object.__hash__


class HostileTensor(torch.Tensor):
    """A tensor subclass on which every torch function raises."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        raise RuntimeError("this tensor refuses every torch function")


def _raising(exc):
    def candidate(*args, **kwargs):
        raise exc

    return candidate


def _returning(make):
    def candidate(*args, **kwargs):
        return make()

    return candidate


def _after(change):
    """A candidate that changes global state, then returns None."""

    def candidate(*args, **kwargs):
        change()

    return candidate


def _loop_for_ever(*args, **kwargs):
    while True:
        pass


def _loop_catching_every_stop(*args, **kwargs):
    while True:
        try:
            time.sleep(0.01)
        except BaseException:  # noqa: BLE001 - the clumsiest learner code there is
            pass


def _consume_rngs():
    torch.rand(5), np.random.rand(5), random.random()


def _disable_sdpa_backends():
    torch.backends.cuda.enable_math_sdp(False)
    torch.backends.cuda.enable_flash_sdp(False)
    torch.backends.cuda.enable_mem_efficient_sdp(False)


def _enter_sdpa_kernel_for_good():
    torch.nn.attention.sdpa_kernel([torch.nn.attention.SDPBackend.EFFICIENT_ATTENTION], set_priority=True).__enter__()


def _print_10_mb():
    print("spam spam spam spam\n" * 500_000)  # 10 MB, half a million lines


ANY_FAILURE = None  # any kind except "passed" and "check fault"

#: name -> (candidate, the kinds its message may have, words the message contains)
HOSTILE = {
    "SystemExit": (_raising(SystemExit(3)), {"exception"}, "SystemExit"),
    "GeneratorExit": (_raising(GeneratorExit()), {"exception"}, "GeneratorExit"),
    "BaseException subclass": (_raising(HostileError("hostile")), {"exception"}, "HostileError: hostile"),
    "exception whose __str__ raises": (_raising(UnprintableError()), {"exception"}, "UnprintableError"),
    "exception with a 10 MB text": (_raising(ValueError("x" * 10_000_000)), {"exception"}, "ValueError: xxx"),
    "result whose __eq__ raises": (_returning(UncomparableResult), {"type", "values"}, "UncomparableResult"),
    "tensor subclass": (_returning(lambda: torch.zeros(3).as_subclass(HostileTensor)), ANY_FAILURE, ""),
    "generator": (_returning(lambda: (i for i in range(3))), {"type", "values"}, "generator"),
    "numpy array": (_returning(lambda: np.zeros(3)), {"type", "values"}, "n"),  # 'numpy' or 'ndarray'
    "returns None": (_returning(lambda: None), {"returned none"}, "None"),
    "loops for ever": (_loop_for_ever, {"timeout"}, "stopped after 0.25 s"),
    "loops for ever, catching every stop": (_loop_catching_every_stop, {"timeout"}, "stopped after"),
    "turns grad off": (_after(lambda: torch.set_grad_enabled(False)), {"returned none"}, "None"),
    "sets the default dtype": (_after(lambda: torch.set_default_dtype(torch.float64)), {"returned none"}, "None"),
    "sets the default device": (_after(lambda: torch.set_default_device("meta")), {"returned none"}, "None"),
    "reseeds the RNGs": (_after(lambda: (torch.manual_seed(1), np.random.seed(1), random.seed(1))), {"returned none"}, "None"),
    "consumes the RNGs": (_after(_consume_rngs), {"returned none"}, "None"),
    "changes the thread count": (_after(lambda: torch.set_num_threads(7)), {"returned none"}, "None"),
    "enables deterministic algorithms": (_after(lambda: torch.use_deterministic_algorithms(True)), {"returned none"}, "None"),
    "enables anomaly mode": (_after(lambda: torch.autograd.set_detect_anomaly(True)), {"returned none"}, "None"),
    "disables the attention backends": (_after(_disable_sdpa_backends), {"returned none"}, "None"),
    "enters sdpa_kernel and never leaves": (_after(_enter_sdpa_kernel_for_good), {"returned none"}, "None"),
    "flushes denormals": (_after(lambda: torch.set_flush_denormal(True)), {"returned none"}, "None"),
    "sets the recursion limit": (_after(lambda: sys.setrecursionlimit(200)), {"returned none"}, "None"),
    "turns warnings into errors": (_after(lambda: warnings.simplefilter("error")), {"returned none"}, "None"),
    "prints 10 MB": (_after(_print_10_mb), {"returned none"}, "your code printed:\n  | spam spam spam spam"),
}


def _class_candidates(reference):
    """Hostile classes for an exercise whose solution is a class."""

    class NoneForward(reference):
        def forward(self, *args, **kwargs):
            return None

    return {
        "forward returns None": (NoneForward, {"returned none"}, "None"),
        "a module instance": (nn.Linear(2, 2), {"type"}, "pass the class itself"),
    }


def _candidates(exercise):
    found = dict(HOSTILE)
    if inspect.isclass(exercise.reference):
        found |= _class_candidates(exercise.reference)
    return found


def _cases():
    return [(ex_id, name) for ex_id in EXERCISE_IDS for name in _candidates(EXERCISES[ex_id])]


# --- the state a check must leave alone ---------------------------------------------------------


def _state():
    """Everything a check must leave as it found it, in a comparable form."""
    s = isolation.snapshot()
    numpy_rng = s.numpy_rng
    return {
        "grad mode": s.grad_enabled,
        "default dtype": s.default_dtype,
        "default device": s.default_device,
        "threads": s.num_threads,
        "deterministic": (s.deterministic, s.deterministic_warn_only),
        "anomaly": (s.anomaly, s.anomaly_check_nan),
        "matmul precision": s.matmul_precision,
        "recursion limit": s.recursion_limit,
        "attention backends": (s.sdp_backends, s.sdp_priority, s.sdp_math_reduced_precision),
        "flush denormal": s.flush_denormal,
        "torch RNG": s.torch_rng.tolist(),
        "numpy RNG": (numpy_rng[0], numpy_rng[1].tolist(), *numpy_rng[2:]),
        "random RNG": s.python_rng,
        "warning filters": list(warnings.filters),
        "stdout, stderr": (sys.stdout, sys.stderr),
        "SIGALRM handler": signal.getsignal(signal.SIGALRM),
        "timer": signal.getitimer(signal.ITIMER_REAL),
        "threads running": threading.active_count(),
    }


def _assert_same_state(before, after, what):
    changed = [key for key in before if before[key] != after[key]]
    assert not changed, f"{what} leaked: {changed}"


def _assert_short(result):
    assert isinstance(result, CheckResult)
    assert len(result.message) <= MAX_MESSAGE_CHARS, f"a message of {len(result.message)} characters"
    assert result.message.count("\n") < MAX_MESSAGE_LINES, result.message


# --- every hostile candidate x every exercise -------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def _warm_up_deterministic_mode():
    """The first torch.use_deterministic_algorithms(True) imports for seconds: not the candidate's fault."""
    with isolation.isolated():
        torch.use_deterministic_algorithms(True)
    yield


@pytest.mark.parametrize("ex_id,name", _cases())
def test_hostile_candidate_gets_its_own_message_and_leaks_nothing(ex_id, name):
    exercise = EXERCISES[ex_id]
    candidate, kinds, words = _candidates(exercise)[name]
    before = _state()
    start = time.monotonic()
    result = exercise.check(candidate, time_limit=LIMIT_S if name.startswith("loops") else None)
    elapsed = time.monotonic() - start
    _assert_same_state(before, _state(), f"{ex_id} with a candidate that {name}")
    _assert_short(result)
    assert not result.passed and result.kind != "check fault", f"{ex_id}, {name}: {result.message}"
    assert "the check itself failed" not in result.message
    if kinds is not None:
        assert result.kind in kinds, f"{ex_id}, {name}: kind {result.kind!r}: {result.message}"
    assert words in result.message, f"{ex_id}, {name}: {result.message}"
    if result.kind == "timeout":
        assert elapsed < LIMIT_S + 3, f"{ex_id}: stopped after {elapsed:.1f} s"


def test_the_hostile_suite_covers_every_exercise():
    tried = {ex_id for ex_id, _ in _cases()}
    assert tried == set(EXERCISES)
    assert len(HOSTILE) >= 20


# --- correct code, whatever the learner did before ----------------------------------------------


def _hostile_global_state():
    torch.set_grad_enabled(False)
    torch.set_default_dtype(torch.float64)
    torch.use_deterministic_algorithms(True)
    torch.autograd.set_detect_anomaly(True)
    torch.set_num_threads(1)
    torch.backends.cuda.enable_math_sdp(False)
    torch.backends.cuda.enable_flash_sdp(False)
    torch._C._set_sdp_priority_order([2, 0, 1, 3, 4])
    torch.set_flush_denormal(True)
    warnings.simplefilter("error")


@pytest.mark.parametrize("ex_id", EXERCISE_IDS)
def test_a_correct_solution_passes_whatever_state_the_learner_left(ex_id):
    exercise = EXERCISES[ex_id]
    with isolation.isolated(), warnings.catch_warnings():
        _hostile_global_state()
        before = _state()
        result = exercise.check(exercise.reference)
        after = _state()
    assert result.passed, (f"{ex_id} after set_grad_enabled(False), float64, deterministic, anomaly, attention backends off, "
                           f"flush-denormal: {result.message}")
    _assert_same_state(before, after, f"{ex_id}'s check")


@pytest.mark.parametrize("ex_id", EXERCISE_IDS)
def test_a_correct_check_leaves_the_learners_rngs_where_they_were(ex_id):
    exercise = EXERCISES[ex_id]

    def draws():
        return torch.rand(3).tolist(), np.random.rand(3).tolist(), random.random()

    with isolation.isolated():
        torch.manual_seed(123), np.random.seed(123), random.seed(123)
        draws()  # the learner's generators are somewhere in their streams
        assert exercise.check(exercise.reference).passed
        after_check = draws()
        torch.manual_seed(123), np.random.seed(123), random.seed(123)
        draws()
        assert after_check == draws(), f"{ex_id}: the check moved the learner's random generators"


# --- the mechanisms -----------------------------------------------------------------------------


def test_keyboard_interrupt_goes_through_and_state_is_restored():
    exercise = EXERCISES["00.center"]

    def interrupted(x):
        torch.set_grad_enabled(False)
        raise KeyboardInterrupt

    before = _state()
    with pytest.raises(KeyboardInterrupt):
        exercise.check(interrupted)
    _assert_same_state(before, _state(), "an interrupted check")


def test_the_time_limit_gives_back_an_earlier_alarm_handler_and_timer():
    def earlier(signum, frame):
        pass

    previous = signal.signal(signal.SIGALRM, earlier)
    signal.setitimer(signal.ITIMER_REAL, 100.0)
    try:
        result = EXERCISES["00.center"].check(_loop_for_ever, time_limit=0.1)
        assert result.kind == "timeout"
        assert signal.getsignal(signal.SIGALRM) is earlier
        assert 98 < signal.getitimer(signal.ITIMER_REAL)[0] <= 100
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


WATCHDOG_IN_A_THREAD = """
import threading, time
from course_utils.checks import EXERCISES

def loop_for_ever(*args, **kwargs):
    while True:
        pass

results = []
worker = threading.Thread(target=lambda: results.append(EXERCISES["00.center"].check(loop_for_ever, time_limit=0.2)))
start = time.monotonic()
worker.start()
worker.join(timeout=10)
assert not worker.is_alive() and time.monotonic() - start < 5
assert results[0].kind == "timeout" and "stopped after 0.2 s" in results[0].message, results[0]
time.sleep(0.1)
assert not [t for t in threading.enumerate() if t.name == "check time limit"], "the watchdog kept running"
print("ok")
"""


def test_outside_the_main_thread_a_watchdog_stops_the_loop():
    """In a process of its own: after the watchdog has stopped code in a thread, a profile function
    set later in the main thread can hang there (CPython 3.11), which would hang the tests after it."""
    done = subprocess.run([sys.executable, "-c", WATCHDOG_IN_A_THREAD], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_the_default_limit_is_a_few_seconds_and_each_exercise_can_set_its_own():
    assert 1 <= core.DEFAULT_TIME_LIMIT_S <= 10
    assert all(exercise.time_limit > 0 for exercise in EXERCISES.values())


def test_every_check_is_recorded_and_a_failing_recorder_changes_nothing(monkeypatch):
    progress = pytest.importorskip("course_utils.progress")
    monkeypatch.setattr("IPython.display.display", lambda obj: None)
    recorded = []
    monkeypatch.setattr(progress, "record_attempt", recorded.append)
    result = check("00.center", EXERCISES["00.center"].reference)
    assert [r.kind for r in recorded] == ["passed"] and recorded[0].exercise_id == "00.center" and result.passed

    def broken(result):
        raise SystemExit("the recorder fails")

    monkeypatch.setattr(progress, "record_attempt", broken)
    assert check("00.center", EXERCISES["00.center"].reference).passed

    monkeypatch.setattr(core, "RECORD_LIMIT_S", 0.2)
    monkeypatch.setattr(progress, "record_attempt", lambda result: time.sleep(30))
    start = time.monotonic()
    assert check("00.center", EXERCISES["00.center"].reference).passed
    assert time.monotonic() - start < 5


def test_in_a_jupyter_kernel_the_limit_stops_a_loop_and_nothing_leaks():
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    code = """
import torch
from course_utils.checks import EXERCISES, check
torch.set_grad_enabled(False)
def center(x):
    print("looping")
    while True:
        pass
stopped = EXERCISES["00.center"].check(center, time_limit=0.3)
passed = check("00.center", EXERCISES["00.center"].reference)
print(stopped.kind, "|", stopped.message.splitlines()[0], "|", passed.kind, torch.is_grad_enabled())
"""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(core._PACKAGE_DIR.parent)}}).execute()
    printed = "".join(o.get("text", "") for o in nb.cells[0].outputs if o.output_type == "stream")
    assert printed.strip().endswith(
        "timeout | on a 1-D tensor of 5 values: your code was stopped after 0.3 s; does a loop in it never end? | passed False")
    shown = [o["data"]["text/plain"] for o in nb.cells[0].outputs if o.output_type == "display_data"]
    assert shown == ["✅ 00.center: all 3 tests passed."]


def test_the_learners_queued_cuda_seed_survives_a_check_that_seeds():
    """Before CUDA starts, torch.manual_seed queues a seed for it; a check's own seeding must not replace the learner's."""
    tracker = torch.cuda._lazy_seed_tracker
    if torch.cuda.is_initialized():
        pytest.skip("CUDA already started: its RNG states are saved and restored directly")
    with isolation.isolated():
        torch.manual_seed(42)
        queued = (tracker.manual_seed_all_cb, tracker.manual_seed_cb, list(tracker.call_order))
        assert EXERCISES["03.head"].check(EXERCISES["03.head"].reference).passed  # its observe seeds torch
        assert (tracker.manual_seed_all_cb, tracker.manual_seed_cb, list(tracker.call_order)) == queued
