"""Every notebook, English and Chinese, run in JupyterLab in a real browser, as a learner would.

First, JupyterLab's interface speaks each language: its File menu reads "File" in the English
JupyterLab and "文件" in the Chinese one (started as ``make lab COURSE_LANG=zh`` starts it).

For each ``notebooks/NN_*.ipynb`` and ``notebooks/zh/NN_*.ipynb`` (found by glob in
conftest.py, so new notebooks are covered; ``COURSE_BROWSER_NOTEBOOKS`` picks another folder,
``COURSE_BROWSER_LANGUAGES`` the languages): open it in its language's JupyterLab,
run all cells, wait for the kernel, then assert that

* every code cell ran and no cell shows an error (cells tagged ``raises-exception`` may);
* every widget output rendered as a live widget (not an error, not the static fallback);
* every interactive explorer (CSS class ``course-explorer``) redraws its figure when its
  first control moves (the other controls are moved too and reported);
* nothing was requested from outside this machine.

Screenshots: ``build/screenshots/lab/NN_name.png`` (the whole notebook after the run; very long
notebooks add ``NN_name.part2.png``...) and
``NN_name.explorer-K.{before,after}.png`` for each explorer; the Chinese ones in ``lab/zh/``,
with ``lab/zh/interface.png``, the Chinese JupyterLab with its File menu open.
"""

from __future__ import annotations

import os
import subprocess
import time
import warnings
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

NOTEBOOK_TIMEOUT_S = float(os.environ.get("COURSE_BROWSER_NOTEBOOK_TIMEOUT", "300"))
KERNEL_READY_TIMEOUT_S = 120
WIDGETS_TIMEOUT_S = 60
REDRAW_TIMEOUT_S = 30
MAX_SCREENSHOT_HEIGHT = 16_000  # about Chromium's largest texture: taller notebooks come in parts
_ROOT = Path(__file__).resolve().parents[2]
_EDITION = os.environ.get("COURSE_BROWSER_NOTEBOOKS", "")
LANGUAGES = [code.strip() for code in os.environ.get("COURSE_BROWSER_LANGUAGES", "en,zh").split(",") if code.strip()]
# build/screenshots/lab/ for the solution edition, lab-student/ for COURSE_BROWSER_NOTEBOOKS=build/student
SCREENSHOT_DIR = _ROOT / "build" / "screenshots" / ("lab" if not _EDITION else f"lab-{Path(_EDITION).name}")

# JavaScript run in the page. `window.jupyterapp` is exposed by the test server config.
_FIND_PANEL = """
const findPanel = (name) => Array.from(window.jupyterapp.shell.widgets('main'))
    .find(w => w.context && w.context.path === name && w.content && w.content.widgets);
"""

KERNEL_IDLE = (
    "(name) => {"
    + _FIND_PANEL
    + """
    const panel = findPanel(name);
    const kernel = panel && panel.sessionContext.session && panel.sessionContext.session.kernel;
    return !!kernel && kernel.status === 'idle' && panel.content.widgets.length > 0;
}"""
)

RUN_ALL = (
    "async ([name, timeoutMs]) => {"
    + _FIND_PANEL
    + """
    const app = window.jupyterapp;
    const panel = findPanel(name);
    app.shell.activateById(panel.id);
    const run = app.commands.execute('notebook:run-all-cells')
        .then(ok => ok ? 'ok' : 'stopped', err => 'error: ' + err);
    const timeout = new Promise(resolve => setTimeout(() => resolve('timeout'), timeoutMs));
    return await Promise.race([run, timeout]);
}"""
)

