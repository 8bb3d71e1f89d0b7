"""Browser tests: the course as a learner sees it, in JupyterLab and in the HTML handouts.

``make test-browser`` runs this folder (the plain ``make test`` skips it: see pyproject's
``--ignore``). It needs Debian's Chromium at ``/usr/bin/chromium`` (``apt-get install -y
chromium``; ``.ci/run`` installs it) and drives it with the Playwright Python package; no
browser is ever downloaded. The fixtures here start and stop everything themselves:

* ``lab``: JupyterLab on 127.0.0.1 (a free port, no token) serving a temporary copy of
  ``notebooks/``, configured by a scratch copy of ``tests/browser/jupyter_config/``
  (``JUPYTER_CONFIG_DIR``); for a Chinese notebook (``notebooks/zh/``), a second JupyterLab
  started as ``make lab COURSE_LANG=zh`` starts it: serving a copy of ``notebooks/zh/``, with
  ``COURSE_LANG=zh`` in its environment and its interface language written by the Makefile's
  own rule (``make lab-zh-settings``). ``labs`` holds both, started on first use;
* ``browser``: headless Chromium; ``context`` and ``page`` give each test a fresh profile in
  which every request to an address outside this machine is blocked and recorded.

Every wait is bounded; failures say what was waited for. Screenshots and a timing table go
to ``build/screenshots/``.

``make test-browser`` runs on two workers, each kernel on one thread: one worker builds and
opens the handouts while the other runs notebooks (see ``pytest_course_work_unit``). A worker
starts a JupyterLab when its first test needs it, and stops the English one when its Chinese
notebooks begin.

Environment knobs:
    COURSE_CHROMIUM: the Chromium binary (default /usr/bin/chromium).
    COURSE_BROWSER_NOTEBOOK_TIMEOUT: seconds allowed for one notebook's run-all (default 300).
    COURSE_BROWSER_NOTEBOOKS: the folder of notebooks to run in JupyterLab (default notebooks/;
        ``build/student`` after ``make student`` tries the student edition); its ``zh/``
        folder holds the Chinese ones.
    COURSE_BROWSER_LANGUAGES: the languages to test, comma-separated (default ``en,zh``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = Path(__file__).resolve().parent / "jupyter_config"
SCREENSHOTS = ROOT / "build" / "screenshots"
CHROMIUM = Path(os.environ.get("COURSE_CHROMIUM", "/usr/bin/chromium"))
# Headless, and quiet on a closed network: without the background-networking flags Chromium
# keeps trying to reach Google's services. (No --user-data-dir: Playwright's launch() always
# gives Chromium a fresh temporary profile, and refuses that flag.)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--disable-quic",
    "--metrics-recording-only",
    "--no-default-browser-check",
]
# The notebooks to run in JupyterLab: the solution edition, or another folder of course
# notebooks, e.g. the student edition: `COURSE_BROWSER_NOTEBOOKS=build/student make test-browser`.
NOTEBOOK_DIR = Path(os.environ.get("COURSE_BROWSER_NOTEBOOKS", ROOT / "notebooks"))
if not NOTEBOOK_DIR.is_absolute():
    NOTEBOOK_DIR = ROOT / NOTEBOOK_DIR
SERVER_START_TIMEOUT_S = 120
LANGUAGES = [code.strip() for code in os.environ.get("COURSE_BROWSER_LANGUAGES", "en,zh").split(",") if code.strip()]
#: Where each language's notebooks are, below a folder of course notebooks.
LANGUAGE_DIRS = {"en": ".", "zh": "zh"}
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}

TIMINGS: list[tuple[str, dict[str, float]]] = []


def record_timing(name: str, **seconds: float) -> None:
    """Remember the phases of one test for the summary table (see pytest_terminal_summary)."""
    TIMINGS.append((name, seconds))


def _worker_timings() -> list[Path]:
    return sorted(SCREENSHOTS.glob(".timings-*.json"))


def pytest_sessionfinish(session, exitstatus):  # noqa: ARG001 (pytest hook signature)
    """Under pytest-xdist, each worker hands its timings to the controller through a file."""
    worker = getattr(session.config, "workerinput", {}).get("workerid")
    if worker and TIMINGS:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        (SCREENSHOTS / f".timings-{worker}.json").write_text(json.dumps(TIMINGS), encoding="utf-8")


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ARG001 (pytest hook signature)
    if hasattr(config, "workerinput"):  # a pytest-xdist worker: the controller reports
        return
    timings = list(TIMINGS)
    for path in _worker_timings():
        timings += [(name, phases) for name, phases in json.loads(path.read_text(encoding="utf-8"))]
        path.unlink()
    if not timings:
        return
    lines = []
    for name, phases in timings:
        parts = ", ".join(f"{phase} {value:.1f}s" for phase, value in phases.items())
        lines.append(f"{name:45s} {parts}")
    terminalreporter.write_sep("-", "browser timings (seconds)")
    for line in lines:
        terminalreporter.write_line(line)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS / "timings.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def pytest_course_work_unit(nodeid: str) -> str | None:
    """Work units for ``make test-browser`` (``-n 2 --dist loadgroup``): the handouts are one unit.

    They share one build of the HTML, made once by the worker that runs them; every JupyterLab
    test is a unit of its own, and each worker starts the JupyterLab a test needs on first use.
    A hook of the course's pytest plugin (course_utils/tooling/pytest_layers.py).
    """
    return "html" if nodeid.split("::", 1)[0].endswith("test_html.py") else None


def _by_language(folder: Path) -> list[Path]:
    found = []
    for language in LANGUAGES:
        found += sorted((folder / LANGUAGE_DIRS[language]).glob("[0-9][0-9]_*.ipynb"))
    return found


def notebook_language(path: Path) -> str:
    """``"zh"`` for a notebook in a ``zh/`` folder, else ``"en"``."""
    return "zh" if path.parent.name == "zh" else "en"


def notebook_id(path: Path) -> str:
    return path.stem if notebook_language(path) == "en" else f"zh/{path.stem}"


def course_notebooks() -> list[Path]:
    """The notebooks under test, English then Chinese, found by glob so that new ones are covered automatically."""
    return _by_language(NOTEBOOK_DIR)


def handout_notebooks() -> list[Path]:
    """The notebooks the HTML handouts are made from: always the solution edition, English then Chinese."""
    return _by_language(ROOT / "notebooks")


def pytest_generate_tests(metafunc):
    """Parametrize tests taking ``notebook`` (JupyterLab) or ``handout`` (HTML) by glob."""
    for name, paths in (("notebook", course_notebooks), ("handout", handout_notebooks)):
        if name in metafunc.fixturenames:
            found = paths()
            metafunc.parametrize(name, found, ids=[notebook_id(path) for path in found])


@pytest.fixture(scope="session")
def handout_paths() -> list[Path]:
    return handout_notebooks()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class LabServer:
    """A running JupyterLab: its URL, the folder it serves and its log."""

    url: str
    root: Path
    log: Path
    process: subprocess.Popen = field(repr=False)
    started_in: float = 0.0
    language: str = "en"

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log, lines)


def _wait_for_server(url: str, process: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"JupyterLab exited with code {process.returncode} before answering. Its log:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(f"{url}/api/status", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last_error = str(exc)
        time.sleep(0.25)
    pytest.fail(f"JupyterLab did not answer {url}/api/status within {timeout:.0f}s ({last_error}). Its log:\n{_tail(log)}")


def _stop_server(server: LabServer) -> None:
    """Shut JupyterLab down (kernels included); escalate to signals if it does not go."""
    process = server.process
    if process.poll() is None:
        try:  # the REST shutdown also stops the kernels, which live in their own sessions
            request = urllib.request.Request(f"{server.url}/api/shutdown", method="POST")
            urllib.request.urlopen(request, timeout=10).close()
        except (urllib.error.URLError, OSError):
            pass
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if process.poll() is not None:
            break
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            continue


def lab_zh_settings(user_settings: Path) -> None:
    """JupyterLab's interface in Chinese, written by the Makefile's rule that ``make lab COURSE_LANG=zh`` runs."""
    result = subprocess.run(
        ["make", "--no-print-directory", "-s", f"LAB_ZH={user_settings.parent}", "lab-zh-settings"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        pytest.fail(f"`make lab-zh-settings` failed ({result.returncode}): {result.stderr or result.stdout}")


def start_lab(base: Path, language: str = "en") -> LabServer:
    """JupyterLab serving a scratch copy of one language's notebooks (so autosave never touches the repo)."""
    source = NOTEBOOK_DIR / LANGUAGE_DIRS[language]
    if not source.is_dir():
        pytest.fail(f"COURSE_BROWSER_NOTEBOOKS: {source} is not a folder (run `make student` for build/student)")
    root = base / "notebooks"
    shutil.copytree(source, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "zh", "locale"))
    state = base / "state"
    (state / "user-settings").mkdir(parents=True)
    (state / "workspaces").mkdir()
    # a scratch copy of the config folder: Jupyter writes into its config dir (a "migrated"
    # marker, config migrated from ~/.ipython), and nothing of that belongs in the repo
    config_dir = state / "jupyter_config"
    shutil.copytree(CONFIG_DIR, config_dir, ignore=shutil.ignore_patterns("migrated", "__pycache__"))
    port = _free_port()
    env = dict(os.environ)
    env.pop("COURSE_LANG", None)
    if language == "zh":  # as `make lab COURSE_LANG=zh`: the kernels' checks speak Chinese, and so does JupyterLab
        env["COURSE_LANG"] = "zh"
        lab_zh_settings(state / "user-settings")
    env.update(
        JUPYTER_CONFIG_DIR=str(config_dir),
        JUPYTER_RUNTIME_DIR=str(state / "runtime"),
        JUPYTER_PLATFORM_DIRS="1",
        COURSE_BROWSER_ROOT=str(root),
        COURSE_BROWSER_PORT=str(port),
        COURSE_BROWSER_STATE=str(state),
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    )
    log = base / "jupyterlab.log"
    start = time.monotonic()
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser"],
            cwd=root,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    server = LabServer(url=f"http://127.0.0.1:{port}", root=root, log=log, process=process, language=language)
    try:
        _wait_for_server(server.url, process, log, SERVER_START_TIMEOUT_S)
    except BaseException:
        _stop_server(server)
        raise
    server.started_in = time.monotonic() - start
    record_timing(f"JupyterLab server start ({language})", start=server.started_in)
    return server


