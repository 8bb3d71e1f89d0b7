"""A mischievous learner, from her own kernel on the real hub: every attack must fail.

mallory attacks; victor is her neighbour, with his copy of the course and a live kernel of his own
(two learners of their own, so the room's board stays the room's). Each attack runs as Python in
mallory's kernel (so as her Unix user, under her limits) and prints what happened; the test
asserts the attack was refused.
"""

from __future__ import annotations

import json

import psutil
import pytest

from course_utils.checks import EXERCISES

from .conftest import ADMIN_PASSWORD, LEARNER_PASSWORD, wait_for

ATTACKER, VICTIM = "mallory", "victor"


@pytest.fixture(scope="module")
def kernels(hub):
    """A kernel for the attacker, and one for her neighbour (whose connection file is the prize)."""
    hub.add_users([ATTACKER, VICTIM])
    hub.spawn([ATTACKER, VICTIM], timeout=180)
    hub.pull_course(VICTIM)
    return {ATTACKER: hub.start_kernel(ATTACKER), VICTIM: hub.start_kernel(VICTIM)}


def attack(hub, kernels, code: str, timeout: float = 120) -> dict:
    """Run ``code`` (which sets ``result``, a dict) in the attacker's kernel; return ``result``."""
    wrapped = "import json, os\nresult = {}\n" + code + "\nprint('RESULT' + json.dumps(result))"
    out = hub.execute(ATTACKER, kernels[ATTACKER], wrapped, timeout=timeout)
    return json.loads(out.rsplit("RESULT", 1)[1])


TRY = """
def attempt(name, action):
    try:
        action()
        result[name] = "done"
    except Exception as error:
        result[name] = type(error).__name__
"""


def hub_side_pids(hub) -> dict[str, int]:
    """The hub, the proxy and the services: everything the hub started that is not a learner's server."""
    pids = {"hub": hub.process.pid}
    for child in psutil.Process(hub.process.pid).children():
        line = " ".join(child.cmdline())
        if "configurable-http-proxy" in line:
            pids["proxy"] = child.pid
        elif "progress_service" in line:
            pids["progress"] = child.pid
        elif "jupyterhub_idle_culler" in line:
            pids["culler"] = child.pid
    assert set(pids) == {"hub", "proxy", "progress", "culler"}, pids
    return pids


def test_she_runs_as_her_own_user_in_a_home_only_she_can_read(hub, kernels):
    result = attack(hub, kernels, "import pwd; result.update(uid=os.getuid(), user=pwd.getpwuid(os.getuid()).pw_name, "
                                  "home=os.path.expanduser('~'), mode=oct(os.stat(os.path.expanduser('~')).st_mode & 0o777))")
    assert result["user"] == "hubt-" + ATTACKER and result["uid"] != 0
    assert result["home"] == str(hub.home(ATTACKER)) and result["mode"] == "0o700"


def test_reading_or_writing_her_neighbours_files_fails(hub, kernels):
    home = hub.home(VICTIM)
    notebook = home / "attention-course" / "00_start_here.ipynb"
    assert notebook.exists()
    result = attack(hub, kernels, TRY + f"""
attempt("list", lambda: os.listdir({str(home)!r}))
attempt("read", lambda: open({str(notebook)!r}).read())
attempt("write", lambda: open({str(home / "planted.py")!r}, "w").write("x"))
attempt("overwrite", lambda: open({str(notebook)!r}, "a").write("x"))
""")
    assert result == {"list": "PermissionError", "read": "PermissionError", "write": "PermissionError", "overwrite": "PermissionError"}


def test_running_code_in_her_neighbours_kernel_fails(hub, kernels):
    runtime = hub.home(VICTIM) / ".local" / "share" / "jupyter" / "runtime"
    connection_files = list(runtime.glob("kernel-*.json"))
    assert connection_files, "the neighbour's kernel has a connection file"
    result = attack(hub, kernels, TRY + f"""
import glob
attempt("find", lambda: os.listdir({str(runtime)!r}))
attempt("read", lambda: open({str(connection_files[0])!r}).read())
result["found"] = glob.glob({str(hub.state / "homes" / "*" / ".local" / "share" / "jupyter" / "runtime" / "kernel-*.json")!r})
""")
    assert result["find"] == result["read"] == "PermissionError"
    assert all(f"hubt-{ATTACKER}" in path for path in result["found"])  # only her own kernels' files
    # and through the hub: her token opens no one else's server
    assert hub.get(f"user/{VICTIM}/api/kernels", hub.tokens[ATTACKER]).status_code == 403


