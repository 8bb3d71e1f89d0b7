"""Compare a cell's fresh outputs with its stored ones exactly as strict nbval does.

nbval compares only while it runs a notebook itself. The tests that execute a notebook another way
(the student edition, in a second numeric setting) and `make execute` (which keeps a stored output
that a re-run reproduces, so that re-executing changes nothing in git but real changes) use this,
built from nbval's own functions:
streams coalesced and their carriage returns applied, the sanitize file of the suite applied,
the same keys skipped (metadata, tracebacks, images, widget views), and cells marked
``# NBVAL_IGNORE_OUTPUT`` / ``nbval-ignore-output`` or ``# NBVAL_SKIP`` / ``nbval-skip`` left out.
"""

from __future__ import annotations

import copy
import re
from collections import defaultdict
from pathlib import Path

import nbformat
from nbval.plugin import coalesce_streams, get_sanitize_patterns, transform_streams_for_comparison

SANITIZE_FILE = Path(__file__).resolve().parents[2] / "tests" / "nbval_sanitize.cfg"
SANITIZE = get_sanitize_patterns(SANITIZE_FILE.read_text(encoding="utf-8")) if SANITIZE_FILE.exists() else []
SKIP = (
    "metadata", "traceback", "prompt_number", "output_type", "name", "execution_count",
    "application/vnd.jupyter.widget-view+json", "image/png", "image/jpeg",
)  # nbval 0.11's skip list without --nbdime
NOT_COMPARED = {"NBVAL_IGNORE_OUTPUT": "nbval-ignore-output", "NBVAL_SKIP": "nbval-skip"}


def code_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def is_compared(cell: nbformat.NotebookNode) -> bool:
    """False for a cell whose outputs nbval does not compare (a marker comment or tag)."""
    comments = {line.strip().lstrip("#").strip() for line in cell.source.splitlines() if line.strip().startswith("#")}
    tags = set(cell.metadata.get("tags", []))
    return not any(marker in comments or tag in tags for marker, tag in NOT_COMPARED.items())


def _sanitize(value):
    if not isinstance(value, str):
        return value
    for regex, replace in SANITIZE:
        value = re.sub(regex, replace, value)
    return value


def _flatten(outputs) -> dict[str, list]:
    flat = defaultdict(list)
    for output in transform_streams_for_comparison(coalesce_streams(copy.deepcopy(list(outputs)))):
        for key, value in output.items():
            if key in SKIP:
                continue
            if key == "data":
                for mime, data in value.items():
                    if mime not in SKIP:
                        flat[mime].append(_sanitize(data))
            else:
                flat[key].append(_sanitize(value))
    return flat


def nbval_difference(stored_cell: nbformat.NotebookNode, fresh_outputs) -> str:
    """'' when strict nbval would pass ``fresh_outputs`` against ``stored_cell``; else what differs."""
    if not is_compared(stored_cell):
        return ""
    stored = _flatten(nbformat.from_dict(stored_cell.outputs))
    fresh = _flatten(nbformat.from_dict(fresh_outputs))
    if set(stored) != set(fresh):
        return f"output kinds differ: stored {sorted(stored)}, now {sorted(fresh)}"
    for key in stored:
        if stored[key] != fresh[key]:
            return f"{key} differs:\n  stored: {stored[key]!r}\n  now:    {fresh[key]!r}"
    return ""


def compared_text(cell: nbformat.NotebookNode) -> str:
    """The text of ``cell``'s outputs that strict nbval compares ('' for a cell it does not compare)."""
    if not is_compared(cell):
        return ""
    flat = _flatten(nbformat.from_dict(cell.outputs))
    return "\n".join(value for values in flat.values() for value in values if isinstance(value, str))
