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
#   WORKSHOP_STATE           the hub's files: database, homes, course repository (default build/workshop/)
#   WORKSHOP_HUB_PORT, WORKSHOP_PROXY_API_PORT, WORKSHOP_PROGRESS_PORT   internal ports (8081, 8001, 10101)
#
# Each learner's server runs JupyterLab in the course's environment (.venv) and opens on their
# own copy of the student edition, pulled by nbgitpuller from the course repository that
# workshop/course_repo.py keeps (updates never overwrite a learner's edits).

import os
import sys
from pathlib import Path
from urllib.parse import urlencode

c = get_config()  # noqa: F821 (defined by JupyterHub when it loads this file)

WORKSHOP = Path(__file__).resolve().parent
REPO = WORKSHOP.parent
STATE = Path(os.environ.get("WORKSHOP_STATE") or REPO / "build" / "workshop").resolve()
COURSE_REPO = STATE / "course"  # a git repository of the student edition (workshop/course_repo.py)
COURSE_DIR = "attention-course"  # the learner's copy, in their home
CULL_TIMEOUT = int(os.environ.get("WORKSHOP_CULL_TIMEOUT", "3600"))
PROGRESS_PORT = int(os.environ.get("WORKSHOP_PROGRESS_PORT", "10101"))
PROGRESS_URL = f"http://127.0.0.1:{PROGRESS_PORT}"
STATE.mkdir(parents=True, exist_ok=True)

# --- where the hub listens: this machine only unless the instructor says otherwise ----------
c.JupyterHub.ip = os.environ.get("WORKSHOP_IP", "127.0.0.1")
c.JupyterHub.port = int(os.environ.get("WORKSHOP_PORT", "8000"))
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = int(os.environ.get("WORKSHOP_HUB_PORT", "8081"))
c.JupyterHub.db_url = f"sqlite:///{STATE / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(STATE / "jupyterhub_cookie_secret")

# configurable-http-proxy from npm (workshop/package.json), the reference proxy the hub is built against
c.ConfigurableHTTPProxy.command = [str(WORKSHOP / "node_modules" / ".bin" / "configurable-http-proxy")]
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{int(os.environ.get('WORKSHOP_PROXY_API_PORT', '8001'))}"
c.ConfigurableHTTPProxy.pid_file = str(STATE / "proxy.pid")

# --- login: a password always ---------------------------------------------------------------
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = os.environ.get("WORKSHOP_PASSWORD") or None
c.SharedPasswordAuthenticator.admin_password = os.environ.get("WORKSHOP_ADMIN_PASSWORD") or None
c.Authenticator.admin_users = {name.strip() for name in os.environ.get("WORKSHOP_ADMINS", "instructor").split(",") if name.strip()}
learners = {name.strip() for name in os.environ.get("WORKSHOP_LEARNERS", "").split(",") if name.strip()}
if os.environ.get("WORKSHOP_PASSWORDS_FILE"):  # a password of their own for each listed learner
    sys.path.insert(0, str(WORKSHOP))
    from learner_passwords import LearnerPasswordAuthenticator, read_passwords

    c.JupyterHub.authenticator_class = LearnerPasswordAuthenticator
    c.LearnerPasswordAuthenticator.passwords_file = os.environ["WORKSHOP_PASSWORDS_FILE"]
    learners |= set(read_passwords(os.environ["WORKSHOP_PASSWORDS_FILE"]))
if learners:
    c.Authenticator.allowed_users = learners
else:
    c.Authenticator.allow_all = True
c.Authenticator.username_pattern = r"^[a-z0-9][a-z0-9_.-]{0,31}$"  # names become folder names
if not (c.SharedPasswordAuthenticator.user_password or os.environ.get("WORKSHOP_PASSWORDS_FILE")):
    sys.exit("WORKSHOP_PASSWORD is not set: the hub never runs without a password (make hub sets one for a try-out).")

# --- each learner's server: JupyterLab, the course environment, their own copy of the course -
c.JupyterHub.spawner_class = "jupyterhub.spawner.SimpleLocalProcessSpawner"
c.SimpleLocalProcessSpawner.home_dir_template = str(STATE / "home" / "{username}")
c.Spawner.cmd = [sys.executable, "-m", "jupyterhub.singleuser"]  # the course's .venv (make hub runs the hub from it)
if os.getuid() == 0:  # a container or CI runs as root; a workshop machine should run the hub as a plain user
    c.Spawner.args = ["--allow-root"]
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
        "environment": {"PROGRESS_DB_URL": os.environ.get("PROGRESS_DB_URL", f"sqlite:///{STATE / 'progress.sqlite'}")},
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
