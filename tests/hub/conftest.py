"""A real JupyterHub on 127.0.0.1, started from workshop/jupyterhub_config.py for the hub tests.

The hub runs as root from a fresh state folder with free ports and the workshop's own
configuration; the only addition is a test service holding an admin token, to create learners and
spawn their servers through the REST API. Each learner is a Unix user; the tests' users carry the
prefix ``hubt-`` (never ``jupyter-``, so they cannot meet a real workshop's) and are deleted with
their homes at the end of the session. Every wait is bounded; everything started is stopped.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import psutil
import pytest
import requests
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

ROOT = Path(__file__).resolve().parents[2]
WORKSHOP = ROOT / "workshop"
sys.path.insert(0, str(WORKSHOP))

from course_repo import publish  # noqa: E402

LEARNER_PASSWORD = "workshop-password"
ADMIN_PASSWORD = "instructor-password-" + "x" * 20
USER_PREFIX = "hubt-"  # the tests' Unix users: hubt-<name>


def free_port(privileged: bool = False) -> int:
    """A free port on 127.0.0.1; ``privileged``: one below 1024, where only root may listen."""
    for port in range(1000, 1024) if privileged else [0]:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise OSError("no free port between 1000 and 1023")


def delete_test_users() -> list[str]:
    """Delete every ``hubt-`` Unix user and their home; return their names."""
    from isolation import remove_cgroups

    names = [user.pw_name for user in pwd.getpwall() if user.pw_name.startswith(USER_PREFIX)]
    for name in names:
        remove_cgroups(name)
        result = subprocess.run(["userdel", "--remove", name], capture_output=True, text=True, timeout=60)
        if result.returncode not in (0, 12):  # 12: the home was already gone
            subprocess.run(["userdel", "--remove", "--force", name], capture_output=True, text=True, timeout=60)
    return names


def wait_for(condition: Callable[[], object], timeout: float, what: str, every: float = 0.5):
    """Poll ``condition`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except (requests.RequestException, OSError, KeyError, ValueError) as exc:
            last_error = exc
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last error: {last_error})")


@dataclass
class Hub:
    url: str  # the public URL, e.g. http://127.0.0.1:PORT/
    progress_url: str  # the progress service as the learners' kernels reach it
    state: Path
    admin_token: str
    process: subprocess.Popen
    env: dict
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def private(self) -> Path:
        return self.state / "private"

    def home(self, name: str) -> Path:
        """The learner ``name``'s home: their Unix user's."""
        return Path(pwd.getpwnam(USER_PREFIX + name).pw_dir)

    # --- REST API ----------------------------------------------------------------------------
    def api(self, method: str, path: str, token: str | None = None, **kwargs) -> requests.Response:
        headers = {"Authorization": f"token {token or self.admin_token}"}
        return requests.request(method, f"{self.url}hub/api/{path}", headers=headers, timeout=60, **kwargs)

    def get(self, path: str, token: str | None, **kwargs) -> requests.Response:
        headers = {"Authorization": f"token {token}"} if token else {}
        return requests.get(self.url + path.lstrip("/"), headers=headers, timeout=60, **kwargs)

    def add_users(self, names: list[str], admin: bool = False) -> dict[str, str]:
        """Create users through the REST API; return a fresh API token for each."""
        existing = {u["name"] for u in self.api("GET", "users").json()}
        new = [n for n in names if n not in existing]
        if new:
            response = self.api("POST", "users", json={"usernames": new, "admin": admin})
            assert response.status_code == 201, response.text
        for name in names:
            response = self.api("POST", f"users/{name}/tokens", json={"note": "hub tests", "expires_in": 7200})
            assert response.status_code == 201, response.text
            self.tokens[name] = response.json()["token"]
        return {name: self.tokens[name] for name in names}

    def spawn(self, names: list[str], timeout: float) -> dict[str, float]:
        """Start the servers of ``names`` at once; return each one's seconds from request to ready."""
        started = {}
        for name in names:
            response = self.api("POST", f"users/{name}/server")
            assert response.status_code in (201, 202), f"{name}: {response.status_code} {response.text}"
            started[name] = time.monotonic()
        ready: dict[str, float] = {}

        def all_ready():
            for name in names:
                if name not in ready:
                    server = self.api("GET", f"users/{name}").json()["servers"].get("")
                    if server and server["ready"]:
                        ready[name] = time.monotonic() - started[name]
            return len(ready) == len(names)

        wait_for(all_ready, timeout, f"the servers of {', '.join(n for n in names if n not in ready)}", every=1.0)
        return ready

    def pull_course(self, name: str) -> list[str]:
        """What the learner's default URL does on first login: nbgitpuller clones the course into their home."""
        query = urlencode({"repo": str(self.state / "course"), "branch": "main", "targetpath": "attention-course"})
        with self.get(f"user/{name}/git-pull/api?{query}", self.tokens[name], stream=True) as response:
            assert response.status_code == 200, response.text
            events = [json.loads(line[5:]) for line in response.iter_lines(decode_unicode=True) if line.startswith("data:")]
        assert events and events[-1].get("phase") == "finished", events[-3:]
        listing = self.get(f"user/{name}/api/contents/attention-course", self.tokens[name]).json()
        return sorted(item["name"] for item in listing["content"])

    def board(self, token: str | None = None) -> requests.Response:
        return self.get("services/progress/api/board", token or self.tokens["instructor"])

    def progress_pid(self) -> int:
        return requests.get(f"{self.progress_url}api/health", timeout=5).json()["pid"]

    # --- kernels -----------------------------------------------------------------------------
    def start_kernel(self, name: str) -> str:
        response = self.get(f"user/{name}/api/kernels", self.tokens[name])  # warm the route
        response = requests.post(
            f"{self.url}user/{name}/api/kernels", headers={"Authorization": f"token {self.tokens[name]}"},
            json={"name": "python3"}, timeout=60,
        )
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def execute(self, name: str, kernel_id: str, code: str, timeout: float = 120) -> str:
        """Run ``code`` in the learner's kernel through the server's websocket; return its stdout."""
        ws_url = f"ws{self.url[4:]}user/{name}/api/kernels/{kernel_id}/channels"
        return asyncio.run(_execute(ws_url, self.tokens[name], code, timeout))


async def _execute(ws_url: str, token: str, code: str, timeout: float) -> str:
    connection = await asyncio.wait_for(
        websocket_connect(HTTPRequest(ws_url, headers={"Authorization": f"token {token}"})), timeout=60
    )
    msg_id = uuid.uuid4().hex
    header = {"msg_id": msg_id, "username": "hub-tests", "session": uuid.uuid4().hex, "msg_type": "execute_request", "version": "5.3"}
    content = {"code": code, "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}
    await connection.write_message(json.dumps({"header": header, "parent_header": {}, "metadata": {}, "content": content, "channel": "shell"}))
    stdout, error, replied, idle = [], None, False, False
    deadline = time.monotonic() + timeout
    try:
        while not (replied and idle):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no reply from the kernel within {timeout} s")
            raw = await asyncio.wait_for(connection.read_message(), timeout=remaining)
            if raw is None:
                raise ConnectionError("the kernel's websocket closed")
            message = json.loads(raw)
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = message["header"]["msg_type"]
            if kind == "stream" and message["content"]["name"] == "stdout":
                stdout.append(message["content"]["text"])
            elif kind == "error":
                error = "\n".join(message["content"]["traceback"])
            elif kind == "execute_reply":
                replied = True
            elif kind == "status" and message["content"]["execution_state"] == "idle":
                idle = True
    finally:
        connection.close()
    if error:
        raise AssertionError(f"the kernel raised:\n{error}")
    return "".join(stdout)


def _write_test_config(private: Path, admin_token: str) -> Path:
    """The workshop's configuration, plus a test service with an admin token and short timeouts (root's alone)."""
    config = private / "test_jupyterhub_config.py"
    config.touch(mode=0o600)
    config.write_text(
        "c = get_config()  # noqa\n"
        f"load_subconfig({str(WORKSHOP / 'jupyterhub_config.py')!r})  # noqa\n"
        f"c.JupyterHub.services.append({{'name': 'hub-tests', 'api_token': {admin_token!r}}})\n"
        "c.JupyterHub.load_roles.append({'name': 'hub-tests', 'services': ['hub-tests'], 'scopes': [\n"
        "    'admin:users', 'admin:servers', 'tokens', 'list:users', 'read:users', 'read:servers']})\n"
        "c.JupyterHub.tornado_settings = {'slow_spawn_timeout': 0}  # POST .../server answers at once\n"
    )
    return config


def _stop(process: subprocess.Popen) -> None:
    """Stop the hub (which stops its proxy, services and servers); kill whatever is left, by pid."""
    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
    alive = [p for p in children if p.is_running()]
    for child in alive:
        child.terminate()
    _, alive = psutil.wait_procs(alive, timeout=10)
    for child in alive:
        child.kill()


@pytest.fixture(scope="session")
def student_edition(tmp_path_factory) -> Path:
    from course_utils.tooling.student import write_student_edition

    out = tmp_path_factory.mktemp("student")
    write_student_edition(out)
    return out


@pytest.fixture(scope="session")
def hub(student_edition) -> Hub:
    if os.geteuid() != 0:
        pytest.fail("the hub tests start the workshop hub, which runs as root (each learner is a Unix user): run them as root")
    delete_test_users()  # left by a session that was killed
    # every learner must be able to reach the course repository: not under pytest's private tmp folder
    state = Path(tempfile.mkdtemp(prefix="workshop-hub-tests-"))
    state.chmod(0o755)
    (state / "private").mkdir(mode=0o700)
    old_umask = os.umask(0o022)
    publish(student_edition, state / "course")
    os.umask(old_umask)
    admin_token = secrets.token_hex(32)
    ports = {name: free_port() for name in ("PORT", "HUB_PORT", "PROXY_API_PORT")}
    ports["PROGRESS_PORT"] = free_port(privileged=True)
    env = dict(os.environ)
    env.update({f"WORKSHOP_{k}": str(v) for k, v in ports.items()})
    env.update(
        WORKSHOP_STATE=str(state),
        WORKSHOP_PASSWORD=LEARNER_PASSWORD,
        WORKSHOP_ADMIN_PASSWORD=ADMIN_PASSWORD,
        WORKSHOP_ADMINS="instructor",
        WORKSHOP_IP="127.0.0.1",
        WORKSHOP_USER_PREFIX=USER_PREFIX,
        WORKSHOP_HOMES=str(state / "homes"),
    )
    env.pop("WORKSHOP_LEARNERS", None)
    env.pop("JUPYTERHUB_API_TOKEN", None)
    config = _write_test_config(state / "private", admin_token)
    log = open(os.open(state / "private" / "hub.log", os.O_WRONLY | os.O_CREAT, 0o600), "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyterhub", "-f", str(config)], cwd=state, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{ports['PORT']}/"
    running = Hub(url, f"http://127.0.0.1:{ports['PROGRESS_PORT']}/services/progress/", state, admin_token, process, env)
    try:
        wait_for(lambda: running.api("GET", "").status_code == 200 and process.poll() is None, 120, "the hub's REST API")
        wait_for(running.progress_pid, 60, "the progress service")
        running.add_users(["instructor"], admin=True)
        yield running
    finally:
        _stop(process)
        log.close()
        if process.returncode not in (0, -signal.SIGTERM, -signal.SIGKILL):
            print((state / "private" / "hub.log").read_text()[-5000:])
        delete_test_users()
        shutil.rmtree(state, ignore_errors=True)


LEARNERS = [f"learner{i}" for i in range(8)]


@pytest.fixture(scope="session")
def room(hub) -> dict[str, float]:
    """Eight learners created through the REST API, their servers started at once; each one's spawn seconds."""
    hub.add_users(LEARNERS)
    return hub.spawn(LEARNERS, timeout=300)
