"""Write the student edition: solution blocks replaced by a stub, outputs cleared.

``python -m course_utils.tooling.student [OUTDIR]`` (``make student``) reads every
notebook in ``notebooks/`` and writes ``OUTDIR`` (default ``build/student/``), then every
Chinese notebook in ``notebooks/zh/`` and writes ``OUTDIR/zh/`` (with the glossary, 术语表.md).
In each code cell, the lines between ``### BEGIN SOLUTION`` and ``### END SOLUTION``
(nbgrader's markers) become a comment and ``raise NotImplementedError(...)`` at the marker's
indentation, in the notebook's language. Outputs and execution counts are cleared; nothing
else changes.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

import nbformat

from .notebooks import NOTEBOOKS, course_notebooks

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
#: The Chinese notebooks (``make zh`` builds them from the English ones and their catalogues).
ZH_NOTEBOOKS = NOTEBOOKS / "zh"
GLOSSARY = "术语表.md"
#: What stands where a solution was, per language: a comment line and the stub line.
STUBS = {
    "en": ("# YOUR CODE HERE", 'raise NotImplementedError("your code here: replace this line")'),
    "zh": ("# 在这里写你的代码", 'raise NotImplementedError("在这里写你的代码：替换这一行")'),
}
STUB = STUBS["en"][1]
_MARKER = re.compile(r"^(\s*)### (BEGIN|END) SOLUTION\s*$")
_SET_LANGUAGE = re.compile(r"""set_language\(\s*["']([A-Za-z_-]+)["']\s*\)""")


def chinese_notebooks() -> list[Path]:
    """The Chinese notebooks that exist, in course order."""
    return sorted(ZH_NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def notebook_language(nb: nbformat.NotebookNode) -> str:
    """``"zh"`` for a Chinese notebook (its first code cell calls ``set_language("zh")``), else ``"en"``."""
    first = next((cell for cell in nb.cells if cell.cell_type == "code"), None)
    match = _SET_LANGUAGE.search(first.source) if first is not None else None
    code = match.group(1).lower().replace("-", "_") if match else "en"
    return "zh" if code.startswith("zh") else "en"


def strip_solutions(source: str, language: str = "en") -> str:
    """Replace every solution block of one cell's ``source`` by a stub in ``language``.

    Raises:
        ValueError: on an unmatched or nested marker, or a language without a stub.
    """
    if language not in STUBS:
        raise ValueError(f"language must be one of {sorted(STUBS)}, got {language!r}")
    comment, stub = STUBS[language]
    out: list[str] = []
    inside = False
    for number, line in enumerate(source.splitlines(), start=1):
        match = _MARKER.match(line)
        if match and match.group(2) == "BEGIN":
            if inside:
                raise ValueError(f"line {number}: nested {BEGIN}")
            inside = True
            indent = match.group(1)
            out.append(f"{indent}{comment}")
            out.append(f"{indent}{stub}")
        elif match:
            if not inside:
                raise ValueError(f"line {number}: {END} without {BEGIN}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{BEGIN} without {END}")
    return "\n".join(out)


def student_notebook(nb: nbformat.NotebookNode, language: str | None = None) -> nbformat.NotebookNode:
    """The student edition of one notebook (a new object; ``nb`` is unchanged).

    Args:
        language: of the stubs; default: the notebook's own (:func:`notebook_language`).
    """
    language = language or notebook_language(nb)
    nb = nbformat.from_dict(nb)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        try:
            cell.source = strip_solutions(cell.source, language)
        except ValueError as exc:
            raise ValueError(f"cell {cell.get('id', '?')}: {exc}") from None
        cell.outputs = []
        cell.execution_count = None
    nb.metadata.pop("widgets", None)
    return nb


def _write(paths: list[Path], outdir: Path, language: str) -> list[Path]:
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in paths:
        nb = student_notebook(nbformat.read(path, as_version=4), language)
        nbformat.validate(nb)
        target = outdir / path.name
        nbformat.write(nb, target)
        written.append(target)
    return written


def write_student_edition(outdir: Path) -> list[Path]:
    """Write the student edition of every course notebook to ``outdir``, the Chinese ones to ``outdir/zh``."""
    outdir = Path(outdir)
    written = _write(course_notebooks(), outdir, "en")
    chinese = chinese_notebooks()
    if chinese:
        written += _write(chinese, outdir / "zh", "zh")
        if (ZH_NOTEBOOKS / GLOSSARY).is_file():
            shutil.copyfile(ZH_NOTEBOOKS / GLOSSARY, outdir / "zh" / GLOSSARY)
            written.append(outdir / "zh" / GLOSSARY)
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