def test_the_hubs_database_and_secrets_are_out_of_reach(hub, kernels):
    private = hub.private
    files = {name: str(private / name) for name in ("jupyterhub.sqlite", "jupyterhub_cookie_secret", "progress.sqlite", "test_jupyterhub_config.py")}
    for path in files.values():
        assert oct((private / path).stat().st_mode & 0o777) == "0o600", path
    result = attack(hub, kernels, TRY + f"""
import sqlite3
files = {files!r}
for name, path in files.items():
    attempt("read " + name, lambda: open(path, "rb").read(1))
    attempt("write " + name, lambda: open(path, "r+b").write(b"x"))
def make_admin():
    db = sqlite3.connect(files["jupyterhub.sqlite"])
    db.execute("UPDATE users SET admin = 1 WHERE name = '{ATTACKER}'")
    db.commit()
attempt("sql", make_admin)
attempt("list private", lambda: os.listdir({str(private)!r}))
""")
    assert set(result.values()) == {"PermissionError"} or set(result.values()) <= {"PermissionError", "OperationalError"}, result
    assert len(result) == 2 * len(files) + 2
    assert not hub.api("GET", f"users/{ATTACKER}").json()["admin"]


def test_the_environments_of_the_hub_proxy_and_services_are_out_of_reach(hub, kernels):
    pids = hub_side_pids(hub)
    secrets = [LEARNER_PASSWORD, ADMIN_PASSWORD, hub.admin_token] + [t for name, t in hub.tokens.items() if name != ATTACKER]
    result = attack(hub, kernels, TRY + f"""
for name, pid in {pids!r}.items():
    attempt(name, lambda: open(f"/proc/{{pid}}/environ", "rb").read())
# every environment and command line she can read on the machine
secrets, found = {secrets!r}, []
for entry in os.listdir("/proc"):
    for part in ("environ", "cmdline"):
        try:
            text = open(f"/proc/{{entry}}/{{part}}", "rb").read().decode(errors="replace")
        except OSError:
            continue
        found += [f"{{entry}}/{{part}}" for secret in secrets if secret in text]
result["secrets found"] = found
# her own server's environment: her token, scoped to her, and nothing of the hub's
mine = dict(os.environ)
result["my secrets"] = [name for name, value in mine.items() if any(secret in value for secret in secrets)]
import urllib.request
def as_admin():
    request = urllib.request.Request(mine["JUPYTERHUB_API_URL"] + "/users", headers={{"Authorization": "token " + mine["JUPYTERHUB_API_TOKEN"]}})
    urllib.request.urlopen(request, timeout=10).read()
attempt("list users with her token", as_admin)
""")
    assert {name: result[name] for name in pids} == dict.fromkeys(pids, "PermissionError")
    assert result["secrets found"] == [] and result["my secrets"] == []
    assert result["list users with her token"] == "HTTPError"  # 403: her server's token is scoped to her


def test_writing_into_the_course_environment_fails(hub, kernels):
    import sys
    import sysconfig

    import course_utils

    site_packages = sysconfig.get_paths()["purelib"]
    targets = {
        "pth": f"{site_packages}/zz_every_kernel.pth",
        "package": f"{site_packages}/jupyterhub/__init__.py",
        "course_utils": course_utils.__file__,
        "runtime": str(hub.state / "runtime" / "zz.pth"),
        "course repository": str(hub.state / "course" / "00_start_here.ipynb"),
    }
    own_copy = hub.state / "runtime" / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages" / "course_utils" / "__init__.py"
    result = attack(hub, kernels, TRY + f"""
for name, path in {targets!r}.items():
    attempt(name, lambda: open(path, "a").write("import os; os.system('touch /tmp/owned')\\n"))
import course_utils
result["imports course_utils"] = course_utils.__file__ in ({course_utils.__file__!r}, {str(own_copy)!r})
""")
    assert result == {**dict.fromkeys(targets, "PermissionError"), "imports course_utils": True}


def test_killing_or_replacing_the_progress_service_fails(hub, kernels):
    pids = hub_side_pids(hub)
    port = int(hub.progress_url.split(":")[2].split("/")[0])
    result = attack(hub, kernels, TRY + f"""
import signal, socket
attempt("kill", lambda: os.kill({pids['progress']}, signal.SIGKILL))
def take_port(reuse):
    s = socket.socket()
    if reuse:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", {port}))
    s.listen()
attempt("bind", lambda: take_port(False))
attempt("bind with SO_REUSEPORT", lambda: take_port(True))
""")
    assert result == {"kill": "PermissionError", "bind": "PermissionError", "bind with SO_REUSEPORT": "PermissionError"}
    assert hub.progress_pid() == pids["progress"]


def test_signalling_the_hub_or_the_proxy_fails(hub, kernels):
    pids = hub_side_pids(hub)
    result = attack(hub, kernels, TRY + f"""
import signal
for name, pid in {pids!r}.items():
    for sig in ("SIGTERM", "SIGSTOP", "SIGKILL"):
        attempt(name + " " + sig, lambda: os.kill(pid, getattr(signal, sig)))
""")
    assert set(result.values()) == {"PermissionError"} and len(result) == 12
    assert hub.process.poll() is None and hub.api("GET", "").status_code == 200


