"""Every check's attempt, recorded for the learner's own progress table and a workshop's board.

``record_attempt(result)`` is called by ``course_utils.checks.check`` after every check. It
appends one line to a file in the learner's home (``~/.attention-course/progress.jsonl``, or the
path in ``$COURSE_PROGRESS_FILE``) and returns: it never raises and never waits on the network.

``course_utils.progress()`` shows that file as a table: notebook x exercise, solved / tried /
not yet.

On a JupyterHub whose progress service is running, the hub puts ``$COURSE_PROGRESS_URL`` and
``$JUPYTERHUB_API_TOKEN`` in the learner's environment. Attempts are then also sent to the
service by a background thread (:class:`Outbox`), with a short timeout. An attempt the service
has not confirmed stays pending in the local file and is sent again later; every attempt carries
a unique id, so the service stores each one once however often it is sent.
"""

from __future__ import annotations

import html
import json
import os
import sys
import threading
import time
import types
import urllib.request
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import i18n
from .i18n import _

PROGRESS_FILE_ENV = "COURSE_PROGRESS_FILE"
SERVICE_URL_ENV = "COURSE_PROGRESS_URL"
TOKEN_ENV = "JUPYTERHUB_API_TOKEN"
MESSAGE_LIMIT = 500  # characters of a check's message kept per attempt

SOLVED, TRIED, NOT_YET = "solved", "tried", "not yet"
ICONS = {SOLVED: "✅", TRIED: "❌", NOT_YET: "·"}


def progress_file() -> Path:
    """Where this learner's attempts are kept: ``$COURSE_PROGRESS_FILE`` or ``~/.attention-course/progress.jsonl``."""
    override = os.environ.get(PROGRESS_FILE_ENV)
    return Path(override) if override else Path.home() / ".attention-course" / "progress.jsonl"


# --- recording -------------------------------------------------------------------------------


def record_attempt(result: Any) -> None:
    """Record one check's result (``exercise_id``, ``passed``, ``kind``, ``message``). Never raises.

    The attempt is appended to :func:`progress_file`; on a JupyterHub with a progress service
    it is also handed to the background :class:`Outbox`, which sends it without the check
    waiting.
    """
    try:
        attempt = attempt_from_result(result)
        path = progress_file()
        append_attempt(path, attempt)
        outbox = _hub_outbox(path)
        if outbox is not None:
            outbox.notify()
    except Exception:  # a check must never fail because its attempt could not be recorded
        pass


def attempt_from_result(result: Any) -> dict:
    """One attempt as a JSON-ready dict: a fresh unique ``id``, the result's fields and the time (UTC)."""
    exercise_id = str(getattr(result, "exercise_id", ""))
    passed = bool(getattr(result, "passed", False))
    attempted = bool(getattr(result, "attempted", True))
    message = str(getattr(result, "message", ""))
    mistake = _name_of(getattr(result, "mistake", None)) or _planted_mistake(exercise_id, message)
    kind = getattr(result, "kind", None) or _kind(passed, attempted, mistake, message)
    return {
        "id": uuid.uuid4().hex,
        "exercise_id": exercise_id,
        "passed": passed,
        "attempted": attempted,
        "kind": str(kind),
        "mistake": mistake,
        "message": message[:MESSAGE_LIMIT],
        "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
    }


def _name_of(mistake: Any) -> str | None:
    if mistake is None:
        return None
    return str(getattr(mistake, "name", mistake)) or None


def _planted_mistake(exercise_id: str, message: str) -> str | None:
    """The planted mistake a failure message names (the check quotes that mistake's hint, in either language)."""
    checks = sys.modules.get("course_utils.checks")
    exercise = getattr(checks, "EXERCISES", {}).get(exercise_id) if checks else None
    for mistake in getattr(exercise, "mistakes", ()):
        if mistake.hint and (mistake.hint in message or i18n._(mistake.hint) in message):
            return mistake.name
    return None


def _kind(passed: bool, attempted: bool, mistake: str | None, message: str) -> str:
    if passed:
        return "passed"
    if not attempted:
        return "not attempted"
    if mistake:
        return "mistake"
    if " raised " in message:
        return "exception"
    return "wrong"


