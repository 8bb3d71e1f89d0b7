"""Keeping a learner's code and a check apart: global state, a time limit, captured prints.

A check runs code that a learner has just typed. Whatever that code does, the check must
return, and the notebook must be left as it was:

- :func:`isolated` saves the global state that torch, numpy and ``random`` keep (grad mode,
  default dtype and device, RNG states, thread count, deterministic and anomaly modes, the
  scaled-dot-product-attention backend switches, flush-denormal mode, ...)
  and restores it afterwards, in both directions: a learner's earlier
  ``torch.set_grad_enabled(False)`` does not reach the check, and a candidate that turns
  grad off does not leak it. :func:`prepare` puts the clean state a check runs in.
- :func:`time_limit` stops code that runs too long by raising :class:`CaseTimeout` in it.
- :func:`captured_output` keeps what the code prints, up to a bound.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import random
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

#: How often a stopped candidate is stopped again, in case it caught the first stop.
_REPEAT_S = 0.05


class CaseTimeout(BaseException):
    """Raised inside code that runs past its time limit.

    A ``BaseException``, like ``KeyboardInterrupt``, so that ``except Exception`` in the
    learner's code does not swallow it.
    """


# --------------------------------------------------------------------------- global state


@dataclass(frozen=True)
class Snapshot:
    """The global state a check saves before it runs and restores after."""

    grad_enabled: bool
    default_dtype: torch.dtype
    default_device: torch.device
    num_threads: int
    deterministic: bool
    deterministic_warn_only: bool
    anomaly: bool
    anomaly_check_nan: bool
    matmul_precision: str
    recursion_limit: int
    sdp_backends: tuple  # (name, enabled) for each switch of F.scaled_dot_product_attention's backends
    sdp_priority: tuple
    sdp_math_reduced_precision: bool
    flush_denormal: bool
    torch_rng: torch.Tensor
    cuda: Any  # the CUDA RNG states, or the seeds queued before CUDA starts
    numpy_rng: Any
    python_rng: Any


def snapshot() -> Snapshot:
    """Save the global state that checked code can change."""
    return Snapshot(
        grad_enabled=torch.is_grad_enabled(),
        default_dtype=torch.get_default_dtype(),
        default_device=torch.get_default_device(),
        num_threads=torch.get_num_threads(),
        deterministic=torch.are_deterministic_algorithms_enabled(),
        deterministic_warn_only=torch.is_deterministic_algorithms_warn_only_enabled(),
        anomaly=torch.is_anomaly_enabled(),
        anomaly_check_nan=torch.is_anomaly_check_nan_enabled(),
        matmul_precision=torch.get_float32_matmul_precision(),
        recursion_limit=sys.getrecursionlimit(),
        sdp_backends=_sdp_backends(),
        sdp_priority=tuple(torch._C._get_sdp_priority_order()),
        sdp_math_reduced_precision=torch._C._get_math_sdp_allow_fp16_bf16_reduction(),
        flush_denormal=flush_denormal_enabled(),
        torch_rng=torch.get_rng_state(),
        cuda=_cuda_rng_state(),
        numpy_rng=_numpy().random.get_state() if _numpy() else None,
        python_rng=random.getstate(),
    )


def prepare(saved: Snapshot, seed: int) -> None:
    """Put the clean state a check runs in, with every global RNG seeded from ``seed``.

    Grad mode on, float32 default dtype on the CPU, no deterministic or anomaly mode,
    full float32 matmul precision, PyTorch's default attention backends and priority, no
    flushing of denormal numbers; the thread count and recursion limit the learner had.
    """
    torch.set_grad_enabled(True)
    _set_if_changed(torch.get_default_dtype, torch.set_default_dtype, torch.float32)
    if torch.get_default_device() != torch.device("cpu"):
        torch.set_default_device(None)
    _set_if_changed(torch.get_num_threads, torch.set_num_threads, saved.num_threads)
    if torch.are_deterministic_algorithms_enabled():
        torch.use_deterministic_algorithms(False)
    if torch.is_anomaly_enabled():
        torch.set_anomaly_enabled(False, True)
    _set_if_changed(torch.get_float32_matmul_precision, torch.set_float32_matmul_precision, "highest")
    _set_if_changed(sys.getrecursionlimit, sys.setrecursionlimit, saved.recursion_limit)
    _set_sdp(_SDP_DEFAULTS, _SDP_DEFAULT_PRIORITY, _SDP_DEFAULT_REDUCED_PRECISION)
    _set_if_changed(flush_denormal_enabled, torch.set_flush_denormal, False)
    reseed(seed)


def reseed(seed: int) -> None:
    """Seed torch's CPU generator (and CUDA's once started), numpy's and ``random``'s.

    ``torch.manual_seed`` is avoided on purpose: before CUDA starts it queues a seed for
    it, which would replace the learner's own queued seed.
    """
    torch.default_generator.manual_seed(seed)
    if torch.cuda.is_initialized():
        torch.cuda.manual_seed_all(seed)
    if _numpy():
        _numpy().random.seed(seed % 2**32)
    random.seed(seed)


def restore(saved: Snapshot) -> None:
    """Put back everything :func:`snapshot` saved."""
    torch.set_grad_enabled(saved.grad_enabled)
    _set_if_changed(torch.get_default_dtype, torch.set_default_dtype, saved.default_dtype)
    if torch.get_default_device() != saved.default_device:
        torch.set_default_device(None if saved.default_device == torch.device("cpu") else saved.default_device)
    _set_if_changed(torch.get_num_threads, torch.set_num_threads, saved.num_threads)
    if (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()) != (
        saved.deterministic,
        saved.deterministic_warn_only,
    ):
        torch.use_deterministic_algorithms(saved.deterministic, warn_only=saved.deterministic_warn_only)
    if (torch.is_anomaly_enabled(), torch.is_anomaly_check_nan_enabled()) != (saved.anomaly, saved.anomaly_check_nan):
        torch.set_anomaly_enabled(saved.anomaly, saved.anomaly_check_nan)
    _set_if_changed(torch.get_float32_matmul_precision, torch.set_float32_matmul_precision, saved.matmul_precision)
    _set_if_changed(sys.getrecursionlimit, sys.setrecursionlimit, saved.recursion_limit)
    _set_sdp(saved.sdp_backends, saved.sdp_priority, saved.sdp_math_reduced_precision)
    _set_if_changed(flush_denormal_enabled, torch.set_flush_denormal, saved.flush_denormal)
    torch.set_rng_state(saved.torch_rng)
    _restore_cuda_rng(saved.cuda)
    if saved.numpy_rng is not None:
        _numpy().random.set_state(saved.numpy_rng)
    random.setstate(saved.python_rng)


@contextlib.contextmanager
def isolated() -> Iterator[Snapshot]:
    """Save the global state on entry and restore it on exit, whatever happens inside."""
    saved = snapshot()
    try:
        yield saved
    finally:
        restore(saved)


def _set_if_changed(get, set_, value) -> None:
    if get() != value:
        set_(value)


#: The switches of F.scaled_dot_product_attention's backends (``torch.backends.cuda.enable_*_sdp``,
#: ``torch.nn.attention.sdpa_kernel``): global, and read by the CPU's dispatch too.
_SDP_SWITCHES = tuple(name for name in ("cudnn", "flash", "math", "mem_efficient", "overrideable", "fa3")
                      if hasattr(torch._C, f"_get_{name}_sdp_enabled"))


def _sdp_backends() -> tuple:
    return tuple((name, getattr(torch._C, f"_get_{name}_sdp_enabled")()) for name in _SDP_SWITCHES)


def _set_sdp(backends: tuple, priority: tuple, reduced_precision: bool) -> None:
    for name, enabled in backends:
        if getattr(torch._C, f"_get_{name}_sdp_enabled")() != enabled:
            getattr(torch._C, f"_set_sdp_use_{name}")(enabled)
    _set_if_changed(lambda: tuple(torch._C._get_sdp_priority_order()), lambda p: torch._C._set_sdp_priority_order(list(p)), priority)
    _set_if_changed(torch._C._get_math_sdp_allow_fp16_bf16_reduction, torch._C._set_math_sdp_allow_fp16_bf16_reduction,
                    reduced_precision)


def flush_denormal_enabled() -> bool:
    """Whether ``torch.set_flush_denormal(True)`` is in force (torch has no getter: a denormal is multiplied by 1)."""
    return bool((torch.tensor([1e-40], dtype=torch.float32) * 1.0)[0] == 0)


#: PyTorch's defaults (a check runs with these): every backend allowed but the opt-in FlashAttention-3.
_SDP_DEFAULTS = tuple((name, name != "fa3") for name in _SDP_SWITCHES)
_SDP_DEFAULT_PRIORITY = tuple(torch._C._get_sdp_priority_order())
_SDP_DEFAULT_REDUCED_PRECISION = torch._C._get_math_sdp_allow_fp16_bf16_reduction()


def _numpy():
    """numpy if it is already imported (a check does not import it for nothing), else None."""
    return sys.modules.get("numpy")


def _cuda_rng_state() -> Any:
    if torch.cuda.is_initialized():
        return ("states", torch.cuda.get_rng_state_all())
    tracker = torch.cuda._lazy_seed_tracker
    return ("queued", tracker.manual_seed_all_cb, tracker.manual_seed_cb, list(tracker.call_order))


def _restore_cuda_rng(saved: Any) -> None:
    if saved[0] == "states":
        torch.cuda.set_rng_state_all(saved[1])
        return
    _, seed_all, seed, order = saved
    if torch.cuda.is_initialized():  # CUDA started during the check: replay the learner's queued seeds
        for call in order:
            if call is not None:
                call[0]()
        return
    tracker = torch.cuda._lazy_seed_tracker
    tracker.manual_seed_all_cb, tracker.manual_seed_cb, tracker.call_order = seed_all, seed, order


# --------------------------------------------------------------------------- time limit


def time_limit_mechanism() -> str:
    """How :func:`time_limit` works here: ``"signal"`` (SIGALRM) or ``"watchdog"`` (a thread)."""
    main = threading.current_thread() is threading.main_thread()
    return "signal" if main and hasattr(signal, "setitimer") else "watchdog"


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`CaseTimeout` in the code of the ``with`` block after ``seconds``.

    In the main thread on Linux and macOS (a Jupyter kernel runs cells there) a SIGALRM
    timer raises it, again every few hundredths of a second, and from the second time at the
    next line of the code too, so that a bare ``except:`` in a loop cannot swallow it; any
    timer, handler and trace function set before are put back. Elsewhere
    (Windows, or a check called from another thread) a watchdog thread raises it in the
    checked thread: that stops Python code, but a single long call into C (``time.sleep``,
    a huge matrix product) is stopped only when it returns. Either way nothing is left
    running when the block exits. ``None`` or 0: no limit.
    """
    if not seconds or seconds <= 0:
        yield
    elif time_limit_mechanism() == "signal":
        with _alarm(seconds):
            yield
    else:
        with _watchdog(seconds):
            yield


