"""Exercise checks: ``check("03.head", Head)`` runs your code against the reference.

``EXERCISES`` maps each exercise id (``"NN.name"``) to an :class:`Exercise` with a
``.reference`` and a ``.check(candidate)`` that returns a :class:`CheckResult`
(``.passed``, ``.message``). ``check(exercise_id, candidate)`` runs it and shows the
result. One module per notebook registers that notebook's exercises.
"""

from . import nb00, nb01, nb02, nb03, nb04, nb05, nb06, nb07, nb08, nb09  # noqa: F401  (registration)
from .core import EXERCISES, NOT_ATTEMPTED, Case, CheckResult, Exercise, Mistake, check, compare, exercises_of, register

__all__ = ["EXERCISES", "NOT_ATTEMPTED", "Case", "CheckResult", "Exercise", "Mistake", "check", "compare", "exercises_of", "register"]
