"""Exercise checks: ``check("03.head", Head)`` runs your code against the reference.

``EXERCISES`` maps each exercise id (``"NN.name"``) to an :class:`Exercise` with a
``.reference`` and a ``.check(candidate)`` that returns a :class:`CheckResult`
(``.passed``, ``.message``). ``check(exercise_id, candidate)`` runs it and shows the
result (a ``kind`` from ``KINDS``, a message of a few lines). A check never raises for the
code it runs, stops it after a time limit, and leaves global state as it found it
(:mod:`.isolation`). One module per notebook registers that notebook's exercises.
"""

from . import isolation, nb00, nb01, nb02, nb03, nb04, nb05, nb06, nb07, nb08, nb09, nb10  # noqa: F401  (registration)
from .core import EXERCISES, KINDS, NOT_ATTEMPTED, Case, CheckResult, Exercise, Mistake, check, compare, exercises_of, register

__all__ = ["EXERCISES", "KINDS", "NOT_ATTEMPTED", "Case", "CheckResult", "Exercise", "Mistake", "check", "compare", "exercises_of",
           "isolation", "register"]
