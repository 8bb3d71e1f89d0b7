"""Static checks of the committed notebooks: executed in order, clean outputs, course structure."""

import json
import re
from pathlib import Path

import nbformat
import pytest

from course_utils.tooling.notebooks import keep_reproduced_outputs

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_PATHS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
ZH_PATHS = sorted((ROOT / "notebooks" / "zh").glob("[0-9][0-9]_*.ipynb"))
RAISES = {"raises-exception", "nbval-raises-exception"}
MACHINE_PATH = re.compile(r"(/tmp/|/root/|/home/|/work/|/Users/|[A-Z]:\\\\Users)")


def load(path):
    return json.loads(path.read_text())


def code_cells(nb):
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def source(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


@pytest.fixture(params=NOTEBOOK_PATHS + ZH_PATHS, ids=[str(p.relative_to(ROOT / "notebooks")) for p in NOTEBOOK_PATHS + ZH_PATHS])
def notebook(request):
    return request.param, load(request.param)


def test_the_course_starts_with_notebook_00():
    assert NOTEBOOK_PATHS and NOTEBOOK_PATHS[0].name == "00_start_here.ipynb"


def test_execution_counts_are_1_to_n_in_order(notebook):
    path, nb = notebook
    counts = [c["execution_count"] for c in code_cells(nb) if source(c).strip()]
    assert counts == list(range(1, len(counts) + 1)), f"{path.name}: re-execute it top to bottom (make execute)"


def test_every_cell_has_stored_outputs_or_is_silent_by_design(notebook):
    path, nb = notebook
    with_output = [c for c in code_cells(nb) if c["outputs"]]
    assert len(with_output) >= len(code_cells(nb)) // 3, f"{path.name}: most cells have no stored outputs"


def test_no_error_output_unless_tagged_to_raise(notebook):
    path, nb = notebook
    for index, cell in enumerate(code_cells(nb)):
        errors = [o for o in cell["outputs"] if o["output_type"] == "error"]
        tags = set(cell["metadata"].get("tags", []))
        assert not errors or tags & RAISES, f"{path.name} code cell {index}: {errors[0]['ename']} without a raises-exception tag"


def test_no_machine_paths_or_addresses_in_outputs(notebook):
    path, nb = notebook
    for index, cell in enumerate(code_cells(nb)):
        for output in cell["outputs"]:
            text = json.dumps({k: v for k, v in output.items() if k != "data"} | {"data": {k: v for k, v in output.get("data", {}).items() if not k.startswith("image/")}})
            assert not MACHINE_PATH.search(text), f"{path.name} code cell {index} shows a machine path"


def test_no_widget_state_or_volatile_metadata(notebook):
    path, nb = notebook
    assert "widgets" not in nb["metadata"], f"{path.name}: stored widget state (run make execute)"
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    for cell in nb["cells"]:
        assert set(cell["metadata"]) <= {"tags", "slideshow"}, f"{path.name}: volatile cell metadata {set(cell['metadata'])}"
        for output in cell.get("outputs", []):
            assert "application/vnd.jupyter.widget-view+json" not in output.get("data", {}), (
                f"{path.name}: a stored widget view (a random model id without its state): run make execute"
            )


def test_ignored_outputs_are_rare(notebook):
    path, nb = notebook
    ignored = [c for c in code_cells(nb) if "nbval-ignore-output" in c["metadata"].get("tags", []) or "NBVAL_IGNORE_OUTPUT" in source(c)]
    limit = max(3, len(code_cells(nb)) // 4)
    assert len(ignored) <= limit, f"{path.name}: {len(ignored)} cells ignore their output; keep it for version, timing and hardware cells"


def test_opens_with_objectives_and_time_and_closes_with_summary_and_misconceptions(notebook):
    path, nb = notebook
    markdown = [source(c) for c in nb["cells"] if c["cell_type"] == "markdown"]
    opening, closing = "\n".join(markdown[:2]).lower(), "\n".join(markdown[-3:]).lower()
    if path.parent.name == "zh":  # the Chinese edition's fixed headings
        assert "你将" in opening and "**用时：**" in opening, f"zh/{path.name}: opening lacks 你将… or **用时：**"
        assert "**预备知识：**" in opening, f"zh/{path.name}: opening lacks **预备知识：**"
        assert "小结" in closing and "常见误解" in closing, f"zh/{path.name}: closing lacks 小结 or 常见误解"
        return
    assert "time" in opening and ("you will" in opening or "objectives" in opening), f"{path.name}: opening lacks objectives or time"
    assert "prerequisite" in opening, f"{path.name}: opening lacks prerequisites"
    assert "summary" in closing and "misconception" in closing, f"{path.name}: closing lacks summary or misconceptions"


def test_solution_markers_are_balanced(notebook):
    path, nb = notebook
    for cell in code_cells(nb):
        text = source(cell)
        assert text.count("### BEGIN SOLUTION") == text.count("### END SOLUTION"), path.name


STATED_TIME = {"en": re.compile(r"\*\*Time:\*\* about (\d+) minutes"), "zh": re.compile(r"\*\*用时：\*\* 约 (\d+) 分钟")}


@pytest.mark.parametrize("readme, language", [("README.md", "en"), ("README.zh-CN.md", "zh")])
def test_course_map_times_are_the_notebooks_own(readme, language):
    rows = re.findall(r"^\| \[[^\]]+\]\((notebooks/[^)]+\.ipynb)\) \|.*\| (\d+) \|$", (ROOT / readme).read_text(), re.M)
    assert len(rows) == len(NOTEBOOK_PATHS), f"{readme}: the course map should list every notebook"
    for link, minutes in rows:
        text = "".join(source(c) for c in load(ROOT / link)["cells"] if c["cell_type"] == "markdown")
        stated = STATED_TIME[language].search(text)
        assert stated, f"{link} states no time"
        assert stated.group(1) == minutes, f"{readme} gives {link} {minutes} minutes; the notebook says {stated.group(1)}"


def _cell(source, text, count=1):
    cell = nbformat.v4.new_code_cell(source, execution_count=count)
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
    return cell


def test_make_execute_keeps_only_the_outputs_a_rerun_reproduces():
    stored = nbformat.v4.new_notebook(cells=[
        _cell("train()", "GPT: 100%|██| 500/500 [00:11<00:00, loss=1.927]\n", 1),
        _cell("print(loss)", "1.78\n", 2),
        _cell("# NBVAL_IGNORE_OUTPUT\nprint(seconds)", "11.6 s\n", 3),
        _cell("print(x)", "1\n", 4),
    ])
    fresh = nbformat.v4.new_notebook(cells=[
        _cell("train()", "GPT: 100%|██| 500/500 [00:09<00:00, loss=1.931]\n", 1),  # timing: the same to nbval
        _cell("print(loss)", "1.79\n", 2),  # a real change
        _cell("# NBVAL_IGNORE_OUTPUT\nprint(seconds)", "9.8 s\n", 3),  # not compared
        _cell("print(x + 1)", "1\n", 4),  # the code changed
    ])
    fresh.cells[0].outputs = [  # the bar refreshed more often this time
        nbformat.v4.new_output("stream", name="stdout", text="GPT:  50%|█ | 250/500 [00:05<00:05, loss=2.4]"),
        nbformat.v4.new_output("stream", name="stdout", text="\rGPT: 100%|██| 500/500 [00:09<00:00, loss=1.931]\n"),
    ]
    assert keep_reproduced_outputs(stored, fresh) == 2
    texts = [cell.outputs[0]["text"] for cell in fresh.cells]
    assert texts == [stored.cells[0].outputs[0]["text"], "1.79\n", "11.6 s\n", "1\n"]
