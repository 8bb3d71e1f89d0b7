"""Execute the course notebooks in place and strip what varies between runs.

``python -m course_utils.tooling.notebooks [NOTEBOOK ...]`` (``make execute``) runs each
notebook top to bottom in a fresh kernel of this environment, the way nbval does, then
normalises it so that a re-run changes nothing but real outputs: volatile metadata is dropped, and
an output the re-run reproduces (as strict nbval compares it) keeps its stored form.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from .nbval_compare import code_cells, is_compared, nbval_difference

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
KERNEL = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def course_notebooks() -> list[Path]:
    """The solution-edition notebooks, in course order."""
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def normalise(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop what changes from run to run: widget state and views, timings, kernel versions; stable cell ids.

    A stored widget view would point at a model whose state is not stored (a random id that
    changes every run), so it is dropped: the stored notebook shows each explorer's static
    picture, and running the cell brings the live widget back.
    """
    nb.metadata = nbformat.NotebookNode(
        kernelspec=KERNEL,
        language_info={"name": "python", "pygments_lexer": "ipython3"},
    )
    for index, cell in enumerate(nb.cells):
        cell.id = f"cell-{index:03d}"
        keep = {k: v for k, v in cell.metadata.items() if k in ("tags", "slideshow")}
        cell.metadata = nbformat.NotebookNode(keep)
        for output in cell.get("outputs", []):
            output.get("data", {}).pop(WIDGET_VIEW, None)
    return nb


def _images(outputs) -> list:
    """The images among ``outputs``, in order."""
    images = (output.get("data", {}).get(mime) for output in outputs for mime in ("image/png", "image/jpeg"))
    return [image for image in images if image is not None]


def keep_reproduced_outputs(stored: nbformat.NotebookNode, fresh: nbformat.NotebookNode) -> int:
    """Put back each stored output that the fresh run reproduced; return how many cells kept theirs.

    A cell keeps its stored outputs when its source is unchanged and either strict nbval would pass
    the fresh outputs against them with identical images, or nbval does not compare the cell
    (version, timing and hardware cells). So `make execute` changes nothing in git but what really
    changed: a progress bar's timing or a training's duration does not churn the notebooks.
    """
    kept = 0
    for old, new in zip(code_cells(stored), code_cells(fresh)):
        if old.source != new.source or old.execution_count != new.execution_count:
            continue
        reproduced = not nbval_difference(old, new.outputs) and _images(old.outputs) == _images(new.outputs)
        if not is_compared(old) or reproduced:
            new.outputs = old.outputs
            kept += 1
    return kept


def execute(path: Path, timeout: int = 600) -> float:
    """Execute ``path`` in place in a fresh kernel; return the seconds it took."""
    nb = nbformat.read(path, as_version=4)
    stored = copy.deepcopy(nb)
    start = time.perf_counter()
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        record_timing=False,
    )
    client.execute()
    seconds = time.perf_counter() - start
    keep_reproduced_outputs(stored, nb)
    nbformat.write(normalise(nb), path)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebook in notebooks/")
    args = parser.parse_args(argv)
    for path in args.notebooks or course_notebooks():
        print(f"executing {path.name} ...", end=" ", flush=True)
        print(f"{execute(path):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
