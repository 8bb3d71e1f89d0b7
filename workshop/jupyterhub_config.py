# JupyterHub for a workshop room on one machine: `make hub` (or workshop/hub.py) starts it.
#
# Every setting an instructor may change is an environment variable:
#   WORKSHOP_PASSWORD        the learners' password (8+ characters); required unless WORKSHOP_PASSWORDS_FILE is set
#   WORKSHOP_ADMIN_PASSWORD  the instructors' password (32+ characters); instructors see the progress board
#   WORKSHOP_ADMINS          instructor user names, comma-separated (default: instructor)
#   WORKSHOP_LEARNERS        learner user names, comma-separated; unset: anyone with the password picks a name
#   WORKSHOP_PASSWORDS_FILE  'name password' lines: each listed learner logs in with their own password only
#   WORKSHOP_IP, WORKSHOP_PORT   where the hub listens (default 127.0.0.1:8000: this machine only)
#   WORKSHOP_CULL_TIMEOUT    seconds of inactivity before a learner's server is stopped (default 3600)
#   WORKSHOP_MEM_LIMIT       memory per learner (default 3G); WORKSHOP_PROCESS_LIMIT processes and threads (512)
#   WORKSHOP_MAX_SERVERS     learners' servers running at once (default 40)
#   WORKSHOP_STATE           the hub's files: its private state, the course repository (default build/workshop/)
#   WORKSHOP_HUB_PORT, WORKSHOP_PROXY_API_PORT, WORKSHOP_PROGRESS_PORT   internal ports (8081, 8001, 1010)
#
# The hub runs as root and each learner as their own Unix user, jupyter-<name>, made on first login
# with a home only they can read (workshop/isolation.py). Their server runs JupyterLab in the
# course's environment (.venv, read-only to them) and opens on their own copy of the student
# edition, pulled by nbgitpuller from the course repository that workshop/course_repo.py keeps
# (updates never overwrite a learner's edits). The hub's database, cookie secret and the progress
# database are in STATE/private/, readable by root alone.

import importlib.util
import os
import sys
import sysconfig
from pathlib import Path
from urllib.parse import urlencode

c = get_config()  # noqa: F821 (defined by JupyterHub when it loads this file)

WORKSHOP = Path(__file__).resolve().parent
REPO = WORKSHOP.parent
STATE = Path(os.environ.get("WORKSHOP_STATE") or REPO / "build" / "workshop").resolve()
PRIVATE = STATE / "private"  # the hub's database, cookie secret, progress database: root's alone
COURSE_REPO = STATE / "course"  # a git repository of the student edition (workshop/course_repo.py)
COURSE_DIR = "attention-course"  # the learner's copy, in their home
CULL_TIMEOUT = int(os.environ.get("WORKSHOP_CULL_TIMEOUT", "3600"))
# below 1024: only root may listen there, so no learner can stand in for the service, even while it restarts
PROGRESS_PORT = int(os.environ.get("WORKSHOP_PROGRESS_PORT", "1010"))
PROGRESS_URL = f"http://127.0.0.1:{PROGRESS_PORT}"

if os.geteuid() != 0:
    sys.exit(
        "The workshop hub runs each learner as their own Unix user, so it must start as root (sudo make hub). "
        "It never falls back to one shared user: that would let any learner read everyone's work and the hub's secrets."
    )
sys.path.insert(0, str(WORKSHOP))
from isolation import LearnerSpawner, SystemUsers, environment_problems, learner_runtime  # noqa: E402

os.umask(0o077)  # what the hub, its services and the learners' servers write is their own
STATE.mkdir(parents=True, exist_ok=True)
STATE.chmod(0o755)
PRIVATE.mkdir(mode=0o700, exist_ok=True)
PRIVATE.chmod(0o700)
for secret in PRIVATE.iterdir():
    secret.chmod(0o600)

# the learners' servers run the course's environment as other users: it must be theirs to read, not to change
COURSE_UTILS = Path(importlib.util.find_spec("course_utils").origin).parent
LEARNER_PYTHON = learner_runtime(STATE / "runtime", COURSE_UTILS)  # the .venv's packages, on a Python every user may run
problems = environment_problems(
    [p for p in (LEARNER_PYTHON, Path(sysconfig.get_paths()["purelib"]), COURSE_UTILS, COURSE_REPO) if p.exists()],
    [Path(sys.prefix), STATE / "runtime", COURSE_UTILS],
)
if problems:
    sys.exit(
        "The learners' servers run as their own users and cannot use the course environment safely:\n  "
        + "\n  ".join(problems)
        + "\nThe hub's state folder (WORKSHOP_STATE, default build/workshop) must be one every user may pass through, "
        "e.g. WORKSHOP_STATE=/srv/workshop, and the course's .venv must be writable by root alone."
    )

# --- where the hub listens: this machine only unless the instructor says otherwise ----------
c.JupyterHub.ip = os.environ.get("WORKSHOP_IP", "127.0.0.1")
c.JupyterHub.port = int(os.environ.get("WORKSHOP_PORT", "8000"))
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = int(os.environ.get("WORKSHOP_HUB_PORT", "8081"))
c.JupyterHub.db_url = f"sqlite:///{PRIVATE / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(PRIVATE / "jupyterhub_cookie_secret")

# configurable-http-proxy from npm (workshop/package.json), the reference proxy the hub is built against
c.ConfigurableHTTPProxy.command = [str(WORKSHOP / "node_modules" / ".bin" / "configurable-http-proxy")]
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{int(os.environ.get('WORKSHOP_PROXY_API_PORT', '8001'))}"
c.ConfigurableHTTPProxy.pid_file = str(PRIVATE / "proxy.pid")

