"""Shared pytest fixtures, device parametrisation, and how the suite is spread over the CPU cores.

Test modules import DEVICES from here. Under pytest-xdist (`make test` runs `-n 2 --dist loadgroup`)
every cell of one notebook goes to the same worker, because nbval runs a notebook's cells in one
kernel, in order; the other tests are spread one by one.

Some tests are marked ``full_layer`` and run by `make test-full` (called from `.ci/run`), not by
`make test`: the Chinese notebooks under strict nbval and the Chinese student edition executed
(their code is the English code: tests/test_translation.py holds that, and that their outputs carry
the English numbers, a fast guard `make test` keeps), and the tests marked ``slow`` (each repeats at
length what a notebook that `make test` runs already shows).
"""

import time

STARTED = time.perf_counter()  # conftest is imported as pytest starts

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

CUDA = pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"))
DEVICES = ["cpu", CUDA]
ROOT = Path(__file__).resolve().parents[1]
CHINESE_NOTEBOOKS = ROOT / "notebooks" / "zh"


@pytest.fixture
def one_thread():
    """Run a test on one CPU thread: for tiny tensors, extra threads only add overhead."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _notebook_of(item) -> Path | None:
    path = Path(str(item.path))
    return path if path.suffix == ".ipynb" else None


#: Long single tests, started first so that no worker is left with one of them at the end.
LONG_TESTS = ("test_student_edition_runs", "test_compiled_flex_attention", "reaches_its_held_out_loss_target")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: 0 if _notebook_of(item) else 1 if any(name in item.nodeid for name in LONG_TESTS) else 2)
    for item in items:
        if item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.full_layer)
        notebook = _notebook_of(item)
        if notebook is None:
            continue
        item.add_marker(pytest.mark.xdist_group(notebook.relative_to(ROOT).as_posix()))
        if CHINESE_NOTEBOOKS in notebook.parents:
            item.add_marker(pytest.mark.full_layer)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """One line at the end: what ran (tests, notebooks, editions) and how long it took."""
    if hasattr(config, "workerinput"):
        return
    reports = [r for key in ("passed", "failed", "error", "skipped", "xfailed", "xpassed") for r in terminalreporter.stats.get(key, [])]
    calls = [r for r in reports if r.when == "call" or (r.when == "setup" and r.outcome != "passed")]
    counts = {key: sum(1 for r in calls if r.outcome == key) for key in ("passed", "failed", "skipped")}
    notebooks = sorted({r.nodeid.split("::")[0] for r in calls if r.nodeid.split("::")[0].endswith(".ipynb")})
    english = [n for n in notebooks if "/zh/" not in n]
    chinese = [n for n in notebooks if "/zh/" in n]
    student = sorted({r.nodeid for r in calls if "test_student_edition_runs" in r.nodeid and r.outcome == "passed"})
    editions = f"{len(english)} English" + (f" and {len(chinese)} Chinese" if chinese else "") + " notebooks under strict nbval"
    if not notebooks:
        editions = "no notebooks"
    if student:
        editions += f"; {len(student)} student-edition notebooks executed in a second numeric setting"
    seconds = time.perf_counter() - STARTED
    status = "passed" if exitstatus == 0 else "FAILED"
    config._course_summary = (
        f"course tests {status}: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped; "
        f"{editions}; {seconds:.0f} s"
    )


def pytest_unconfigure(config):
    """The summary line goes last, after pytest's own."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if getattr(config, "_course_summary", None) and reporter is not None:
        reporter.write_line(config._course_summary, bold=True)
