"""Per-learner passwords on top of JupyterHub's shared-password login.

With the shared password alone, anyone who has it can log in under any learner's name. Give each
learner a password of their own in a file (one ``name password`` pair a line, ``#`` comments) and
set ``WORKSHOP_PASSWORDS_FILE``: a listed learner then logs in with their own password only, and
only listed names may log in. Instructors keep the admin password.
"""

from __future__ import annotations

from pathlib import Path
from secrets import compare_digest

from jupyterhub.authenticators.shared import SharedPasswordAuthenticator
from traitlets import Unicode


def read_passwords(path: str | Path) -> dict[str, str]:
    """``{name: password}`` from ``path``; ValueError names the line that is not ``name password``."""
    passwords = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{path}, line {number}: expected 'name password', got {len(parts)} words")
        name, password = parts
        if len(password) < 8:
            raise ValueError(f"{path}, line {number}: {name}'s password has {len(password)} characters, expected 8 or more")
        passwords[name.lower()] = password
    return passwords


class LearnerPasswordAuthenticator(SharedPasswordAuthenticator):
    """The shared-password authenticator, with a password of their own for each learner in ``passwords_file``."""

    passwords_file = Unicode("", config=True, help="File of 'name password' lines, one per learner.")

    async def authenticate(self, handler, data):
        name = self.normalize_username(data["username"])
        own = read_passwords(self.passwords_file).get(name) if self.passwords_file else None
        if own is None or name in self.admin_users:
            return await super().authenticate(handler, data)
        if compare_digest(data["password"].encode(), own.encode()):
            return {"name": name, "admin": False, "groups": []}
        return None