def append_attempt(path: Path, attempt: dict) -> None:
    """Append ``attempt`` as one JSON line, in one write, so kernels of one learner never interleave."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(attempt, ensure_ascii=False) + "\n").encode("utf-8")
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line  # a damaged last line without its newline must not swallow this attempt
        os.write(fd, line)
    finally:
        os.close(fd)


def read_attempts(path: Path | None = None, skipped: list[int] | None = None) -> list[dict]:
    """Every attempt in ``path`` (default :func:`progress_file`), oldest first.

    A damaged line (not UTF-8, not JSON, or not an attempt) is skipped, never the lines around
    it; its line number (from 1) is appended to ``skipped`` when a list is given.
    """
    path = progress_file() if path is None else Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    attempts = []
    for number, raw in enumerate(data.split(b"\n"), start=1):  # b"\n" only: JSON escapes every other line break
        if not raw.strip():
            continue
        try:
            attempt = json.loads(raw.decode("utf-8"))
        except ValueError:  # UnicodeDecodeError and JSONDecodeError
            attempt = None
        if _is_attempt(attempt):
            attempts.append(attempt)
        elif skipped is not None:
            skipped.append(number)
    return attempts


def _is_attempt(attempt: Any) -> bool:
    return (isinstance(attempt, dict) and isinstance(attempt.get("id"), str) and isinstance(attempt.get("exercise_id"), str)
            and isinstance(attempt.get("passed", False), bool) and isinstance(attempt.get("attempted", True), bool))


# --- sending to a workshop's progress service ------------------------------------------------


class Outbox:
    """Sends the attempts of one progress file to the progress service, from a background thread.

    The ids the service has confirmed are kept beside the progress file (``progress.sent``);
    every other attempt is pending. :meth:`notify` wakes the thread, which posts the pending
    attempts in batches; if the service does not answer within ``timeout`` seconds, it tries
    again every ``retry_every`` seconds. Nothing here ever blocks the caller.

    Args:
        path: the learner's progress file.
        url: the service's base URL, e.g. ``http://127.0.0.1:10101/services/progress/``.
        token: the learner's JupyterHub API token; the service records attempts under its owner.
        timeout: seconds one request may take.
        retry_every: seconds between tries while attempts are pending.
    """

    batch_size = 200

    def __init__(self, path: Path, url: str, token: str, timeout: float = 3.0, retry_every: float = 2.0):
        self.path = Path(path)
        self.sent_path = self.path.with_suffix(".sent")
        self.url = url.rstrip("/") + "/api/attempts"
        self.token = token
        self.timeout = timeout
        self.retry_every = retry_every
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def notify(self) -> None:
        """New attempts are in the file: send them soon (starts the thread on first use)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="course-progress-outbox", daemon=True)
                self._thread.start()
        self._wake.set()

    def pending(self) -> list[dict]:
        """Attempts in the progress file the service has not confirmed yet."""
        try:
            sent = set(self.sent_path.read_text(encoding="utf-8").split())
        except FileNotFoundError:
            sent = set()
        return [a for a in read_attempts(self.path) if a["id"] not in sent]

    def send_pending(self) -> int:
        """Post every pending attempt; return how many the service confirmed. Raises on failure."""
        pending = self.pending()
        for start in range(0, len(pending), self.batch_size):
            batch = pending[start:start + self.batch_size]
            self._post(batch)
            with open(self.sent_path, "a", encoding="utf-8") as sent:
                sent.write("".join(a["id"] + "\n" for a in batch))
        return len(pending)

    def wait_until_sent(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds until nothing is pending (for tests and shutdown)."""
        deadline = time.monotonic() + timeout
        while self.pending():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _post(self, attempts: list[dict]) -> None:
        body = json.dumps({"attempts": attempts}).encode("utf-8")
        request = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 (the hub's URL)
            if response.status != 200:
                raise OSError(f"progress service answered {response.status}")

    def _run(self) -> None:
        behind = False
        while True:
            self._wake.wait(timeout=self.retry_every if behind else None)
            self._wake.clear()
            try:
                self.send_pending()
                behind = False
            except Exception:
                behind = True


_outboxes: dict[tuple[str, str, str], Outbox] = {}


def _hub_outbox(path: Path) -> Outbox | None:
    """The outbox of this kernel when it runs on a hub with a progress service, else None."""
    url, token = os.environ.get(SERVICE_URL_ENV), os.environ.get(TOKEN_ENV)
    if not url or not token:
        return None
    key = (str(path), url, token)
    if key not in _outboxes:
        _outboxes[key] = Outbox(path, url, token)
    return _outboxes[key]


# --- the learner's table ---------------------------------------------------------------------


def status_of(attempts: Iterable[dict]) -> dict[str, str]:
    """Exercise id -> ``"solved"`` (passed at least once) or ``"tried"`` (attempted, never passed)."""
    status: dict[str, str] = {}
    for attempt in attempts:
        if attempt.get("passed"):
            status[attempt["exercise_id"]] = SOLVED
        elif attempt.get("attempted", True) and status.get(attempt["exercise_id"]) != SOLVED:
            status[attempt["exercise_id"]] = TRIED
    return status


@dataclass(frozen=True)
class ProgressTable:
    """The learner's progress: one row per notebook, each exercise solved / tried / not yet.

    Attributes:
        rows: ``(notebook, [(exercise_id, status, tries), ...])`` in course order.
        path: the file it was read from.
        skipped: the numbers of the file's damaged lines, left out of the table.
    """

    rows: list[tuple[str, list[tuple[str, str, int]]]]
    path: Path
    skipped: tuple[int, ...] = ()

    @property
    def counts(self) -> dict[str, int]:
        counts = {SOLVED: 0, TRIED: 0, NOT_YET: 0}
        for _notebook, cells in self.rows:
            for _exercise, status, _tries_made in cells:
                counts[status] += 1
        return counts

    def _summary(self) -> str:
        c = self.counts
        summary = _("{solved} solved, {tried} tried, {not_yet} not yet ({solved_icon} solved  {tried_icon} tried  {not_yet_icon} not yet)").format(
            solved=c[SOLVED], tried=c[TRIED], not_yet=c[NOT_YET], solved_icon=ICONS[SOLVED], tried_icon=ICONS[TRIED], not_yet_icon=ICONS[NOT_YET])
        if self.skipped:
            lines = ", ".join(str(n) for n in self.skipped[:10]) + (", ..." if len(self.skipped) > 10 else "")
            summary += "\n" + _("{count} damaged line(s) of {path} skipped (line {lines}); every other attempt is counted.").format(
                count=len(self.skipped), path=self.path, lines=lines)
        return summary

    def __str__(self) -> str:
        lines = []
        for notebook, cells in self.rows:
            solved = sum(status == SOLVED for _exercise, status, _tries_made in cells)
            marks = "  ".join(f"{ICONS[status]} {_short(eid)}{_tries(tries, status)}" for eid, status, tries in cells)
            lines.append(f"{notebook}  {solved}/{len(cells)}  {marks}")
        return "\n".join(lines + [self._summary()])

    __repr__ = __str__

    def _repr_html_(self) -> str:
        colours = {SOLVED: "#dafbe1", TRIED: "#ffebe9", NOT_YET: "#f6f8fa"}
        rows = []
        for notebook, cells in self.rows:
            solved = sum(status == SOLVED for _exercise, status, _tries_made in cells)
            tds = "".join(
                f'<td style="background:{colours[status]};padding:2px 8px" title="{html.escape(eid)}: {html.escape(_status_text(status))}">'
                f"{ICONS[status]} {html.escape(_short(eid))}{_tries(tries, status)}</td>"
                for eid, status, tries in cells
            )
            rows.append(f"<tr><th style='text-align:left;padding:2px 8px'>{notebook}</th><td>{solved}/{len(cells)}</td>{tds}</tr>")
        return (
            "<table style='border-collapse:separate;border-spacing:2px'>"
            f"<tr><th style='text-align:left'>{html.escape(_('notebook'))}</th><th>{html.escape(_('solved'))}</th>"
            f"<th style='text-align:left' colspan='99'>{html.escape(_('exercises'))}</th></tr>"
            + "".join(rows)
            + f"</table><p>{html.escape(self._summary()).replace(chr(10), '<br>')}</p>"
        )


def _short(exercise_id: str) -> str:
    return exercise_id.split(".", 1)[-1]


def _tries(tries: int, status: str) -> str:
    return _(" ({tries} tries)").format(tries=tries) if status == TRIED and tries > 1 else ""


def _status_text(status: str) -> str:
    """``status`` as the learner reads it, in the course's language."""
    return {SOLVED: _("solved"), TRIED: _("tried"), NOT_YET: _("not yet")}.get(status, status)


def progress(path: str | os.PathLike | None = None) -> ProgressTable:
    """Your own progress: every exercise of the course, solved / tried / not yet.

    Args:
        path: the progress file to read; default :func:`progress_file`.

    Returns:
        A :class:`ProgressTable`; Jupyter shows it as a coloured table, ``print`` as text.
    """
    from .checks import EXERCISES  # the checks import torch: only when the table is asked for

    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"progress: `path` must be a str, a path or None, got {type(path).__name__}")
    path = progress_file() if path is None else Path(path)
    if path.is_dir():
        raise ValueError(f"progress: `path` must be a progress file, got the directory {path}")
    skipped: list[int] = []
    attempts = read_attempts(path, skipped)
    status = status_of(attempts)
    tries: dict[str, int] = {}
    for attempt in attempts:
        if attempt.get("attempted", True):
            tries[attempt["exercise_id"]] = tries.get(attempt["exercise_id"], 0) + 1
    by_notebook: dict[str, list[tuple[str, str, int]]] = {}
    for exercise_id in sorted(EXERCISES):  # the order of checks.exercises_of
        notebook = exercise_id.split(".", 1)[0]
        by_notebook.setdefault(notebook, []).append((exercise_id, status.get(exercise_id, NOT_YET), tries.get(exercise_id, 0)))
    return ProgressTable(rows=list(by_notebook.items()), path=path, skipped=tuple(skipped))


class _CallableModule(types.ModuleType):
    """Lets ``course_utils.progress()`` show the table while ``course_utils.progress.record_attempt`` stays a module function."""

    def __call__(self, path: str | os.PathLike | None = None) -> ProgressTable:
        return progress(path)


sys.modules[__name__].__class__ = _CallableModule
