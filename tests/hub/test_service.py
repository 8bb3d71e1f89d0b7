"""The progress service's storage, validation and board, without a hub."""

from __future__ import annotations

import pytest
from progress_service import RateLimit, Store, cell_status, exercise_ids, render_board, render_page, validate_attempts


def attempt(i, exercise="03.head", passed=False, mistake=None, attempted=True):
    return {"id": f"id{i}", "exercise_id": exercise, "passed": passed, "attempted": attempted, "kind": "k",
            "mistake": mistake, "message": "m", "time": "t"}


@pytest.fixture
def store(tmp_path):
    return Store(f"sqlite:///{tmp_path / 'progress.sqlite'}")


def test_each_attempt_is_stored_once_per_learner(store):
    batch = [attempt(i) for i in range(5)]
    assert store.add("ann", batch) == 5
    assert store.add("ann", batch + [attempt(5)]) == 1  # a retry stores only what is new
    assert store.add("ben", batch) == 5  # the same ids from another learner are theirs
    assert store.count() == 11


def test_board_statuses_and_top_mistake(store):
    store.add("ann", [attempt(1, mistake="a"), attempt(2, mistake="a"), attempt(3, mistake="b")])  # 3 failures: stuck
    store.add("ben", [attempt(1, mistake="b"), attempt(2, passed=True)])  # solved after a failure
    store.add("cat", [attempt(1, mistake="b")])
    store.add("dan", [attempt(1, attempted=False)])  # only opened: not shown
    board = store.board()
    assert board["learners"] == ["ann", "ben", "cat"]
    assert {name: row["03.head"]["status"] for name, row in board["cells"].items()} == {"ann": "stuck", "ben": "solved", "cat": "tried"}
    assert board["cells"]["ben"]["03.head"] == {"status": "solved", "attempts": 2, "failed": 1}
    assert board["mistakes"] == {"03.head": {"name": "b", "count": 3}}
    assert board["total_attempts"] == 7


def test_ties_between_mistakes_go_to_the_first_name(store):
    store.add("ann", [attempt(1, mistake="z"), attempt(2, mistake="a")])
    assert store.board()["mistakes"]["03.head"] == {"name": "a", "count": 1}


def test_stuck_after_three_failures_without_a_pass():
    assert [cell_status(0, 2), cell_status(0, 3), cell_status(1, 5)] == ["tried", "stuck", "solved"]


@pytest.mark.parametrize(
    "body,message",
    [
        ([], 'expected a JSON object {"attempts": [...]}'),
        ({"attempts": [1]}, "attempts[0]: expected an object, got int"),
        ({"attempts": [{"exercise_id": "x"}]}, "attempts[0]: missing 'id'"),
        ({"attempts": [{"id": "i", "exercise_id": "x", "passed": "yes"}]}, "attempts[0].passed: expected true or false, got 'yes'"),
        ({"attempts": [{"id": "i" * 65, "exercise_id": "x"}]}, "attempts[0].id: at most 64 characters, got 65"),
        ({"attempts": [{"id": "i", "exercise_id": "x"}] * 201}, "at most 200 attempts per request, got 201"),
        ({"attempts": [{"id": "i", "exercise_id": "x", "message": "m" * 2001}]}, "attempts[0].message: at most 2000 characters, got 2001"),
    ],
)
def test_bad_requests_say_what_is_wrong(body, message):
    with pytest.raises(ValueError) as error:
        validate_attempts(body)
    assert str(error.value) == message


def test_board_html_escapes_names(store):
    store.add("ann", [attempt(1, exercise="03.<b>", mistake="<script>")])
    page = render_board(store.board())
    assert "<script>" not in page and "&lt;script&gt;" in page and "03.&lt;b&gt;" in page


def test_each_learner_has_a_budget_that_refills():
    now = [0.0]
    limit = RateLimit(capacity=10, per_second=2, clock=lambda: now[0])
    assert limit.take("ann", 8) and not limit.take("ann", 3)  # 2 left
    assert limit.take("ben", 10)  # ben's budget is his own
    now[0] += 1.0  # 2 more a second
    assert limit.take("ann", 4) and not limit.take("ann", 1)
    now[0] += 100.0
    assert limit.take("ann", 10) and not limit.take("ann", 1)  # never more than the capacity


def test_exercise_ids_are_the_courses(tmp_path):
    from course_utils.checks import EXERCISES

    path = tmp_path / "exercises.txt"
    assert exercise_ids(str(path)) == frozenset(EXERCISES)  # listed from course_utils on first use ...
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    path.write_text("a.one\nb.two\n")
    assert exercise_ids(str(path)) == {"a.one", "b.two"}  # ... and read from the file after


def test_the_board_page_refreshes_its_table_with_its_xsrf_token(store):
    page = render_page(store.board(), 5, "token-123")
    assert 'fetch("table"' in page and '"X-XSRFToken": "token-123"' in page and "5000" in page
