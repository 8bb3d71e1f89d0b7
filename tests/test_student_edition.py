"""The student edition: solutions stubbed, outputs cleared, and it runs top to bottom."""

import re

import nbformat
import pytest
from nbclient import NotebookClient

from course_utils.tooling.notebooks import course_notebooks
from course_utils.tooling.student import STUB, strip_solutions, student_notebook

NOTEBOOKS = course_notebooks()
CHECK_LINE = re.compile(r"^(✅|❌|⏳) (\d\d\.[a-z0-9_]+): (.*)$", re.S)
SOLUTION = re.compile(r"### BEGIN SOLUTION\n(.*?)[ \t]*### END SOLUTION", re.S)


def test_strip_solutions_keeps_indentation_and_the_rest():
    cell = "def f(x):\n    y = 1\n    ### BEGIN SOLUTION\n    return x + y\n    ### END SOLUTION\n\nprint('after')"
    assert strip_solutions(cell) == f"def f(x):\n    y = 1\n    # YOUR CODE HERE\n    {STUB}\n\nprint('after')"


@pytest.mark.parametrize(
    "bad,words",
    [
        ("### BEGIN SOLUTION\nx = 1", "without ### END"),
        ("x = 1\n### END SOLUTION", "without ### BEGIN"),
        ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "nested"),
    ],
)
def test_unbalanced_markers_are_an_error(bad, words):
    with pytest.raises(ValueError, match=words):
        strip_solutions(bad)


@pytest.fixture(scope="module", params=NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def editions(request):
    solution = nbformat.read(request.param, as_version=4)
    return request.param, solution, student_notebook(solution)


def test_student_edition_has_no_solution_code(editions):
    path, solution, student = editions
    blocks = [b for c in solution.cells if c.cell_type == "code" for b in SOLUTION.findall(c.source)]
    assert blocks, f"{path.name} has no exercise solutions"
    text = "\n".join(c.source for c in student.cells)
    assert "### BEGIN SOLUTION" not in text
    for block in blocks:
        assert block.strip() not in text, f"{path.name}: solution code left in the student edition:\n{block}"


def test_student_edition_changes_nothing_but_solutions_and_outputs(editions):
    path, solution, student = editions
    assert len(student.cells) == len(solution.cells)
    for before, after in zip(solution.cells, student.cells):
        assert before.cell_type == after.cell_type
        if before.cell_type == "markdown":
            assert before.source == after.source
        else:
            assert after.outputs == [] and after.execution_count is None
            assert after.source == strip_solutions(before.source)


def _check_outputs(nb):
    """(cell index, exercise id, icon, message) of every displayed check result."""
    found = []
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            text = output.get("data", {}).get("text/plain", "")
            match = CHECK_LINE.match(text)
            if match:
                found.append((index, match.group(2), match.group(1), match.group(3)))
    return found


def test_student_edition_runs_and_only_says_not_attempted(editions, tmp_path):
    path, solution, student = editions
    client = NotebookClient(student, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError on any exception not tagged raises-exception
    solved = {(i, ex) for i, ex, icon, _ in _check_outputs(solution) if icon == "✅"}
    demos = {(i, ex): (icon, msg) for i, ex, icon, msg in _check_outputs(solution) if icon != "✅"}
    results = _check_outputs(student)
    assert {(i, ex) for i, ex, _, _ in results} >= solved, f"{path.name}: some checks did not run in the student edition"
    for index, ex_id, icon, message in results:
        if (index, ex_id) in solved:
            assert icon == "⏳" and "not attempted yet" in message, f"{path.name} cell {index}: {icon} {ex_id}: {message}"
        else:  # a demonstration of a wrong attempt: unchanged
            assert demos[(index, ex_id)] == (icon, message), f"{path.name} cell {index}: {ex_id} changed"
