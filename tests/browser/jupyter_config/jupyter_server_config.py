"""JupyterLab configuration for the browser tests only (``make test-browser``).

Picked up through ``JUPYTER_CONFIG_DIR`` pointing at a scratch copy of this folder, which the test
fixture sets. It removes every protection a real server needs (no token, no XSRF
check) and listens on 127.0.0.1 only: never use it for ``make lab``.

Environment (set by ``tests/browser/conftest.py``):
    COURSE_BROWSER_ROOT: the folder JupyterLab serves (a temporary copy of notebooks/).
    COURSE_BROWSER_PORT: the port to listen on.
    COURSE_BROWSER_STATE: a scratch folder for workspaces and user settings.
"""

import os
from pathlib import Path

c = get_config()  # noqa: F821 (injected by Jupyter's config loader)

state = Path(os.environ["COURSE_BROWSER_STATE"])

c.ServerApp.ip = "127.0.0.1"
c.ServerApp.port = int(os.environ["COURSE_BROWSER_PORT"])
c.ServerApp.port_retries = 0
c.ServerApp.open_browser = False
c.ServerApp.root_dir = os.environ["COURSE_BROWSER_ROOT"]
c.ServerApp.allow_root = True  # CI runs as root; without it the server refuses to start
c.ServerApp.terminals_enabled = False
# Test-only: no login, no XSRF token, the app object exposed as window.jupyterapp.
c.IdentityProvider.token = ""
c.ServerApp.password = ""
c.ServerApp.disable_check_xsrf = True
c.LabApp.expose_app_in_browser = True
# Nothing that phones home: no news feed, no update check, no extension manager.
c.LabApp.news_url = None
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"
c.LabApp.extension_manager = "readonly"
# Fresh workspace and settings for every run (the learner's own are never touched).
c.LabApp.workspaces_dir = str(state / "workspaces")
c.LabApp.user_settings_dir = str(state / "user-settings")
