"""Load: 50 learners send 2,000 attempts at once while the progress service is killed and restarted."""

from __future__ import annotations

import os
import signal
import threading
import time

from course_utils.checks import EXERCISES, CheckResult
from course_utils.progress import Outbox, append_attempt, attempt_from_result, read_attempts

from .conftest import wait_for

LEARNERS = [f"load{i:02d}" for i in range(50)]
PER_LEARNER = 40  # 50 x 40 = 2,000 attempts


def test_no_attempt_is_lost_or_duplicated_across_a_service_restart(hub, tmp_path):
    tokens = hub.add_users(LEARNERS)
    outboxes = {
        name: Outbox(tmp_path / name / "progress.jsonl", hub.progress_url, tokens[name], timeout=3.0, retry_every=1.0)
        for name in LEARNERS
    }
    made = threading.Barrier(len(LEARNERS) + 1)

    def learner(name: str) -> None:
        outbox = outboxes[name]
        for i in range(PER_LEARNER):
            exercise = sorted(EXERCISES)[i % 8]  # the service stores the course's exercises only
            append_attempt(outbox.path, attempt_from_result(CheckResult(exercise, i % 5 == 4, "a simulated check")))
            outbox.notify()
            time.sleep(0.02)
            if i == PER_LEARNER // 2:
                made.wait(timeout=120)  # half sent by everyone: the service is killed now

    threads = [threading.Thread(target=learner, args=(name,), daemon=True) for name in LEARNERS]
    for thread in threads:
        thread.start()
    start = time.monotonic()
    made.wait(timeout=120)
    old_pid = hub.progress_pid()
    os.kill(old_pid, signal.SIGKILL)  # no goodbye: the hub notices on its next poll and starts it again
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    new_pid = wait_for(lambda: (pid := hub.progress_pid()) != old_pid and pid, 90, "the hub to restart the progress service")
    assert new_pid != old_pid

    def all_sent():
        return all(not outbox.pending() for outbox in outboxes.values())

    wait_for(all_sent, 120, "every learner's pending attempts to be sent", every=1.0)
    print(f"\nload: {len(LEARNERS)} learners sent {len(LEARNERS) * PER_LEARNER} attempts in {time.monotonic() - start:.0f} s, "
          f"the service killed half-way and restarted by the hub")
    board = hub.board().json()
    ids = {name: {a["id"] for a in read_attempts(outboxes[name].path)} for name in LEARNERS}
    assert sum(len(v) for v in ids.values()) == len(LEARNERS) * PER_LEARNER
    for name in LEARNERS:
        stored = sum(cell["attempts"] for cell in board["cells"][name].values())
        assert stored == PER_LEARNER, f"{name}: {stored} attempts stored, {PER_LEARNER} sent"
    # sending everything once more (a kernel that never heard back) stores nothing new
    resent = Outbox(outboxes["load00"].path, hub.progress_url, tokens["load00"])
    resent.sent_path.unlink()
    assert resent.send_pending() == PER_LEARNER
    again = hub.board().json()
    assert sum(cell["attempts"] for cell in again["cells"]["load00"].values()) == PER_LEARNER
