"""Write the HTML handouts: every notebook, solution and student edition, English and Chinese, readable offline.

``python -m course_utils.tooling.html [OUTDIR]`` (``make html``) converts every notebook in
``notebooks/`` and every Chinese notebook in ``notebooks/zh/`` twice, as stored (the solution
edition, with its outputs) and as the student edition
(:func:`course_utils.tooling.student.student_notebook`), and writes::

    OUTDIR/index.html                 the course map, linking every page and the Chinese map
    OUTDIR/solution/NN_name.html      the solution edition, outputs included
    OUTDIR/student/NN_name.html       the student edition (exercises blank, no outputs)
    OUTDIR/zh/index.html              课程地图: the Chinese course map, linking the English one
    OUTDIR/zh/solution/NN_name.html   解答版, the Chinese solution edition
    OUTDIR/zh/student/NN_name.html    学生版, the Chinese student edition
    OUTDIR/zh/glossary.html           术语表, the glossary of the Chinese edition
    OUTDIR/static/mathjax/            MathJax 2, copied from the jupyter-server-mathjax package

Every page links its counterpart in the other language where there is one.

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
from .student import GLOSSARY, ZH_NOTEBOOKS, chinese_notebooks, student_notebook

EDITIONS = ("solution", "student")
LANGUAGES = ("en", "zh")
#: Where each language's pages go, under OUTDIR.
LANGUAGE_DIRS = {"en": "", "zh": "zh"}
MATHJAX_DIR = "static/mathjax"

#: The words of the pages, per language.
LABELS = {
    "en": {
        "map": "Course map",
        "edition": {"solution": "Solution edition", "student": "Student edition"},
        "other": {"solution": "solution edition", "student": "student edition"},
        "short": {"solution": "solution", "student": "student"},
        "title": "{title} ({edition} edition)",
        "language": "中文",
        "minutes": " (~{n} min)",
    },
    "zh": {
        "map": "课程地图",
        "edition": {"solution": "解答版", "student": "学生版"},
        "other": {"solution": "解答版", "student": "学生版"},
        "short": {"solution": "解答版", "student": "学生版"},
        "title": "{title}（{edition}）",
        "language": "English",
        "minutes": "（约 {n} 分钟）",
    },
}

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
  <a href="../index.html">{{ resources.course.map }}</a>
  {% if resources.course.previous %}<a href="{{ resources.course.previous.href }}">&larr; {{ resources.course.previous.title }}</a>{% endif %}
  {% if resources.course.next %}<a href="{{ resources.course.next.href }}">{{ resources.course.next.title }} &rarr;</a>{% endif %}
  <span class="edition">{{ resources.course.edition }} &middot;
    <a href="{{ resources.course.other.href }}">{{ resources.course.other.label }}</a>
    {% if resources.course.translation %}&middot; <a href="{{ resources.course.translation.href }}" lang="{{ resources.course.translation.lang }}">{{ resources.course.translation.label }}</a>{% endif %}</span>
</nav>
{%- endblock body_header -%}
"""

_NOTEBOOK_LINK = re.compile(r"\]\((?:\./)?(\d\d_[\w-]+)\.ipynb(#[^)\s]*)?\)")
_EXERCISE = re.compile(r"^###\s+Exercise\b[^\n]*$", re.MULTILINE)
_MINUTES = re.compile(r"~\s*(\d+)\s*min")
_TIME = re.compile(r"\*\*Time:\*\*\s*([^\n]+?)(?:\.\s|\.$|$)", re.MULTILINE)
_TIME_ZH = re.compile(r"\*\*(?:预计)?(?:用时|时间|时长|所需时间)[：:]?\*\*[：:]?\s*([^\n]+?)(?:。|$)", re.MULTILINE)


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


def _summary_position(markdown: list[str]) -> tuple[int, int, int] | None:
    """(markdown cell, first paragraph, paragraphs) of the summary under the notebook's title."""
    for k, source in enumerate(markdown):
        lines = source.strip().splitlines()
        if lines and lines[0].startswith("# "):
            paragraphs = _paragraphs(source)
            start = next((j for j, p in enumerate(paragraphs) if p.startswith("**You will")), 0)
            take = 1
            if paragraphs and paragraphs[start].endswith(":") and start + 1 < len(paragraphs):  # "You will learn to:" + a list
                take = 2
            return k, start, take
    return None


def _paragraphs(source: str) -> list[str]:
    """The paragraphs of a markdown cell after its title line."""
    lines = source.strip().splitlines()
    return [p.strip() for p in "\n".join(lines[1:]).split("\n\n") if p.strip()]


def _title(markdown: list[str], stem: str) -> str:
    for source in markdown:
        lines = source.strip().splitlines()
        if lines and lines[0].startswith("# "):
            return lines[0][2:].strip()
    return stem


