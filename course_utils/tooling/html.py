"""Write the HTML handouts: every notebook, solution and student edition, readable offline.

``python -m course_utils.tooling.html [OUTDIR]`` (``make html``) converts every notebook in
``notebooks/`` twice, as stored (the solution edition, with its outputs) and as the student
edition (:func:`course_utils.tooling.student.student_notebook`), and writes::

    OUTDIR/index.html              the course map, linking every page
    OUTDIR/solution/NN_name.html   the solution edition, outputs included
    OUTDIR/student/NN_name.html    the student edition (exercises blank, no outputs)
    OUTDIR/static/mathjax/         MathJax 2, copied from the jupyter-server-mathjax package

The pages open from a laptop with no network (``file://``): the CSS is inlined, the plots
are inlined PNGs, MathJax is the local copy, and nothing else is loaded. Widget state is
stripped, so every interactive explorer shows its static fallback picture (the PNG that
``course_utils.widgets.display_with_fallback`` stores beside the widget view).
"""

from __future__ import annotations

import argparse
import html
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
from jinja2 import DictLoader
from nbconvert import HTMLExporter
from nbconvert.filters.markdown_mistune import markdown2html_mistune

from .notebooks import ROOT, course_notebooks
from .student import student_notebook

EDITIONS = ("solution", "student")
MATHJAX_DIR = "static/mathjax"

# The lab template without anything that would load from the network: no require.js (only
# widget state needs it, and it is stripped), no widget manager, no mermaid, and MathJax from
# the local copy, configured in the page. A navigation bar links the course map and neighbours.
_TEMPLATE = r"""
{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block html_head_js_mathjax -%}
<script type="text/x-mathjax-config">
MathJax.Hub.Config({
  TeX: {equationNumbers: {autoNumber: "AMS", useLabelIds: true}},
  tex2jax: {
    inlineMath: [["$", "$"], ["\\(", "\\)"]],
    displayMath: [["$$", "$$"], ["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true
  },
  "HTML-CSS": {availableFonts: [], preferredFont: null, webFont: "STIX-Web", imageFont: null},
  MMLorHTML: {prefer: "HTML"},
  displayAlign: "center",
  messageStyle: "none",
  menuSettings: {locale: "en"}
});
</script>
<script src="{{ resources.course.mathjax_url }}"></script>
{%- endblock html_head_js_mathjax -%}
{%- block html_head_css -%}
<style type="text/css">
.course-nav { position: sticky; top: 0; z-index: 10; display: flex; gap: 1.2em; align-items: center;
  padding: 0.5em 1em; margin-bottom: 1em; background: #f5f7fa; border-bottom: 1px solid #d0d7de;
  font-family: var(--jp-ui-font-family); font-size: 14px; }
.course-nav .edition { margin-left: auto; color: #57606a; }
</style>
{%- endblock html_head_css -%}
{%- block body_header -%}
{{ super() }}
<nav class="course-nav">
  <a href="../index.html">Course map</a>
  {% if resources.course.previous %}<a href="{{ resources.course.previous.href }}">&larr; {{ resources.course.previous.title }}</a>{% endif %}
  {% if resources.course.next %}<a href="{{ resources.course.next.href }}">{{ resources.course.next.title }} &rarr;</a>{% endif %}
  <span class="edition">{{ resources.course.edition }} edition &middot;
    <a href="{{ resources.course.other.href }}">{{ resources.course.other.label }}</a></span>
</nav>
{%- endblock body_header -%}
"""

_NOTEBOOK_LINK = re.compile(r"\]\((?:\./)?(\d\d_[\w-]+)\.ipynb(#[^)\s]*)?\)")
_EXERCISE = re.compile(r"^###\s+Exercise\b[^\n]*$", re.MULTILINE)
_MINUTES = re.compile(r"~\s*(\d+)\s*min")
_TIME = re.compile(r"\*\*Time:\*\*\s*([^\n]+?)(?:\.\s|\.$|$)", re.MULTILINE)


