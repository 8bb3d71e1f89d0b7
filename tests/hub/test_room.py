"""A room of learners on the real hub: their checks reach the board exactly; nobody sees what is not theirs."""

from __future__ import annotations

import json
from collections import Counter

from course_utils.checks import EXERCISES

from .conftest import LEARNERS, wait_for

# Two exercises with at least two planted mistakes each, picked from the course as it is.
A, B = [eid for eid in sorted(EXERCISES) if len(EXERCISES[eid].mistakes) >= 2][:2]

# What each learner runs in their kernel, in order: "pass" (the reference), "mistake K" (the
# K-th planted mistake), "stub" (the student edition's NotImplementedError), "boom" (raises).
PLAN = {
    "learner0": [(A, "pass")],
    "learner1": [(A, "mistake 0")],
    "learner2": [(A, "mistake 0"), (A, "mistake 0"), (A, "mistake 0")],  # stuck
    "learner3": [(A, "mistake 1"), (A, "pass")],  # solved after a failure
    "learner4": [(A, "stub"), (B, "pass")],  # the stub is no attempt
    "learner5": [(B, "boom"), (B, "mistake 1")],
    "learner6": [(B, "mistake 0"), (A, "mistake 0")],
    "learner7": [(B, "stub")],  # opened, never tried: not on the board
}

CANDIDATES = """
from course_utils.checks import EXERCISES, check

def candidate(exercise_id, outcome):
    exercise = EXERCISES[exercise_id]
    if outcome == "pass":
        return exercise.reference
    if outcome.startswith("mistake"):
        return exercise.mistakes[int(outcome.split()[1])].implementation
    def stub(*args, **kwargs):
        if outcome == "stub":
            raise NotImplementedError("your code here: replace this line")
        raise RuntimeError("boom")
    return stub
"""


def expected_board():
    cells, mistakes = {}, Counter()
    for learner, runs in PLAN.items():
        for eid, outcome in runs:
            if outcome == "stub":
                continue
            cell = cells.setdefault(learner, {}).setdefault(eid, {"attempts": 0, "failed": 0, "passed": 0})
            cell["attempts"] += 1
            if outcome == "pass":
                cell["passed"] += 1
            else:
                cell["failed"] += 1
            if outcome.startswith("mistake"):
                mistakes[eid, EXERCISES[eid].mistakes[int(outcome.split()[1])].name] += 1
    for row in cells.values():
        for cell in row.values():
            passed = cell.pop("passed")
            cell["status"] = "solved" if passed else ("stuck" if cell["failed"] >= 3 else "tried")
    top = {}
    for eid in (A, B):
        counts = {name: n for (e, name), n in mistakes.items() if e == eid}
        name = min(counts, key=lambda m: (-counts[m], m))
        top[eid] = {"name": name, "count": counts[name]}
    return cells, top


def test_each_learner_gets_their_own_copy_of_the_student_edition(hub, room, student_edition):
    expected = sorted(p.name for p in student_edition.glob("*.ipynb"))
    for learner in LEARNERS:
        assert [n for n in hub.pull_course(learner) if n.endswith(".ipynb")] == expected
    copy = hub.home("learner0") / "attention-course" / "03_masked_attention_head.ipynb"
    assert "NotImplementedError" in copy.read_text()  # the student edition, not the solutions
    # the default URL sends a learner through nbgitpuller into JupyterLab
    response = hub.get("user/learner0/", hub.tokens["learner0"], allow_redirects=False)
    assert response.status_code == 302 and "/user/learner0/git-pull?" in response.headers["Location"]
    assert "urlpath=lab%2Ftree%2Fattention-course" in response.headers["Location"]