class LabServers:
    """One JupyterLab per language, each started when a test first needs it."""

    def __init__(self, tmp_path_factory):
        self._tmp = tmp_path_factory
        self._servers: dict[str, LabServer] = {}

    def __getitem__(self, language: str) -> LabServer:
        if language not in self._servers:
            self._servers[language] = start_lab(self._tmp.mktemp(f"lab-{language}"), language)
        return self._servers[language]

    def stop(self, language: str | None = None) -> None:
        for code in [language] if language else list(self._servers):
            server = self._servers.pop(code, None)
            if server is not None:
                _stop_server(server)


@pytest.fixture(scope="session")
def labs(tmp_path_factory):
    """The JupyterLab of each language (``labs["zh"]``), started on first use, all stopped at the end."""
    servers = LabServers(tmp_path_factory)
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture
def lab(labs, request) -> LabServer:
    """The JupyterLab of the notebook under test (English unless it is a Chinese notebook)."""
    callspec = getattr(request.node, "callspec", None)
    notebook = callspec.params.get("notebook") if callspec else None
    language = notebook_language(notebook) if isinstance(notebook, Path) else "en"
    if language == "zh":  # the notebooks run in course order, English first: that server is done
        labs.stop("en")
    return labs[language]


@pytest.fixture(scope="session")
def browser():
    """Debian's headless Chromium, driven by Playwright (never a downloaded browser)."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}. Install Debian's package: `apt-get install -y chromium` "
            "(.ci/run does this), or point COURSE_CHROMIUM at a Chromium binary."
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True, timeout=60_000)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Traffic:
    """What a page asked the network for: blocked outside requests, failures, console errors."""

    blocked: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def report(self) -> str:
        parts = []
        if self.blocked:
            parts.append("requests to outside addresses (blocked): " + ", ".join(self.blocked[:10]))
        if self.failed:
            parts.append("failed requests: " + ", ".join(self.failed[:10]))
        if self.console_errors:
            parts.append("console errors: " + " | ".join(self.console_errors[:5]))
        return "; ".join(parts) or "no network problems, no console errors"


def _is_outside(url: str) -> bool:
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https", "ws", "wss", "ftp"):
        return (parsed.hostname or "") not in LOCAL_HOSTS
    return False


def _expected_failure(url: str) -> bool:
    """Local requests that fail by design and change nothing on screen.

    MathJax 2 probes a font at about:blank; and the hidden MathML it adds for screen readers
    (AssistiveMML) asks for TeX fonts that jupyter-server-mathjax does not ship (the visible
    math uses its STIX-Web fonts, which are there).
    """
    return url == "about:blank" or "/mathjax/fonts/HTML-CSS/TeX/otf/" in url


@pytest.fixture
def traffic() -> Traffic:
    return Traffic()


@pytest.fixture
def context(browser, traffic):
    """A fresh browser context that blocks (and records) every request leaving this machine."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
    context.set_default_timeout(30_000)

    def guard(route):
        url = route.request.url
        if _is_outside(url):
            traffic.blocked.append(url)
            route.abort("blockedbyclient")
        else:
            route.continue_()

    context.route(lambda url: _is_outside(url), guard)
    yield context
    context.close()


@pytest.fixture
def page(context, traffic):
    page = context.new_page()
    page.on("console", lambda msg: traffic.console_errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: traffic.console_errors.append(f"uncaught: {exc}"))
    page.on(
        "requestfailed",
        lambda request: (
            traffic.failed.append(f"{request.url[:120]} ({request.failure})")
            if not _is_outside(request.url) and not _expected_failure(request.url)
            else None
        ),
    )
    yield page
    page.close()


@pytest.fixture(scope="session")
def timings():
    """``timings(name, phase=seconds, ...)`` adds a row to the timing table."""
    return record_timing


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