@dataclass
class Entry:
    """One notebook of the course map."""

    stem: str
    title: str
    summary: str  # markdown
    time: str
    exercises: int
    exercise_minutes: int


def _markdown(nb: nbformat.NotebookNode) -> list[str]:
    return [cell.source for cell in nb.cells if cell.cell_type == "markdown"]


def describe(nb: nbformat.NotebookNode, stem: str) -> Entry:
    """Title, one-line summary, time and exercises of a notebook, read from its markdown."""
    markdown = _markdown(nb)
    title = stem
    summary = ""
    for source in markdown:
        lines = source.strip().splitlines()
        if lines and lines[0].startswith("# "):
            title = lines[0][2:].strip()
            paragraphs = [p.strip() for p in "\n".join(lines[1:]).split("\n\n") if p.strip()]
            start = next((k for k, p in enumerate(paragraphs) if p.startswith("**You will")), 0)
            summary = paragraphs[start] if paragraphs else ""
            if summary.endswith(":") and start + 1 < len(paragraphs):  # "You will learn to:" + a list
                summary += "\n\n" + paragraphs[start + 1]
            break
    text = "\n\n".join(markdown)
    time_match = _TIME.search(text)
    exercises = _EXERCISE.findall(text)
    return Entry(
        stem=stem,
        title=title,
        summary=summary,
        time=time_match.group(1).strip() if time_match else "",
        exercises=len(exercises),
        exercise_minutes=sum(int(m.group(1)) for m in map(_MINUTES.search, exercises) if m),
    )


def handout_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Prepare a notebook for static HTML (a new object; ``nb`` is unchanged).

    Widget state is dropped, so nbconvert renders each widget output's next mimetype (the
    static PNG of an explorer) instead of a widget view that needs scripts from the network;
    links to sibling ``.ipynb`` files are pointed at their ``.html`` pages.
    """
    nb = nbformat.from_dict(nb)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = _NOTEBOOK_LINK.sub(r"](\1.html\2)", cell.source)
    return nb


def make_exporter() -> HTMLExporter:
    """nbconvert's lab template, with the offline changes of ``_TEMPLATE``."""
    return HTMLExporter(
        template_name="lab",
        extra_loaders=[DictLoader({"course_handout.html.j2": _TEMPLATE})],
        template_file="course_handout.html.j2",
        embed_images=True,
        theme="light",
    )


def mathjax_source() -> Path:
    """The MathJax 2 tree shipped by the ``jupyter-server-mathjax`` package."""
    try:
        import jupyter_server_mathjax
    except ImportError as exc:  # pragma: no cover - the package is pinned in requirements.txt
        raise RuntimeError(
            "the HTML handouts need MathJax from the 'jupyter-server-mathjax' package: run `make install`"
        ) from exc
    static = Path(jupyter_server_mathjax.__file__).parent / "static"
    if not (static / "MathJax.js").is_file():
        raise RuntimeError(f"no MathJax.js in the jupyter-server-mathjax package (looked in {static})")
    return static


def _nav(entries: list[Entry], index: int, edition: str) -> dict[str, object]:
    other = "student" if edition == "solution" else "solution"

    def link(i: int) -> dict[str, str] | None:
        if 0 <= i < len(entries):
            return {"href": f"{entries[i].stem}.html", "title": _inline_markdown(entries[i].title)}
        return None

    return {
        "edition": edition.capitalize(),
        "previous": link(index - 1),
        "next": link(index + 1),
        "other": {"href": f"../{other}/{entries[index].stem}.html", "label": f"{other} edition"},
        "mathjax_url": f"../{MATHJAX_DIR}/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe",
    }


def render_index(entries: list[Entry]) -> str:
    """The course map: one row per notebook with links to both editions."""
    rows = []
    for entry in entries:
        exercises = f"{entry.exercises}"
        if entry.exercise_minutes:
            exercises += f" (~{entry.exercise_minutes} min)"
        rows.append(
            "<tr>"
            f"<td><b>{_inline_markdown(entry.title)}</b><div class='summary'>{markdown2html_mistune(entry.summary)}</div></td>"
            f"<td>{html.escape(entry.time)}</td>"
            f"<td>{exercises}</td>"
            f"<td class='links'><a href='solution/{entry.stem}.html'>solution</a><br>"
            f"<a href='student/{entry.stem}.html'>student</a></td>"
            "</tr>"
        )
    return _INDEX.format(rows="\n".join(rows))


