"""The student edition, English and Chinese: solutions stubbed, outputs cleared, and it runs top to bottom."""

import copy
import re

import nbformat
import pytest
from nbclient import NotebookClient

from course_utils.checks.core import NOT_ATTEMPTED
from course_utils.i18n import catalogue
from course_utils.tooling.nbval_compare import code_cells, nbval_difference
from course_utils.tooling.notebooks import course_notebooks
from course_utils.tooling.student import (
    STUB,
    STUBS,
    chinese_notebooks,
    notebook_language,
    strip_solutions,
    student_notebook,
    write_student_edition,
)

NOTEBOOKS = course_notebooks()
CHINESE = chinese_notebooks()
EDITIONS = [(path, "en") for path in NOTEBOOKS] + [(path, "zh") for path in CHINESE]
EDITION_IDS = [path.stem if language == "en" else f"zh/{path.stem}" for path, language in EDITIONS]
CHECK_LINE = re.compile(r"^(✅|❌|⏳) (\d\d\.[a-z0-9_]+): (.*)$", re.S)
SOLUTION = re.compile(r"### BEGIN SOLUTION\n(.*?)[ \t]*### END SOLUTION", re.S)


def test_strip_solutions_keeps_indentation_and_the_rest():
    cell = "def f(x):\n    y = 1\n    ### BEGIN SOLUTION\n    return x + y\n    ### END SOLUTION\n\nprint('after')"
    assert strip_solutions(cell) == f"def f(x):\n    y = 1\n    # YOUR CODE HERE\n    {STUB}\n\nprint('after')"


def test_strip_solutions_speaks_chinese_in_chinese():
    cell = "def f(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION"
    stub = strip_solutions(cell, "zh")
    assert stub == 'def f(x):\n    # 在这里写你的代码\n    raise NotImplementedError("在这里写你的代码：替换这一行")'
    compile(stub, "<stub>", "exec")
    with pytest.raises(ValueError, match="language"):
        strip_solutions(cell, "fr")


def test_a_notebook_says_its_language():
    chinese = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell('import course_utils\n\ncourse_utils.set_language("zh")')]
    )
    english = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 01"), nbformat.v4.new_code_cell("import torch")])
    assert notebook_language(chinese) == "zh"
    assert notebook_language(english) == "en"
    assert notebook_language(nbformat.v4.new_notebook()) == "en"


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


def test_make_student_writes_both_languages(tmp_path):
    written = write_student_edition(tmp_path)
    assert sorted(p.name for p in tmp_path.glob("*.ipynb")) == [p.name for p in NOTEBOOKS]
    assert sorted(p.name for p in (tmp_path / "zh").glob("*.ipynb")) == [p.name for p in CHINESE]
    for path in written:
        if path.suffix == ".ipynb":
            language = "zh" if path.parent.name == "zh" else "en"
            assert notebook_language(nbformat.read(path, as_version=4)) == language, path


@pytest.fixture(scope="module", params=EDITIONS, ids=EDITION_IDS)
def editions(request):
    path, language = request.param
    solution = nbformat.read(path, as_version=4)
    return path, solution, student_notebook(solution), language


def test_student_edition_has_no_solution_code(editions):
    path, solution, student, _ = editions
    blocks = [b for c in solution.cells if c.cell_type == "code" for b in SOLUTION.findall(c.source)]
    assert blocks, f"{path.name} has no exercise solutions"
    text = "\n".join(c.source for c in student.cells)
    assert "### BEGIN SOLUTION" not in text
    for block in blocks:
        assert block.strip() not in text, f"{path.name}: solution code left in the student edition:\n{block}"


def test_student_edition_changes_nothing_but_solutions_and_outputs(editions):
    path, solution, student, language = editions
    assert notebook_language(solution) == language
    assert len(student.cells) == len(solution.cells)
    for before, after in zip(solution.cells, student.cells):
        assert before.cell_type == after.cell_type
        if before.cell_type == "markdown":
            assert before.source == after.source
        else:
            assert after.outputs == [] and after.execution_count is None
            assert after.source == strip_solutions(before.source, language)
    # every stub is in the notebook's language, and only in it
    text = "\n".join(c.source for c in student.cells if c.cell_type == "code")
    blocks = sum(len(SOLUTION.findall(c.source)) for c in solution.cells if c.cell_type == "code")
    for code, (comment, stub) in STUBS.items():
        expected = blocks if code == language else 0
        assert text.count(stub) == expected and text.count(comment) == expected, f"{path.name}: {code} stubs"