# One record per cell: what ran, what it printed, and how its outputs were rendered.
CELLS = (
    "(name) => {"
    + _FIND_PANEL
    + """
    const panel = findPanel(name);
    const WIDGET = 'application/vnd.jupyter.widget-view+json';
    return panel.content.widgets.map((cell, index) => {
        const json = cell.model.toJSON();
        const outputs = (json.outputs || []).map(o => ({
            type: o.output_type, ename: o.ename || '', evalue: o.evalue || '',
            widget: !!(o.data && o.data[WIDGET]),
        }));
        // top-level rendered outputs (outputs nested in an Output widget are skipped)
        const rendered = Array.from(cell.node.querySelectorAll('.jp-OutputArea-output'))
            .filter(e => e.parentElement.closest('.jp-OutputArea-output') === null);
        const widgetViews = rendered.filter(e => e.firstElementChild
            && e.firstElementChild.classList.contains('jupyter-widgets')).length;
        const outputArea = cell.node.querySelector('.jp-Cell-outputArea');
        const text = outputArea ? outputArea.textContent : '';
        return {
            index, type: json.cell_type, tags: (json.metadata && json.metadata.tags) || [],
            source: String(json.source).trim().split('\\n')[0].slice(0, 80),
            count: json.execution_count === undefined ? null : json.execution_count,
            outputs, widgetViews,
            widgetError: text.includes('Error displaying widget') || text.includes('Error rendering widget'),
        };
    });
}"""
)

# The figure and the controls of one explorer, controls in on-screen order; `nth` counts
# controls of the same kind (for the locators in `_move`).
EXPLORER_STATE = """(explorer) => {
    const img = explorer.querySelector('.widget-output img, .jp-OutputArea-output img');
    const seen = {slider: 0, dropdown: 0};
    const controls = Array.from(explorer.querySelectorAll('.widget-slider, .widget-dropdown')).map(c => {
        const label = (c.querySelector('.widget-label') || {}).textContent || '';
        if (c.classList.contains('widget-dropdown')) {
            const select = c.querySelector('select');
            return {kind: 'dropdown', nth: seen.dropdown++, label, value: select.value,
                    options: Array.from(select.options).map(o => o.value)};
        }
        const handle = c.querySelector('.noUi-handle');
        return {
            kind: 'slider', nth: seen.slider++, label,
            value: (c.querySelector('.widget-readout') || {}).textContent || '',
            now: handle ? Number(handle.getAttribute('aria-valuenow')) : null,
            max: handle ? Number(handle.getAttribute('aria-valuemax')) : null,
        };
    });
    return {src: img ? img.src : null, title: (explorer.querySelector('.widget-html') || {}).textContent || '',
            controls};
}"""


def notebook_language(path: Path) -> str:
    """``"zh"`` for a notebook in a ``zh/`` folder (as conftest.py finds them), else ``"en"``."""
    return "zh" if path.parent.name == "zh" else "en"


def _screenshot_dir(language: str) -> Path:
    return SCREENSHOT_DIR / "zh" if language == "zh" else SCREENSHOT_DIR


def _open_notebook(page, lab, name: str) -> None:
    page.goto(f"{lab.url}/lab/tree/{name}?reset", wait_until="domcontentloaded", timeout=60_000)
    try:
        page.wait_for_function("() => !!window.jupyterapp", timeout=60_000)
        page.wait_for_function(KERNEL_IDLE, arg=name, timeout=KERNEL_READY_TIMEOUT_S * 1000, polling=250)
    except Exception as exc:
        folder = _screenshot_dir(lab.language)
        folder.mkdir(parents=True, exist_ok=True)
        shot = folder / f"{Path(name).stem}.not-ready.png"
        page.screenshot(path=str(shot))
        dialog = page.locator(".jp-Dialog")
        shown = f" A dialog is open: {dialog.first.inner_text()[:300]!r}." if dialog.count() else ""
        pytest.fail(
            f"{name}: JupyterLab did not open the notebook with an idle kernel within {KERNEL_READY_TIMEOUT_S}s "
            f"({type(exc).__name__}).{shown} Screenshot: {shot}. Server log:\n{lab.log_tail(15)}"
        )