@contextlib.contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    alarms = 0
    traced: list = []  # (frame, its trace function before) for every frame the stop was set on

    def on_alarm(signum, frame):
        nonlocal alarms
        alarms += 1
        if alarms > 1:  # the first stop was caught (``except:`` in a loop): stop at its next line too
            traced.extend(_stop_at_next_line(frame))
        raise CaseTimeout

    previous_trace = sys.gettrace()
    previous_handler = signal.signal(signal.SIGALRM, on_alarm)
    previous_delay, previous_interval = signal.setitimer(signal.ITIMER_REAL, seconds, _REPEAT_S)
    start = time.monotonic()
    try:
        yield
    finally:
        _uninterrupted(lambda: signal.setitimer(signal.ITIMER_REAL, 0))
        _uninterrupted(lambda: sys.settrace(previous_trace))
        for traced_frame, before in traced:  # frames that outlive the block (the caller's) must not keep the stop
            traced_frame.f_trace = before
        _uninterrupted(lambda: signal.signal(signal.SIGALRM, previous_handler if previous_handler is not None else signal.SIG_DFL))
        if previous_delay > 0:  # someone else's timer was running: let it go on
            left = max(previous_delay - (time.monotonic() - start), 1e-6)
            signal.setitimer(signal.ITIMER_REAL, left, previous_interval)


