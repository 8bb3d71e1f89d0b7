"""Every check's attempt, recorded for the learner's own progress table (and a workshop's board).

``record_attempt(result)`` is called by ``course_utils.checks.check`` after every check. It must
never raise and never wait on the network.
"""

from __future__ import annotations

from typing import Any


def record_attempt(result: Any) -> None:
    """Record one check's result (``exercise_id``, ``passed``, ``kind``, ``message``). Never raises."""
    return None