def _problems(cells: list[dict]) -> list[str]:
    problems = []
    for cell in cells:
        if cell["type"] != "code" or not cell["source"]:
            continue
        where = f"cell {cell['index']} ({cell['source']!r})"
        if cell["count"] is None:
            problems.append(f"{where} did not run")
        if "raises-exception" not in cell["tags"]:
            for out in cell["outputs"]:
                if out["type"] == "error":
                    problems.append(f"{where} raised {out['ename']}: {out['evalue'][:200]}")
        expected = sum(out["widget"] for out in cell["outputs"])
        if cell["widgetError"]:
            problems.append(f"{where}: JupyterLab shows 'Error displaying widget'")
        elif cell["widgetViews"] != expected:
            problems.append(f"{where}: {expected} widget output(s), {cell['widgetViews']} rendered as widgets")
    return problems


def _widgets_settled(page, name: str) -> list[dict]:
    """Cells, once every widget output has rendered (or the bounded wait ran out)."""
    deadline = time.monotonic() + WIDGETS_TIMEOUT_S
    while True:
        cells = page.evaluate(CELLS, name)
        pending = [c for c in cells if c["widgetViews"] < sum(o["widget"] for o in c["outputs"])]
        if not pending or time.monotonic() > deadline:
            return cells
        time.sleep(0.5)


def _move(explorer, control: dict) -> str:
    """Move one control of an explorer; return a description of the move."""
    if control["kind"] == "dropdown":
        select = explorer.locator(".widget-dropdown select").nth(control["nth"])
        other = next(v for v in control["options"] if v != control["value"])
        select.select_option(other)
        return f"dropdown {control['label']!r}: {control['value']} -> {other}"
    handle = explorer.locator(".widget-slider .noUi-handle").nth(control["nth"])
    handle.scroll_into_view_if_needed()
    handle.focus()
    at_max = control["now"] is not None and control["max"] is not None and control["now"] >= control["max"]
    key = "ArrowLeft" if at_max else "ArrowRight"
    handle.press(key)
    return f"slider {control['label']!r} from {control['value']} ({key})"