# --- login: a password always ---------------------------------------------------------------
from jupyterhub.authenticators.shared import SharedPasswordAuthenticator  # noqa: E402


class WorkshopAuthenticator(SystemUsers, SharedPasswordAuthenticator):
    """The shared password; the learner's Unix user made on first login."""


c.JupyterHub.authenticator_class = WorkshopAuthenticator
c.SharedPasswordAuthenticator.user_password = os.environ.get("WORKSHOP_PASSWORD") or None
c.SharedPasswordAuthenticator.admin_password = os.environ.get("WORKSHOP_ADMIN_PASSWORD") or None
c.Authenticator.admin_users = {name.strip() for name in os.environ.get("WORKSHOP_ADMINS", "instructor").split(",") if name.strip()}
learners = {name.strip() for name in os.environ.get("WORKSHOP_LEARNERS", "").split(",") if name.strip()}
if os.environ.get("WORKSHOP_PASSWORDS_FILE"):  # a password of their own for each listed learner
    from learner_passwords import LearnerPasswordAuthenticator, read_passwords

    class WorkshopLearnerAuthenticator(SystemUsers, LearnerPasswordAuthenticator):
        """Each listed learner's own password; their Unix user made on first login."""

    c.JupyterHub.authenticator_class = WorkshopLearnerAuthenticator
    c.LearnerPasswordAuthenticator.passwords_file = os.environ["WORKSHOP_PASSWORDS_FILE"]
    learners |= set(read_passwords(os.environ["WORKSHOP_PASSWORDS_FILE"]))
if learners:
    c.Authenticator.allowed_users = learners
else:
    c.Authenticator.allow_all = True
c.Authenticator.username_pattern = r"^[a-z0-9][a-z0-9_.-]{0,23}$"  # jupyter-<name> is a Unix name: 32 characters at most
if not (c.SharedPasswordAuthenticator.user_password or os.environ.get("WORKSHOP_PASSWORDS_FILE")):
    sys.exit("WORKSHOP_PASSWORD is not set: the hub never runs without a password (make hub sets one for a try-out).")

# git refuses a repository another user owns unless told it is safe; the learner's own ~/.gitconfig still applies
GIT_CONFIG = STATE / "gitconfig"
GIT_CONFIG.write_text(f"[safe]\n\tdirectory = {COURSE_REPO}\n\tdirectory = {COURSE_REPO / '.git'}\n[include]\n\tpath = ~/.gitconfig\n")
GIT_CONFIG.chmod(0o644)

# --- each learner's server: their own Unix user, JupyterLab, the course environment, their own copy -
c.JupyterHub.spawner_class = LearnerSpawner
c.LearnerSpawner.mem_limit_text = os.environ.get("WORKSHOP_MEM_LIMIT", "3G")
c.LearnerSpawner.process_limit = int(os.environ.get("WORKSHOP_PROCESS_LIMIT", "512"))
c.JupyterHub.active_server_limit = int(os.environ.get("WORKSHOP_MAX_SERVERS", "40"))
c.JupyterHub.concurrent_spawn_limit = 10
c.Spawner.cmd = [str(LEARNER_PYTHON), "-m", "jupyterhub.singleuser"]
c.Spawner.ip = "127.0.0.1"
# nbgitpuller (enabled by its own install) clones the course on first login and merges updates later
c.Spawner.default_url = "/git-pull?" + urlencode(
    {
        "repo": str(COURSE_REPO),
        "branch": "main",
        "targetpath": COURSE_DIR,
        "urlpath": f"lab/tree/{COURSE_DIR}/00_start_here.ipynb",
    }
)
c.Spawner.environment = {
    "COURSE_PROGRESS_URL": f"{PROGRESS_URL}/services/progress/",  # kernels send check attempts here
    "OMP_NUM_THREADS": os.environ.get("WORKSHOP_THREADS_PER_LEARNER", "1"),  # a room shares the cores
    "PATH": f"{LEARNER_PYTHON.parent}:/usr/local/bin:/usr/bin:/bin",  # python in a terminal is the course's
    "GIT_CONFIG_GLOBAL": str(GIT_CONFIG),  # nbgitpuller's git may pull from the course repository, which root owns
}
c.Spawner.server_token_scopes = ["users:activity!user", "access:servers!server", "access:services!service=progress"]
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120

# --- services: the progress board and the idle culler ---------------------------------------
c.JupyterHub.services = [
    {
        "name": "progress",
        "url": PROGRESS_URL,
        "command": [sys.executable, str(WORKSHOP / "progress_service.py")],
        "environment": {
            "PROGRESS_DB_URL": os.environ.get("PROGRESS_DB_URL", f"sqlite:///{PRIVATE / 'progress.sqlite'}"),
            "PROGRESS_EXERCISES": str(PRIVATE / "exercises.txt"),  # the course's exercise ids, listed at its first start
        },
        "display": True,
        "oauth_no_confirm": True,
    },
    {
        "name": "idle-culler",
        "command": [sys.executable, "-m", "jupyterhub_idle_culler", f"--timeout={CULL_TIMEOUT}", "--cull-every=300"],
    },
]
c.JupyterHub.load_roles = [
    # learners may use the progress service (to record their own attempts; the board checks for admin)
    {"name": "user", "scopes": ["self", "access:services!service=progress"]},
    {"name": "idle-culler", "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
     "services": ["idle-culler"]},
]