def test_becoming_root_fails(hub, kernels):
    result = attack(hub, kernels, TRY + """
import subprocess
attempt("setuid", lambda: os.setuid(0))
attempt("setgid", lambda: os.setgid(0))
def run(*command):
    done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, timeout=20)
    if done.returncode != 0:
        raise PermissionError(done.stderr[-200:])
    return done.stdout
attempt("sudo", lambda: run("sudo", "-n", "true"))
attempt("su", lambda: run("su", "-c", "true", "root"))
result["uid"] = os.getuid()
result["euid"] = os.geteuid()
""")
    assert result["setuid"] == result["setgid"] == "PermissionError"
    assert result["sudo"] in ("PermissionError", "FileNotFoundError") and result["su"] in ("PermissionError", "FileNotFoundError")
    assert result["uid"] != 0 and result["euid"] != 0


def test_her_memory_and_processes_are_limited(hub, kernels):
    result = attack(hub, kernels, """
import subprocess, sys
hog = subprocess.run([sys.executable, "-c", "b = bytearray(6 * 2**30); b[::4096] = b'x' * len(b[::4096]); print('allocated')"],
                     capture_output=True, text=True, timeout=120)
result["memory"] = [hog.returncode, "allocated" in hog.stdout]
spawn = '''
import threading, time
n = 0
try:
    while n < 5000:
        threading.Thread(target=time.sleep, args=(20,), daemon=True).start()
        n += 1
except RuntimeError:
    pass
print(n)
'''
threads = subprocess.run([sys.executable, "-c", spawn], capture_output=True, text=True, timeout=120)
result["threads"] = int(threads.stdout.strip() or 0)
""", timeout=300)
    assert result["memory"][0] != 0 and not result["memory"][1]  # stopped before 6 GiB (WORKSHOP_MEM_LIMIT, 3G)
    assert 0 < result["threads"] < 512  # WORKSHOP_PROCESS_LIMIT counts every thread she runs


def test_flooding_the_board_fails_and_the_service_stays_up(hub, kernels):
    exercise = sorted(EXERCISES)[0]
    before = sum(cell["attempts"] for cell in hub.board().json()["cells"].get(ATTACKER, {}).values())
    result = attack(hub, kernels, f"""
import urllib.request, urllib.error, uuid, time
url = os.environ["COURSE_PROGRESS_URL"] + "api/attempts"
token = os.environ["JUPYTERHUB_API_TOKEN"]
def post(attempts):
    body = json.dumps({{"attempts": attempts}}).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={{"Authorization": "token " + token}})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, None
codes, stored = {{}}, 0
start = time.monotonic()
junk = [{{"id": uuid.uuid4().hex, "exercise_id": "junk." + str(i), "passed": True}} for i in range(200)]
for i in range(100):  # 20,000 junk rows, as fast as she can
    status, answer = post(junk)
    codes[status] = codes.get(status, 0) + 1
    stored += (answer or {{}}).get("stored", 0)
for i in range(100):  # 20,000 real-looking attempts
    status, answer = post([{{"id": uuid.uuid4().hex, "exercise_id": {exercise!r}, "passed": False}} for _ in range(200)])
    codes[status] = codes.get(status, 0) + 1
    stored += (answer or {{}}).get("stored", 0)
result.update(codes=codes, stored=stored, seconds=time.monotonic() - start)
try:
    result["too big"] = post([{{"id": "x", "exercise_id": {exercise!r}, "message": "m" * 2**21}}])[0]
except (urllib.error.URLError, ConnectionError):  # refused before she finished sending (a broken pipe or a reset)
    result["too big"] = "closed"
""", timeout=300)
    print(f"\nflood: {result['codes']} in {result['seconds']:.1f} s, {result['stored']} stored")
    assert result["codes"].get("429", 0) > 150 and result["stored"] <= 400 + 2 * result["seconds"] + 10
    assert result["too big"] in (400, 413, "closed"), f"a 2 MiB request got {result['too big']}"
    after = sum(cell["attempts"] for cell in hub.board().json()["cells"].get(ATTACKER, {}).values())
    assert after - before == result["stored"]
    assert all(eid in EXERCISES for eid in hub.board().json()["exercises"])  # no junk on the board
    # the service is up and her neighbour's attempts still arrive
    wait_for(hub.progress_pid, 10, "the progress service")
    import requests

    neighbour = requests.post(f"{hub.progress_url}api/attempts", json={"attempts": [{"id": "n" * 32, "exercise_id": exercise, "passed": True}]},
                              headers={"Authorization": f"token {hub.tokens[VICTIM]}"}, timeout=10)
    assert neighbour.status_code == 200 and neighbour.json()["stored"] == 1


def test_every_server_runs_as_its_learners_own_user(hub, kernels):
    import pwd

    servers = [c for c in psutil.Process(hub.process.pid).children() if "jupyterhub.singleuser" in " ".join(c.cmdline())]
    assert len(servers) >= len(kernels)
    for server in servers:
        owner = pwd.getpwuid(server.uids().real).pw_name
        assert owner == "hubt-" + server.environ()["JUPYTERHUB_USER"] and server.uids().effective != 0