def _wait_for_new_figure(page, explorer, before: str | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = explorer.evaluate(EXPLORER_STATE)["src"]
        if now and now != before:
            return True
        time.sleep(0.2)
    return False


def _exercise_explorers(page, name: str, stem: str, screenshots) -> tuple[list[str], list[str]]:
    """Move every control of every explorer. Returns (failures, notes)."""
    failures, notes = [], []
    explorers = page.locator(".course-explorer")
    for k in range(explorers.count()):
        explorer = explorers.nth(k)
        explorer.scroll_into_view_if_needed()
        state = explorer.evaluate(EXPLORER_STATE)
        label = f"explorer {k} ({state['title'][:60]!r})"
        if not state["src"]:
            failures.append(f"{label}: no figure (<img>) inside its Output widget")
            continue
        if not state["controls"]:
            failures.append(f"{label}: no IntSlider/SelectionSlider/Dropdown control found")
            continue
        explorer.screenshot(path=str(screenshots / f"{stem}.explorer-{k}.before.png"))
        for i, control in enumerate(state["controls"]):
            before = explorer.evaluate(EXPLORER_STATE)["src"]
            move = _move(explorer, control)
            # the first control must redraw; the others may legitimately not (a parameter
            # that the current choice of another control ignores), so they wait less
            changed = _wait_for_new_figure(page, explorer, before, REDRAW_TIMEOUT_S if i == 0 else 5)
            if not changed and i == 0:
                failures.append(f"{label}: moving {move} did not change the figure within {REDRAW_TIMEOUT_S}s")
            elif not changed:
                notes.append(f"{label}: moving {move} left the figure unchanged")
        explorer.screenshot(path=str(screenshots / f"{stem}.explorer-{k}.after.png"))
    return failures, notes


_OUTER = "document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer')"


def _full_screenshot(page, path: Path) -> list[Path]:
    """The whole notebook, sidebar closed, in a viewport as tall as the notebook.

    Notebooks taller than Chromium's largest texture come in parts: ``NAME.png``,
    ``NAME.part2.png``, ... Returns the files written.
    """
    page.evaluate("() => window.jupyterapp.shell.collapseLeft()")
    height = page.evaluate(f"() => {{ const o = {_OUTER}; return o ? o.scrollHeight : document.body.scrollHeight; }}")
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": min(int(height) + 200, MAX_SCREENSHOT_HEIGHT)})
    written = []
    try:
        # wait for JupyterLab to lay the panel out in the new viewport before measuring it (a
        # slow layout only means more, overlapping parts, so a timeout is not an error)
        try:
            page.wait_for_function(
                f"(h) => {{ const o = {_OUTER}; return !o || o.clientHeight >= h; }}",
                arg=min(int(height), MAX_SCREENSHOT_HEIGHT - 400),
                timeout=10_000,
            )
        except PlaywrightTimeout:
            pass
        step = page.evaluate(f"() => {{ const o = {_OUTER}; return o ? o.clientHeight : 0; }}") or MAX_SCREENSHOT_HEIGHT
        for part, top in enumerate(range(0, max(int(height), 1), int(step)), start=1):
            page.evaluate(f"(top) => {{ const o = {_OUTER}; if (o) o.scrollTop = top; }}", top)
            time.sleep(0.5)
            target = path if part == 1 else path.with_name(f"{path.stem}.part{part}{path.suffix}")
            page.screenshot(path=str(target))
            written.append(target)
    finally:
        page.evaluate(f"() => {{ const o = {_OUTER}; if (o) o.scrollTop = 0; }}")
        page.set_viewport_size(size)
    return written


SHUTDOWN_KERNEL = (
    "async (name) => {"
    + _FIND_PANEL
    + """
    const panel = findPanel(name);
    if (panel) { await panel.sessionContext.shutdown(); }
}"""
)


@pytest.fixture
def shutdown_kernel(page):
    """After the test, stop the notebook's kernel so kernels do not pile up across notebooks."""
    opened = []
    yield opened.append
    for name in opened:
        try:
            page.evaluate(SHUTDOWN_KERNEL, name)
        except Exception as exc:  # the server fixture's shutdown stops it anyway
            warnings.warn(f"{name}: kernel shutdown failed ({type(exc).__name__})", stacklevel=1)


def _make_lab(*args: str) -> str:
    """The commands ``make lab`` would run (``make -n``), continuation lines joined."""
    result = subprocess.run(
        ["make", "-n", "--no-print-directory", "lab", *args], cwd=_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.replace("\\\n", " ")


def test_make_lab_course_lang_zh_is_what_the_chinese_jupyterlab_runs():
    """``make lab COURSE_LANG=zh``: notebooks/zh/, COURSE_LANG=zh for the kernels, the settings rule the tests use."""
    chinese = _make_lab("COURSE_LANG=zh")
    launch = next(line for line in chinese.splitlines() if "jupyter lab" in line)
    for part in ("COURSE_LANG=zh ", "--ServerApp.root_dir=notebooks/zh", "--LabApp.user_settings_dir=build/lab-zh/user-settings"):
        assert part in launch, f"make lab COURSE_LANG=zh runs {launch!r}: no {part!r}"
    assert '"locale": "zh_CN"' in chinese and "build/lab-zh/user-settings/@jupyterlab/translation-extension/" in chinese
    english = _make_lab("COURSE_LANG=en")
    launch = next(line for line in english.splitlines() if "jupyter lab" in line)
    assert "--ServerApp.root_dir=notebooks " in launch + " " and "COURSE_LANG" not in launch and "lab-zh" not in english


MENU_LABELS = "() => Array.from(document.querySelectorAll('#jp-MainMenu .lm-MenuBar-itemLabel')).map(e => e.textContent)"
#: The first menu of JupyterLab's menu bar, in each language.
FILE_MENU = {"en": "File", "zh": "文件"}


@pytest.mark.parametrize("language", list(FILE_MENU))
def test_jupyterlab_speaks_the_language(labs, language, page, traffic, timings):
    """The interface language of each JupyterLab: the Chinese one is the language pack's."""
    if language not in LANGUAGES:
        pytest.skip(f"COURSE_BROWSER_LANGUAGES leaves out {language}")
    notebooks = _ROOT / (_EDITION or "notebooks") / ("zh" if language == "zh" else ".")
    if not any(notebooks.glob("[0-9][0-9]_*.ipynb")):
        pytest.skip(f"no notebooks in {notebooks}")
    lab = labs[language]
    folder = _screenshot_dir(language)
    folder.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    page.goto(f"{lab.url}/lab?reset", wait_until="domcontentloaded", timeout=60_000)
    try:
        page.wait_for_function("() => !!window.jupyterapp", timeout=60_000)
        page.wait_for_function(f"() => ({MENU_LABELS})().length > 3", timeout=60_000, polling=250)
    except PlaywrightTimeout:
        page.screenshot(path=str(folder / "interface.not-ready.png"))
        pytest.fail(f"{language}: JupyterLab's menu bar did not appear within 60s. Server log:\n{lab.log_tail(15)}")
    labels = page.evaluate(MENU_LABELS)
    page.locator("#jp-MainMenu .lm-MenuBar-item").first.click()
    page.wait_for_selector(".lm-Menu", timeout=10_000)
    page.screenshot(path=str(folder / "interface.png"))
    timings(f"lab/interface ({language})", open=time.monotonic() - start)
    problems = []
    if not labels or labels[0] != FILE_MENU[language]:
        problems.append(f"the menu bar reads {labels}, expected it to begin with {FILE_MENU[language]!r}")
    if traffic.blocked:
        problems.append(traffic.report())
    assert not problems, f"JupyterLab ({language}, screenshot {folder / 'interface.png'}): " + "; ".join(problems)


def test_notebook_runs_in_jupyterlab(notebook, lab, page, traffic, timings, shutdown_kernel):
    name = notebook.name
    shutdown_kernel(name)
    language = notebook_language(notebook)
    folder = _screenshot_dir(language)
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    _open_notebook(page, lab, name)
    t_open = time.monotonic()

    outcome = page.evaluate(RUN_ALL, [name, NOTEBOOK_TIMEOUT_S * 1000])
    if outcome == "timeout":
        page.screenshot(path=str(folder / f"{notebook.stem}.timeout.png"))
        pytest.fail(f"{name}: run-all did not finish within {NOTEBOOK_TIMEOUT_S:.0f}s (COURSE_BROWSER_NOTEBOOK_TIMEOUT)")
    page.wait_for_function(KERNEL_IDLE, arg=name, timeout=60_000, polling=250)
    t_run = time.monotonic()

    cells = _widgets_settled(page, name)
    problems = _problems(cells)
    t_widgets = time.monotonic()
    _full_screenshot(page, folder / f"{notebook.stem}.png")
    t_screenshot = time.monotonic()

    failures, notes = _exercise_explorers(page, name, notebook.stem, folder)
    t_explore = time.monotonic()
    timings(
        f"lab/{'zh/' if language == 'zh' else ''}{notebook.stem}",
        open=t_open - t0,
        run_all=t_run - t_open,
        widgets=t_widgets - t_run,
        screenshot=t_screenshot - t_widgets,
        explorers=t_explore - t_screenshot,
        total=t_explore - t0,
    )
    for note in notes:
        warnings.warn(f"{name}: {note}", stacklevel=1)

    messages = problems + failures
    # run-all also reports False when a cell tagged raises-exception raised as intended: the
    # per-cell checks above decide; only a failure of the command itself is reported here
    if outcome.startswith("error"):
        messages.append(f"JupyterLab's run-all command failed: {outcome}")
    if traffic.blocked:
        messages.append(traffic.report())
    assert not messages, f"{name} in JupyterLab (screenshot {folder / (notebook.stem + '.png')}):\n  " + "\n  ".join(messages)