def describe(nb: nbformat.NotebookNode, stem: str) -> Entry:
    """Title, one-line summary, time and exercises of a notebook, read from its markdown."""
    markdown = _markdown(nb)
    summary = ""
    position = _summary_position(markdown)
    if position is not None:
        k, start, take = position
        summary = "\n\n".join(_paragraphs(markdown[k])[start : start + take])
    text = "\n\n".join(markdown)
    time_match = _TIME.search(text)
    exercises = _EXERCISE.findall(text)
    return Entry(
        stem=stem,
        title=_title(markdown, stem),
        summary=summary,
        time=time_match.group(1).strip() if time_match else "",
        exercises=len(exercises),
        exercise_minutes=sum(int(m.group(1)) for m in map(_MINUTES.search, exercises) if m),
    )


def describe_translation(nb: nbformat.NotebookNode, english: nbformat.NotebookNode, stem: str) -> Entry:
    """The course-map entry of a Chinese notebook, found where its English notebook has each part.

    A Chinese notebook is its English one with every markdown block translated, so the summary
    is the same paragraphs of the same cell; the exercises are counted in the English.
    """
    source = describe(english, stem)
    markdown = _markdown(nb)
    summary = ""
    position = _summary_position(_markdown(english))
    if position is not None and position[0] < len(markdown):
        k, start, take = position
        paragraphs = _paragraphs(markdown[k])
        if len(paragraphs) != len(_paragraphs(_markdown(english)[k])):  # a translation that split a block
            start = next((j for j, p in enumerate(paragraphs) if p.startswith("**")), 0)
            take = 2 if start + 1 < len(paragraphs) and paragraphs[start].rstrip().endswith(("：", ":")) else 1
        summary = "\n\n".join(paragraphs[start : start + take])
    time_match = _TIME_ZH.search("\n\n".join(markdown))
    minutes = re.search(r"\d+", source.time)
    if time_match:
        time = time_match.group(1).strip()
    else:
        time = f"约 {minutes.group(0)} 分钟" if minutes else ""
    return Entry(
        stem=stem,
        title=_title(markdown, stem),
        summary=summary,
        time=time,
        exercises=source.exercises,
        exercise_minutes=source.exercise_minutes,
    )


def handout_notebook(nb: nbformat.NotebookNode, link=None) -> nbformat.NotebookNode:
    """Prepare a notebook for static HTML (a new object; ``nb`` is unchanged).

    Widget state is dropped, so nbconvert renders each widget output's next mimetype (the
    static PNG of an explorer) instead of a widget view that needs scripts from the network;
    links to sibling ``.ipynb`` files are pointed at their ``.html`` pages (``link(stem)``
    gives the page of a notebook; default: ``stem.html`` beside this one).
    """
    link = link or (lambda stem: f"{stem}.html")
    nb = nbformat.from_dict(nb)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = _NOTEBOOK_LINK.sub(lambda m: f"]({link(m.group(1))}{m.group(2) or ''})", cell.source)
    return nb


