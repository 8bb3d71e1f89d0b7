"""Start the workshop's JupyterHub on this machine (``make hub``), printing the URL and how to log in.

Runs as root only (each learner becomes a Unix user of their own; a hub that cannot make them
refuses to start). Publishes the student edition (``build/student/``, from ``make student``) to the
course repository the learners pull from, then runs ``jupyterhub -f workshop/jupyterhub_config.py``.
For a try-out without WORKSHOP_PASSWORD / WORKSHOP_ADMIN_PASSWORD set, it makes random ones and
keeps them in the hub's private state folder, so they stay the same from one start to the next.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

WORKSHOP = Path(__file__).resolve().parent
REPO = WORKSHOP.parent
sys.path.insert(0, str(WORKSHOP))

from course_repo import publish  # noqa: E402

NOT_ROOT = (
    "make hub must run as root (sudo make hub): the hub makes a Unix user for each learner and runs their "
    "server as that user, so no learner can read another's work or the hub's secrets. It never falls back to "
    "one shared user. (For one person on their own machine, make lab needs no hub.)"
)


def tryout_passwords(private: Path) -> dict[str, str]:
    """The passwords kept for try-outs in ``private`` (root's alone), made on first use."""
    path = private / "tryout_passwords.json"
    if path.exists():
        return json.loads(path.read_text())
    passwords = {"WORKSHOP_PASSWORD": secrets.token_urlsafe(9), "WORKSHOP_ADMIN_PASSWORD": secrets.token_urlsafe(32)}
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(json.dumps(passwords))
    return passwords


def main() -> None:
    if os.geteuid() != 0:
        sys.exit(NOT_ROOT)
    state = Path(os.environ.get("WORKSHOP_STATE") or REPO / "build" / "workshop").resolve()
    state.mkdir(parents=True, exist_ok=True)
    state.chmod(0o755)
    private = state / "private"
    private.mkdir(mode=0o700, exist_ok=True)
    private.chmod(0o700)
    os.umask(0o022)  # the course repository is for every learner to read
    changed = publish(REPO / "build" / "student", state / "course")
    print(f"course repository {state / 'course'}: {'updated' if changed else 'up to date'}")
    env = dict(os.environ)
    shown = {}  # a password is printed only when made here for a try-out, never one the instructor set
    for name, value in tryout_passwords(private).items():
        if not env.get(name):
            env[name] = shown[name] = value
    ip = env.get("WORKSHOP_IP", "127.0.0.1")
    host = "127.0.0.1" if ip in ("", "0.0.0.0") else ip
    admin = env.get("WORKSHOP_ADMINS", "instructor").split(",")[0].strip()
    if env.get("WORKSHOP_PASSWORDS_FILE"):
        learners = f"the names in {env['WORKSHOP_PASSWORDS_FILE']}, each with their own password"
    else:
        names = env.get("WORKSHOP_LEARNERS") or "any user name (lower case)"
        learners = f"{names}, password {shown.get('WORKSHOP_PASSWORD', '$WORKSHOP_PASSWORD')}"
    print(
        f"\nJupyterHub: http://{host}:{env.get('WORKSHOP_PORT', '8000')}/\n"
        f"  learners: {learners}\n"
        f"  instructor: user {admin}, password {shown.get('WORKSHOP_ADMIN_PASSWORD', '$WORKSHOP_ADMIN_PASSWORD')}\n"
        f"  progress board (instructors): http://{host}:{env.get('WORKSHOP_PORT', '8000')}/services/progress/\n"
        "  Ctrl-C stops the hub and every learner's server.\n",
        flush=True,
    )
    command = [sys.executable, "-m", "jupyterhub", "-f", str(WORKSHOP / "jupyterhub_config.py")]
    os.chdir(state)
    os.execve(sys.executable, command, env)


if __name__ == "__main__":
    main()
