"""The learner's progress: every check's attempt recorded locally, shown as a table, sent to a hub in the background."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import course_utils
from course_utils import progress
from course_utils.checks import EXERCISES, CheckResult


@pytest.fixture
def progress_path(tmp_path, monkeypatch):
    path = tmp_path / "home" / ".attention-course" / "progress.jsonl"
    monkeypatch.setenv(progress.PROGRESS_FILE_ENV, str(path))
    monkeypatch.delenv(progress.SERVICE_URL_ENV, raising=False)
    monkeypatch.delenv(progress.TOKEN_ENV, raising=False)
    return path


def _planted(ex_id="03.head", k=0):
    exercise = EXERCISES[ex_id]
    return exercise.check(exercise.mistakes[k].implementation), exercise.mistakes[k].name


def test_default_file_is_in_the_learners_home(monkeypatch, tmp_path):
    monkeypatch.delenv(progress.PROGRESS_FILE_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert progress.progress_file() == tmp_path / ".attention-course" / "progress.jsonl"


def test_an_attempt_is_one_json_line_with_the_mistake_named(progress_path):
    result, name = _planted()
    progress.record_attempt(result)
    (attempt,) = [json.loads(line) for line in progress_path.read_text().splitlines()]
    assert attempt["exercise_id"] == "03.head"
    assert attempt["passed"] is False and attempt["attempted"] is True
    assert attempt["mistake"] == name and attempt["kind"] == "mistake"
    assert len(attempt["id"]) == 32 and attempt["time"].endswith("+00:00")


def test_a_result_built_by_hand_names_the_mistake_its_chinese_hint_quotes(progress_path, monkeypatch):
    from course_utils import i18n

    monkeypatch.setattr(i18n, "_chosen", "zh")
    mistake = EXERCISES["03.head"].mistakes[0]
    message = f"用例 1：{i18n._(mistake.hint)}"
    assert i18n._(mistake.hint) != mistake.hint
    progress.record_attempt(CheckResult("03.head", False, message))
    (attempt,) = [json.loads(line) for line in progress_path.read_text().splitlines()]
    assert attempt["mistake"] == mistake.name and attempt["kind"] == "mistake"


def test_kind_of_each_outcome(progress_path):
    exercise = EXERCISES["03.head"]
    progress.record_attempt(exercise.check(exercise.reference))
    progress.record_attempt(exercise.check(None))
    progress.record_attempt(CheckResult("03.head", False, "on case 1 your code raised ValueError: boom"))
    progress.record_attempt(CheckResult("03.head", False, "output differs at (0, 1)"))
    kinds = [a["kind"] for a in progress.read_attempts(progress_path)]
    assert kinds == ["passed", "not attempted", "exception", "wrong"]


def test_kind_and_mistake_given_by_the_check_are_kept(progress_path):
    result = type("R", (), {"exercise_id": "03.head", "passed": False, "attempted": True, "message": "m",
                            "kind": "shape", "mistake": EXERCISES["03.head"].mistakes[1]})()
    progress.record_attempt(result)
    (attempt,) = progress.read_attempts(progress_path)
    assert (attempt["kind"], attempt["mistake"]) == ("shape", EXERCISES["03.head"].mistakes[1].name)


def test_recording_never_raises(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv(progress.PROGRESS_FILE_ENV, str(blocker / "progress.jsonl"))  # parent is a file
    progress.record_attempt(CheckResult("03.head", True, "ok"))
    progress.record_attempt(None)
    progress.record_attempt(object())


def test_damaged_lines_are_skipped(progress_path):
    progress.record_attempt(CheckResult("03.head", True, "ok"))
    with open(progress_path, "a") as f:
        f.write('{"truncated\n')
    progress.record_attempt(CheckResult("03.head", True, "ok"))
    assert len(progress.read_attempts(progress_path)) == 2


def test_table_solved_tried_not_yet(progress_path):
    progress.record_attempt(_planted("03.head")[0])
    progress.record_attempt(EXERCISES["03.head"].check(EXERCISES["03.head"].reference))
    progress.record_attempt(_planted("04.split_heads")[0])
    progress.record_attempt(_planted("04.split_heads")[0])
    progress.record_attempt(EXERCISES["05.causal_mask"].check(None))  # not attempted: still "not yet"
    table = course_utils.progress()
    cells = {eid: (status, tries) for _, row in table.rows for eid, status, tries in row}
    assert set(cells) == set(EXERCISES)
    assert cells["03.head"] == ("solved", 2)
    assert cells["04.split_heads"] == ("tried", 2)
    assert cells["05.causal_mask"] == ("not yet", 0)
    assert table.counts == {"solved": 1, "tried": 1, "not yet": len(EXERCISES) - 2}
    assert [nb for nb, _ in table.rows] == sorted({eid[:2] for eid in EXERCISES})
    text = str(table)
    assert "✅ head" in text and "❌ split_heads (2 tries)" in text and "· causal_mask" in text
    page = table._repr_html_()
    assert page.startswith("<table") and "✅ head" in page and "1 solved, 1 tried" in page


def test_module_is_callable_and_keeps_its_functions(progress_path):
    assert course_utils.progress is progress
    assert callable(course_utils.progress) and callable(course_utils.progress.record_attempt)
    assert str(course_utils.progress()).endswith("not yet)")
    assert course_utils.progress(progress_path).path == progress_path


# --- sending to a progress service ----------------------------------------------------------

class _Service:
    """A stand-in progress service on 127.0.0.1 that stores attempts by id; can be stopped and restarted."""

    def __init__(self):
        self.stored, self.posts, self.tokens = {}, 0, set()
        self.server = None
        self.port = None

    def start(self):
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                service.posts += 1
                service.tokens.add(self.headers["Authorization"])
                for attempt in body["attempts"]:
                    service.stored[attempt["id"]] = attempt
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port or 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/services/progress/"


@pytest.fixture
def service():
    running = _Service().start()
    yield running
    running.stop()


def test_on_a_hub_attempts_are_sent_in_the_background(progress_path, service, monkeypatch):
    monkeypatch.setenv(progress.SERVICE_URL_ENV, service.url)
    monkeypatch.setenv(progress.TOKEN_ENV, "learner-token")
    for _ in range(3):
        progress.record_attempt(_planted()[0])
    outbox = progress._hub_outbox(progress_path)
    assert outbox.wait_until_sent(timeout=10)
    assert set(service.stored) == {a["id"] for a in progress.read_attempts(progress_path)}
    assert service.tokens == {"token learner-token"}


def test_service_down_attempts_wait_and_are_sent_later(progress_path, service):
    outbox = progress.Outbox(progress_path, service.url, "t", timeout=0.5, retry_every=0.2)
    service.stop()
    for _ in range(5):
        progress.append_attempt(progress_path, progress.attempt_from_result(_planted()[0]))
        outbox.notify()
    time.sleep(0.5)
    assert len(outbox.pending()) == 5 and not service.stored
    service.start()  # same port
    assert outbox.wait_until_sent(timeout=10)
    assert len(service.stored) == 5
    # a restarted kernel finds nothing pending and sends nothing again
    posts = service.posts
    assert progress.Outbox(progress_path, service.url, "t").send_pending() == 0 and service.posts == posts


def test_a_check_never_waits_on_a_silent_service(progress_path, monkeypatch):
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(0)  # accepts connections, never answers
    monkeypatch.setenv(progress.SERVICE_URL_ENV, f"http://127.0.0.1:{silent.getsockname()[1]}/")
    monkeypatch.setenv(progress.TOKEN_ENV, "t")
    start = time.perf_counter()
    for _ in range(20):
        progress.record_attempt(CheckResult("03.head", True, "ok"))
    assert time.perf_counter() - start < 1.0
    assert len(progress.read_attempts(progress_path)) == 20
    silent.close()
