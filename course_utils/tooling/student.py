"""Write the student edition: solution blocks replaced by a stub, outputs cleared.

``python -m course_utils.tooling.student [OUTDIR]`` (``make student``) reads every
notebook in ``notebooks/`` and writes ``OUTDIR`` (default ``build/student/``). In each
code cell, the lines between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` (nbgrader's
markers) become ``raise NotImplementedError(...)`` at the marker's indentation. Outputs
and execution counts are cleared; nothing else changes.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

from .notebooks import course_notebooks

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
STUB = 'raise NotImplementedError("your code here: replace this line")'
_MARKER = re.compile(r"^(\s*)### (BEGIN|END) SOLUTION\s*$")


def strip_solutions(source: str) -> str:
    """Replace every solution block of one cell's ``source`` by a stub.

    Raises:
        ValueError: on an unmatched or nested marker.
    """
    out: list[str] = []
    inside = False
    for number, line in enumerate(source.splitlines(), start=1):
        match = _MARKER.match(line)
        if match and match.group(2) == "BEGIN":
            if inside:
                raise ValueError(f"line {number}: nested {BEGIN}")
            inside = True
            indent = match.group(1)
            out.append(f"{indent}# YOUR CODE HERE")
            out.append(f"{indent}{STUB}")
        elif match:
            if not inside:
                raise ValueError(f"line {number}: {END} without {BEGIN}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{BEGIN} without {END}")
    return "\n".join(out)


def student_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The student edition of one notebook (a new object; ``nb`` is unchanged)."""
    nb = nbformat.from_dict(nb)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        try:
            cell.source = strip_solutions(cell.source)
        except ValueError as exc:
            raise ValueError(f"cell {cell.get('id', '?')}: {exc}") from None
        cell.outputs = []
        cell.execution_count = None
    nb.metadata.pop("widgets", None)
    return nb


def write_student_edition(outdir: Path) -> list[Path]:
    """Write the student edition of every course notebook to ``outdir``."""
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in course_notebooks():
        nb = student_notebook(nbformat.read(path, as_version=4))
        nbformat.validate(nb)
        target = outdir / path.name
        nbformat.write(nb, target)
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", nargs="?", type=Path, default=Path("build/student"))
    args = parser.parse_args(argv)
    for path in write_student_edition(args.outdir):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
