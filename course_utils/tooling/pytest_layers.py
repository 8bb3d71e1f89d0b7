"""The course's pytest plugin (pyproject's addopts load it with ``-p``): how the suite is spread
over the CPU cores, which layer each test belongs to, and the one summary line at the end.

Under pytest-xdist (`make test` runs ``-n 2 --dist loadgroup``) every cell of one notebook goes to
the same worker, because nbval runs a notebook's cells in one kernel, in order; the other tests
are spread one by one, the long ones first. xdist's own loadgroup marks cannot do it with pytest 9
(xdist rewrites ``item._nodeid``, which pytest 9 no longer reads), so this plugin gives xdist the
scheduler itself.

Some tests are marked ``full_layer`` and run by `make test-full` (called from `.ci/run`), not by
`make test`: the Chinese notebooks under strict nbval and the Chinese student edition executed
(their code is the English code: tests/test_translation.py holds that, and that their outputs carry
the English numbers, a fast guard `make test` keeps), and the tests marked ``slow`` (each repeats at
length what a notebook that `make test` runs already shows).

A plugin rather than tests/conftest.py: a conftest's per-item hooks reach only the items below its
folder, and the notebooks are not below tests/.
"""

import time

STARTED = time.perf_counter()  # the plugin is imported as pytest starts

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CHINESE_NOTEBOOKS = ROOT / "notebooks" / "zh"
def _notebook_of(item) -> Path | None:
    path = Path(str(item.path))
    return path if path.suffix == ".ipynb" else None


#: Long single tests, started first so that no worker is left with one of them at the end.
LONG_TESTS = ("test_student_edition_runs", "test_compiled_flex_attention", "reaches_its_held_out_loss_target")


def pytest_itemcollected(item):
    """Mark each item of the full layer as it is collected."""
    notebook = _notebook_of(item)
    if item.get_closest_marker("slow") or (notebook is not None and CHINESE_NOTEBOOKS in notebook.parents):
        item.add_marker(pytest.mark.full_layer)


class WorkUnitSpec:
    """The hook a conftest implements to keep tests together on one worker."""

    @pytest.hookspec(firstresult=True)
    def pytest_course_work_unit(self, nodeid: str) -> str | None:
        """The name of the work unit of the test ``nodeid``, or None to leave it to the default.

        Tests of one unit run on one worker, in collection order (e.g. the notebooks that share
        one JupyterLab). The controller calls it, knowing test ids only.
        """


def pytest_addhooks(pluginmanager):
    pluginmanager.add_hookspecs(WorkUnitSpec)


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    """With ``--dist loadgroup``: one work unit per notebook, or as a conftest's
    ``pytest_course_work_unit`` says; every other test a unit of its own."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class WorkUnitScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            if path.endswith(".ipynb"):
                return path
            return config.hook.pytest_course_work_unit(nodeid=nodeid) or nodeid

    return WorkUnitScheduling(config, log)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: 0 if _notebook_of(item) else 1 if any(name in item.nodeid for name in LONG_TESTS) else 2)


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
        editions = "no notebook under nbval"
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