_OWN_FILES = {__file__, contextlib.__file__, str(Path(__file__).with_name("core.py"))}


def _stop_at_next_line(frame) -> list:
    """Raise :class:`CaseTimeout` at the next line the checked code runs, even inside an ``except``.

    A trace function that raises is switched off by Python after that one raise. The
    check's own frames are not traced, so they can handle the stop. Returns the frames traced,
    each with the trace function it had, for the caller to put back.
    """

    def stop(frame, event, arg):
        if frame.f_code.co_filename in _OWN_FILES:
            return None
        if event != "line":  # calls, returns, the stop itself passing by: raise at the next line instead
            return stop
        raise CaseTimeout

    sys.settrace(stop)
    traced = []
    while frame is not None:
        if frame.f_code.co_filename not in _OWN_FILES:
            traced.append((frame, frame.f_trace))
            frame.f_trace = stop
        frame = frame.f_back
    return traced


@contextlib.contextmanager
def _watchdog(seconds: float) -> Iterator[None]:
    target = threading.get_ident()
    stop = threading.Event()
    lock = threading.Lock()

    def watch():
        delay = seconds
        while not stop.wait(delay):
            with lock:
                if stop.is_set():
                    return
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(target), ctypes.py_object(CaseTimeout))
            delay = _REPEAT_S

    watcher = threading.Thread(target=watch, name="check time limit", daemon=True)
    watcher.start()
    try:
        yield
    finally:

        def disarm():
            with lock:
                stop.set()
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(target), None)  # drop one still pending

        _uninterrupted(disarm)
        _uninterrupted(watcher.join)