def test_checks_in_each_learners_kernel_reach_the_board_exactly(hub, room):
    for learner in LEARNERS:
        kernel = hub.start_kernel(learner)
        runs = json.dumps(PLAN[learner])
        out = hub.execute(
            learner,
            kernel,
            CANDIDATES
            + f"""
import os
import course_utils
from course_utils import progress as p
assert os.environ["COURSE_PROGRESS_URL"] and os.environ["JUPYTERHUB_API_TOKEN"]
for exercise_id, outcome in {runs}:
    check(exercise_id, candidate(exercise_id, outcome))
print("SENT", p._hub_outbox(p.progress_file()).wait_until_sent(timeout=60))
print("LOCAL", len(p.read_attempts()))
print(course_utils.progress())
""",
            timeout=240,
        )
        assert "SENT True" in out, out
        assert f"LOCAL {len(PLAN[learner])}" in out, out
    cells, top = expected_board()

    def room_board():  # the room's learners (other tests' users may share the hub)
        board = hub.board().json()
        return {name: row for name, row in board["cells"].items() if name in LEARNERS}, board

    shown, board = wait_for(lambda: (b := room_board())[0] == cells and b, 30, "the board to show every attempt")
    assert [name for name in board["learners"] if name in LEARNERS] == sorted(cells)  # learner7 only opened B
    assert {A, B} <= set(board["exercises"])
    assert board["mistakes"][A] == top[A] and board["mistakes"][B] == top[B]
    page = hub.get("services/progress/", hub.tokens["instructor"])
    assert page.status_code == 200 and "Progress board" in page.text
    assert all(learner in page.text for learner in cells) and "learner7" not in page.text
    assert 'data-status="stuck"' in page.text and top[A]["name"] in page.text
    assert "setInterval" in page.text  # the page fetches its table again every few seconds
    table = hub.get("services/progress/table", hub.tokens["instructor"])
    assert table.status_code == 200 and table.text.startswith("<p>") and "<html" not in table.text


def test_a_learner_sees_only_their_own(hub, room):
    me, other = hub.tokens["learner0"], "learner1"
    assert hub.get(f"user/{other}/api/contents", me).status_code == 403
    assert hub.get(f"user/{other}/api/kernels", me).status_code == 403
    assert hub.get("user/learner0/api/contents", me).status_code == 200
    assert hub.board(me).status_code == 403
    assert hub.get("services/progress/", me).status_code == 403
    assert hub.get("services/progress/table", me).status_code == 403
    assert hub.api("GET", f"users/{other}", token=me).status_code == 404  # not even its existence


def test_login_needs_the_workshop_password(hub):
    import requests

    from .conftest import ADMIN_PASSWORD, LEARNER_PASSWORD

    def login(name, password):
        session = requests.Session()
        session.get(f"{hub.url}hub/login", timeout=30)
        form = {"username": name, "password": password, "_xsrf": session.cookies.get("_xsrf", "")}
        return session.post(f"{hub.url}hub/login", data=form, allow_redirects=False, timeout=30)

    assert login("newcomer", "wrong-password").status_code == 403
    assert login("newcomer", "").status_code == 403
    assert login("newcomer", LEARNER_PASSWORD).status_code == 302  # a learner picks their own name
    assert login("instructor", LEARNER_PASSWORD).status_code == 403  # instructors need their own password
    assert login("instructor", ADMIN_PASSWORD).status_code == 302


def test_the_instructor_sees_everything(hub, room):
    admin = hub.tokens["instructor"]
    assert hub.get("user/learner1/api/contents/attention-course", admin).status_code == 200
    assert hub.board(admin).status_code == 200


def test_attempts_are_recorded_only_for_the_tokens_owner(hub, room):
    import requests

    url = f"{hub.progress_url}api/attempts"
    attempt = {"id": "x" * 32, "exercise_id": A, "passed": True, "attempted": True}
    assert requests.post(url, json={"attempts": [attempt]}, timeout=10).status_code == 403  # no token
    as_service = requests.post(url, json={"attempts": [attempt]}, headers={"Authorization": f"token {hub.admin_token}"}, timeout=10)
    assert as_service.status_code == 403  # a service is not a learner
    bad = requests.post(url, json={"attempts": [{"id": 1}]}, headers={"Authorization": f"token {hub.tokens['learner7']}"}, timeout=10)
    assert bad.status_code == 400 and "attempts[0].id" in bad.json()["message"]


def test_the_idle_culler_runs_with_the_permissions_it_needs(hub):
    log = (hub.private / "hub.log").read_text()
    culler_requests = [line for line in log.splitlines() if "(idle-culler@127.0.0.1)" in line]
    assert any("200 GET /hub/api/users" in line for line in culler_requests), culler_requests
    assert not any(" 403 " in line for line in culler_requests)