def _inline_markdown(text: str) -> str:
    """Escape ``text`` and render the bits of inline markdown used in summaries."""
    out = html.escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", out)
    out = re.sub(r"`(.+?)`", r"<code>\1</code>", out)
    return re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<i>\1</i>", out)


_INDEX = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>Attention, from the inside: course map</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; max-width: 60em;
  margin: 2em auto; padding: 0 1em; color: #1f2328; line-height: 1.45; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ text-align: left; vertical-align: top; padding: 0.6em; border-bottom: 1px solid #d0d7de; }}
th {{ background: #f5f7fa; }}
.summary {{ color: #57606a; font-size: 0.92em; }}
.summary p, .summary ul {{ margin: 0.3em 0; }}
.links {{ white-space: nowrap; }}
code {{ background: #f0f2f4; padding: 0 0.2em; border-radius: 3px; }}
</style>
</head>
<body>
<h1>Attention, from the inside</h1>
<p>From activation functions to <code>torch.nn.MultiheadAttention</code>, <code>nn.Transformer</code> and the
Dense Synthesizer, in PyTorch. Work through the notebooks in order.</p>
<ul>
<li><b>Solution edition</b>: every notebook as the course ships it, with its outputs, plots and the static
pictures of the interactive explorers.</li>
<li><b>Student edition</b>: the same text with the exercise solutions removed and no outputs. To work
the exercises, run the notebooks in JupyterLab (<code>make lab</code>, or <code>make student</code> for the
student edition); the checks and the interactive explorers only work there.</li>
</ul>
<table>
<thead><tr><th>notebook</th><th>time</th><th>exercises</th><th>edition</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
<p class="summary">These pages work offline: open <code>index.html</code> from the folder they were copied to.</p>
</body>
</html>
"""


def build(outdir: Path, notebooks: list[Path] | None = None) -> list[Path]:
    """Write the handouts of ``notebooks`` (default: the whole course) to ``outdir``.

    Returns:
        The pages written, the course map first.
    """
    paths = list(notebooks) if notebooks is not None else course_notebooks()
    if not paths:
        raise ValueError("notebooks: expected at least one notebook, got none")
    loaded = [nbformat.read(path, as_version=4) for path in paths]
    entries = [describe(nb, path.stem) for nb, path in zip(loaded, paths)]

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    mathjax = outdir / MATHJAX_DIR
    if mathjax.exists():
        shutil.rmtree(mathjax)
    # jax/output/SVG holds only font tables (the package has no SVG output jax): 3 MB of nothing
    source = mathjax_source()
    shutil.copytree(source, mathjax, ignore=lambda folder, names: ["SVG"] if Path(folder) == source / "jax" / "output" else [])

    exporter = make_exporter()
    index = outdir / "index.html"
    index.write_text(render_index(entries), encoding="utf-8")
    written = [index]
    for edition in EDITIONS:
        (outdir / edition).mkdir(exist_ok=True)
        for i, (nb, entry) in enumerate(zip(loaded, entries)):
            page = student_notebook(nb) if edition == "student" else nb
            page = handout_notebook(page)
            page.metadata["title"] = f"{entry.title.replace('`', '')} ({edition} edition)"
            resources = {"metadata": {"name": entry.stem}, "course": _nav(entries, i, edition)}
            body, _ = exporter.from_notebook_node(page, resources=resources)
            target = outdir / edition / f"{entry.stem}.html"
            target.write_text(body, encoding="utf-8")
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", nargs="?", type=Path, default=ROOT / "build" / "html")
    args = parser.parse_args(argv)
    written = build(args.outdir)
    print(f"wrote {len(written)} pages to {args.outdir} (open {written[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