@pytest.mark.parametrize("path", CHINESE, ids=[p.stem for p in CHINESE])
def test_chinese_student_edition_stubs_every_exercise_the_english_one_does(path):
    """The Chinese student edition: the English one's cells after the language cell, each exercise stubbed."""
    english = student_notebook(nbformat.read(path.parents[1] / path.name, as_version=4))
    chinese = student_notebook(nbformat.read(path, as_version=4))
    assert notebook_language(chinese) == "zh"
    assert len(chinese.cells) == len(english.cells) + 1, f"{path.name}: one language cell in front, then the English cells"
    stub_en, stub_zh = STUBS["en"][1], STUBS["zh"][1]
    for index, (en, zh) in enumerate(zip(english.cells, chinese.cells[1:]), start=1):
        assert en.cell_type == zh.cell_type, f"{path.name} cell {index}"
        if en.cell_type == "code":
            assert zh.source.count(stub_zh) == en.source.count(stub_en), (
                f"{path.name} cell {index}: exercises stubbed differently"
            )
            assert _code_lines(zh.source.replace(stub_zh, stub_en)) == _code_lines(en.source), (
                f"{path.name} cell {index}: the code differs"
            )


def _code_lines(source: str) -> list[str]:
    """The lines of ``source`` that are code, with string literals and comments blanked (they are translated)."""
    import io
    import tokenize

    texts = {tokenize.STRING, getattr(tokenize, "FSTRING_MIDDLE", tokenize.STRING)}  # Python 3.12+ splits f-strings
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return [line for line in source.splitlines() if line.strip() and not line.strip().startswith(("#", "%", "!"))]
    kept = [
        tok.string if tok.type not in texts else "S"
        for tok in tokens
        if tok.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)
    ]
    return [t for t in kept if t]


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


#: The second numeric setting: nbval's run of the solution edition (`make test`) uses the machine's best
#: vector instructions and one thread per kernel; the student edition runs without vector
#: instructions and on two threads, and its outputs must still equal the stored ones.
SECOND_SETTING = {"ATEN_CPU_CAPABILITY": "default", "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}


def _is_exercise_cell(solution_cell) -> bool:
    """A cell the student edition changes: it holds a solution, or shows a check's result."""
    if "### BEGIN SOLUTION" in solution_cell.source:
        return True
    return any(CHECK_LINE.match(output.get("data", {}).get("text/plain", "")) for output in solution_cell.outputs)


@pytest.mark.parametrize(
    "editions",
    [pytest.param(e, id=i, marks=[pytest.mark.full_layer] if e[1] == "zh" else []) for e, i in zip(EDITIONS, EDITION_IDS)],
    indirect=True,
)
def test_student_edition_runs_and_only_says_not_attempted(editions, tmp_path, monkeypatch):
    """The student edition runs top to bottom, its checks say "not attempted", and every other cell
    prints what the solution edition stored, compared as strict nbval compares, in a second numeric
    setting (no vector instructions, two threads): a stored output is a fact about the course, not
    about one CPU."""
    path, solution, student, language = editions
    if not _check_outputs(solution):
        pytest.skip(f"{path} is stored unexecuted: nothing to compare with (make zh executes it)")
    student = copy.deepcopy(student)
    for name, value in SECOND_SETTING.items():
        monkeypatch.setenv(name, value)
    not_attempted = NOT_ATTEMPTED if language == "en" else catalogue(language).get(NOT_ATTEMPTED, NOT_ATTEMPTED)
    client = NotebookClient(student, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError on any exception not tagged raises-exception
    solved = {(i, ex) for i, ex, icon, _ in _check_outputs(solution) if icon == "✅"}
    demos = {(i, ex): (icon, msg) for i, ex, icon, msg in _check_outputs(solution) if icon != "✅"}
    results = _check_outputs(student)
    assert {(i, ex) for i, ex, _, _ in results} >= solved, f"{path.name}: some checks did not run in the student edition"
    for index, ex_id, icon, message in results:
        if (index, ex_id) in solved:
            assert icon == "⏳" and not_attempted in message, f"{path.name} cell {index}: {icon} {ex_id}: {message}"
        else:  # a demonstration of a wrong attempt: unchanged
            assert demos[(index, ex_id)] == (icon, message), f"{path.name} cell {index}: {ex_id} changed"
    differences = [
        f"{path.name} code cell {number}: {difference}"
        for number, (stored, fresh) in enumerate(zip(code_cells(solution), code_cells(student)))
        if not _is_exercise_cell(stored) and (difference := nbval_difference(stored, fresh.outputs))
    ]
    assert not differences, "\n".join(differences)