def make_exporter(language: str = "en") -> HTMLExporter:
    """nbconvert's lab template, with the offline changes of ``_TEMPLATE``."""
    return HTMLExporter(
        language_code=language,
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


def _nav(
    entries: list[Entry], index: int, edition: str, language: str = "en", translation: str | None = None
) -> dict[str, object]:
    """The navigation bar of one page; ``translation`` is the href of the same page in the other language."""
    other = "student" if edition == "solution" else "solution"
    labels = LABELS[language]
    up = "../" * (1 + bool(LANGUAGE_DIRS[language]))

    def link(i: int) -> dict[str, str] | None:
        if 0 <= i < len(entries):
            return {"href": f"{entries[i].stem}.html", "title": _inline_markdown(entries[i].title)}
        return None

    other_language = "zh" if language == "en" else "en"
    return {
        "map": labels["map"],
        "edition": labels["edition"][edition],
        "previous": link(index - 1),
        "next": link(index + 1),
        "other": {"href": f"../{other}/{entries[index].stem}.html", "label": labels["other"][other]},
        "translation": (
            {"href": translation, "label": labels["language"], "lang": "zh-CN" if other_language == "zh" else "en"}
            if translation
            else None
        ),
        "mathjax_url": f"{up}{MATHJAX_DIR}/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe",
    }


def render_index(entries: list[Entry], language: str = "en", translated: set[str] | None = None, glossary: bool = False) -> str:
    """The course map of one language: one row per notebook with links to both editions.

    ``translated``: the notebooks that also have a page in the other language (linked per row).
    """
    translated = translated or set()
    labels = LABELS[language]
    other = "../" if language == "zh" else "zh/"
    rows = []
    for entry in entries:
        exercises = f"{entry.exercises}"
        if entry.exercise_minutes:
            exercises += labels["minutes"].format(n=entry.exercise_minutes)
        links = (
            f"<a href='solution/{entry.stem}.html'>{labels['short']['solution']}</a><br>"
            f"<a href='student/{entry.stem}.html'>{labels['short']['student']}</a>"
        )
        if entry.stem in translated:
            lang = "zh-CN" if language == "en" else "en"
            links += f"<br><a href='{other}solution/{entry.stem}.html' lang='{lang}'>{labels['language']}</a>"
        rows.append(
            "<tr>"
            f"<td><b>{_inline_markdown(entry.title)}</b><div class='summary'>{markdown2html_mistune(entry.summary)}</div></td>"
            f"<td>{html.escape(entry.time)}</td>"
            f"<td class='count'>{exercises}</td>"
            f"<td class='links'>{links}</td>"
            "</tr>"
        )
    body = _INDEX if language == "en" else _INDEX_ZH
    extra = "<li><a href='glossary.html'>术语表</a>：本课程中文版每个技术术语的译法，后附英文。</li>" if glossary else ""
    lang = "en" if language == "en" else "zh-CN"
    return _page(lang, _TITLES[language], body.format(rows="\n".join(rows), glossary=extra))


def _inline_markdown(text: str) -> str:
    """Escape ``text`` and render the bits of inline markdown used in summaries."""
    out = html.escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", out)
    out = re.sub(r"`(.+?)`", r"<code>\1</code>", out)
    return re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<i>\1</i>", out)


_INDEX_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans CJK SC", "PingFang SC",
  "Microsoft YaHei", sans-serif; max-width: 60em; margin: 2em auto; padding: 0 1em; color: #1f2328; line-height: 1.45; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: 0.6em; border-bottom: 1px solid #d0d7de; }
th { background: #f5f7fa; }
.summary { color: #57606a; font-size: 0.92em; }
.summary p, .summary ul { margin: 0.3em 0; }
.links, .count { white-space: nowrap; }
.language { float: right; }
code { background: #f0f2f4; padding: 0 0.2em; border-radius: 3px; }
"""

_PAGE = """<!DOCTYPE html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
{body}</body>
</html>
"""
_TITLES = {"en": "Attention, from the inside: course map", "zh": "从内部看注意力 · 课程地图", "glossary": "术语表 · 从内部看注意力"}


def _page(lang: str, title: str, body: str) -> str:
    """A standalone page of the handouts (the course maps, the glossary) around ``body``."""
    return _PAGE.format(lang=lang, title=title, style=_INDEX_STYLE, body=body)


_INDEX = """<p class="language"><a href="zh/index.html" lang="zh-CN">中文版</a></p>
<h1>Attention, from the inside</h1>
<p>From activation functions to <code>torch.nn.MultiheadAttention</code>, <code>nn.Transformer</code> and the
Dense Synthesizer, in PyTorch. Work through the notebooks in order.</p>
<ul>
<li><b>Solution edition</b>: every notebook as the course ships it, with its outputs, plots and the static
pictures of the interactive explorers.</li>
<li><b>Student edition</b>: the same text with the exercise solutions removed and no outputs. To work
the exercises, run the notebooks in JupyterLab (<code>make lab</code>, or <code>make student</code> for the
student edition); the checks and the interactive explorers only work there.</li>
<li><b>中文版</b>: the course in Chinese (<a href="zh/index.html" lang="zh-CN">课程地图</a>), both editions.</li>
</ul>
<table>
<thead><tr><th>notebook</th><th>time</th><th>exercises</th><th>edition</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
<p class="summary">These pages work offline: open <code>index.html</code> from the folder they were copied to.</p>
"""

_INDEX_ZH = """<p class="language"><a href="../index.html" lang="en">English</a></p>
<h1>从内部看注意力（Attention, from the inside）</h1>
<p>用 PyTorch，从激活函数讲到 <code>torch.nn.MultiheadAttention</code>、<code>nn.Transformer</code> 和稠密合成器（Dense Synthesizer）。请按顺序学习这些 notebook。</p>
<ul>
<li><b>解答版</b>：课程发布时的每个 notebook，带有输出、图表和交互探索器的静态图片。</li>
<li><b>学生版</b>：文字相同，但去掉了练习的解答，也没有输出。要做练习，请在 JupyterLab 里运行这些 notebook（<code>make lab COURSE_LANG=zh</code>；学生版用 <code>make student</code> 生成，在 <code>build/student/zh/</code>）；练习检查和交互探索器只在那里才能用。</li>
{glossary}
</ul>
<h2>课程地图</h2>
<table>
<thead><tr><th>notebook</th><th>用时</th><th>练习</th><th>版本</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
<p class="summary">这些页面无需联网：从它们所在的文件夹直接打开 <code>index.html</code> 即可。</p>
"""

_GLOSSARY = """<p><a href="index.html">课程地图</a></p>
{body}
"""


def _sibling_link(language: str, edition: str, translated: set[str]):
    """``link(stem)``: the page a notebook's link to ``stem.ipynb`` points at, from a page of ``language``.

    A Chinese page links the Chinese page of a translated notebook and the English page of any other.
    """
    if language == "en":
        return lambda stem: f"{stem}.html"
    return lambda stem: f"{stem}.html" if stem in translated else f"../../{edition}/{stem}.html"


def _copy_mathjax(outdir: Path) -> None:
    mathjax = outdir / MATHJAX_DIR
    if mathjax.exists():
        shutil.rmtree(mathjax)
    # jax/output/SVG holds only font tables (the package has no SVG output jax): 3 MB of nothing
    source = mathjax_source()
    shutil.copytree(source, mathjax, ignore=lambda folder, names: ["SVG"] if Path(folder) == source / "jax" / "output" else [])


def build(
    outdir: Path,
    notebooks: list[Path] | None = None,
    chinese: list[Path] | None = None,
    glossary: Path | None = None,
) -> list[Path]:
    """Write the handouts of ``notebooks`` and ``chinese`` to ``outdir``.

    Args:
        notebooks: the English notebooks (default: the whole course).
        chinese: the Chinese notebooks, each named as its English one (default: those in
            ``notebooks/zh/`` when ``notebooks`` is the default, else none). One without its
            English notebook in ``notebooks`` is left out.
        glossary: the Chinese glossary (default: ``notebooks/zh/术语表.md`` with the default notebooks).

    Returns:
        The pages written, the course map first (then the Chinese map, when there is one).
    """
    defaults = notebooks is None
    paths = list(notebooks) if notebooks is not None else course_notebooks()
    if not paths:
        raise ValueError("notebooks: expected at least one notebook, got none")
    if chinese is None:
        chinese = chinese_notebooks() if defaults else []
    if glossary is None and defaults and (ZH_NOTEBOOKS / GLOSSARY).is_file():
        glossary = ZH_NOTEBOOKS / GLOSSARY
    loaded = [nbformat.read(path, as_version=4) for path in paths]
    entries = [describe(nb, path.stem) for nb, path in zip(loaded, paths)]
    english = {entry.stem: nb for entry, nb in zip(entries, loaded)}
    chinese = [path for path in chinese if path.stem in english]
    loaded_zh = [nbformat.read(path, as_version=4) for path in chinese]
    entries_zh = [describe_translation(nb, english[path.stem], path.stem) for nb, path in zip(loaded_zh, chinese)]
    translated = {entry.stem for entry in entries_zh}

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    _copy_mathjax(outdir)

    index = outdir / "index.html"
    index.write_text(render_index(entries, "en", translated), encoding="utf-8")
    written = [index]
    if entries_zh:
        (outdir / "zh").mkdir(exist_ok=True)
        index_zh = outdir / "zh" / "index.html"
        index_zh.write_text(render_index(entries_zh, "zh", set(english), glossary=glossary is not None), encoding="utf-8")
        written.append(index_zh)
        if glossary is not None:
            body = markdown2html_mistune(Path(glossary).read_text(encoding="utf-8"))
            page = outdir / "zh" / "glossary.html"
            page.write_text(_page("zh-CN", _TITLES["glossary"], _GLOSSARY.format(body=body)), encoding="utf-8")
            written.append(page)

    for language, nbs, ents in (("en", loaded, entries), ("zh", loaded_zh, entries_zh)):
        exporter = make_exporter(language)
        labels = LABELS[language]
        for edition in EDITIONS if ents else ():
            folder = outdir / LANGUAGE_DIRS[language] / edition
            folder.mkdir(parents=True, exist_ok=True)
            link = _sibling_link(language, edition, translated)
            for i, (nb, entry) in enumerate(zip(nbs, ents)):
                if language == "en":
                    translation = f"../zh/{edition}/{entry.stem}.html" if entry.stem in translated else None
                else:
                    translation = f"../../{edition}/{entry.stem}.html"
                page = student_notebook(nb) if edition == "student" else nb
                page = handout_notebook(page, link)
                page.metadata["title"] = labels["title"].format(
                    title=entry.title.replace("`", ""), edition=labels["other"][edition].replace(" edition", "")
                )
                resources = {"metadata": {"name": entry.stem}, "course": _nav(ents, i, edition, language, translation)}
                body, _ = exporter.from_notebook_node(page, resources=resources)
                target = folder / f"{entry.stem}.html"
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