def _uninterrupted(step) -> None:
    """Run ``step`` to completion even if a late :class:`CaseTimeout` lands in it."""
    while True:
        try:
            step()
            return
        except CaseTimeout:
            continue


# --------------------------------------------------------------------------- the calls code makes


class CallRecorder:
    """Inside ``with``, notes every Python function that runs (through any name: alias, helper, getattr).

    ``all_codes`` holds the code object of each; ``codes`` those outside ``library`` (the
    directories of Python's, torch's and the course's own code), in the order first called:
    the learner's code. The profile function in force before is put back afterwards.
    """

    def __init__(self, library: tuple[str, ...] = ()):
        self.library = tuple(library)
        self.all_codes: set = set()
        self.codes: list = []
        self._previous = None

    def _profile(self, frame, event, arg):
        if event == "call":
            code = frame.f_code
            if code not in self.all_codes:
                self.all_codes.add(code)
                name = code.co_filename
                if not name.startswith("<frozen") and not name.startswith(self.library):
                    self.codes.append(code)

    def called(self, function: Any) -> bool:
        """Whether ``function`` (a Python function) ran inside the block."""
        return getattr(function, "__code__", None) in self.all_codes

    def __enter__(self) -> CallRecorder:
        self._previous = sys.getprofile()
        sys.setprofile(self._profile)
        return self

    def __exit__(self, *exc_info) -> None:
        _uninterrupted(lambda: sys.setprofile(self._previous))


# --------------------------------------------------------------------------- printed output


class BoundedText(io.TextIOBase):
    """A text stream that keeps the first ``limit`` characters written to it and counts the rest."""

    def __init__(self, limit: int = 4000):
        super().__init__()
        self.limit = limit
        self.kept: list[str] = []
        self.size = 0
        self.dropped = 0
        self.lines = 0

    def writable(self) -> bool:
        return True

    def write(self, text: Any) -> int:
        text = text if isinstance(text, str) else str(text)
        room = max(self.limit - self.size, 0)
        self.kept.append(text[:room])
        self.size += min(len(text), room)
        self.dropped += max(len(text) - room, 0)
        self.lines += text.count("\n")
        return len(text)

    @property
    def text(self) -> str:
        return "".join(self.kept)


@contextlib.contextmanager
def captured_output(stream: BoundedText) -> Iterator[BoundedText]:
    """Send ``print`` output and stderr (warnings included) to ``stream`` inside the block."""
    with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
        yield stream
