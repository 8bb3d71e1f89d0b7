"""The HTML handouts (``make html``), English and Chinese, opened from disk in Chromium with the network blocked.

The handouts are built into a scratch folder with ``course_utils.tooling.html.build`` (what
``make html`` runs), then every page is opened through ``file://`` as on a laptop with no
network. Each page must: request nothing outside this machine and load every local file it
asks for; typeset its math with the local MathJax (no TeX errors); show every plot and the
static picture of every interactive explorer; link only to pages that exist. The two course
maps link every page of their language and each other; a Chinese page's navigation is in
Chinese and links its English page. Screenshots: ``build/screenshots/html/`` (``zh/`` for the
Chinese pages).
"""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import nbformat
import pytest

from course_utils.tooling.html import EDITIONS, LABELS, build

SCREENSHOT_DIR = Path(__file__).resolve().parents[2] / "build" / "screenshots" / "html"
MATHJAX_TIMEOUT_S = 60

# Installed before any page script runs: MathJax 2 reads `window.MathJax` as its configuration,
# and AuthorInit lets the test record TeX errors that would otherwise only show on screen.
MATHJAX_PROBE = """
window.__courseMathErrors = [];
window.MathJax = {AuthorInit: function () {
    MathJax.Hub.Register.MessageHook("TeX Jax - parse error", function (m) { window.__courseMathErrors.push(String(m[1])); });
    MathJax.Hub.Register.MessageHook("Math Processing Error", function (m) { window.__courseMathErrors.push(String(m[2] || m[1])); });
}};
"""

MATHJAX_DONE = """async (timeoutMs) => {
    if (!window.MathJax || !window.MathJax.Hub) return 'MathJax did not load';
    // wait for the end of MathJax's startup, then for its queue (the first typeset) to drain;
    // queueing from inside the startup hook itself would deadlock
    const done = async () => {
        await new Promise(resolve => MathJax.Hub.Register.StartupHook('End', resolve));
        await new Promise(resolve => MathJax.Hub.Queue(resolve));
        return 'done';
    };
    const timeout = new Promise(resolve => setTimeout(() => resolve('timeout'), timeoutMs));
    return await Promise.race([done(), timeout]);
}"""

PAGE_FACTS = """() => {
    const images = Array.from(document.images);
    const output = window.MathJax && MathJax.OutputJax && MathJax.OutputJax['HTML-CSS'];
    return {
        math: document.querySelectorAll('.MathJax, .MathJax_Display, .MathJax_SVG').length,
        mathErrors: window.__courseMathErrors || [],
        mathErrorNodes: document.querySelectorAll('.merror, .noError, .MathJax_Error').length,
        mathFont: output ? String(output.fontInUse) : null,
        mathOutput: (window.MathJax && MathJax.Hub && MathJax.Hub.outputJax && MathJax.Hub.outputJax['jax/mml'])
            ? MathJax.Hub.outputJax['jax/mml'][0].id : null,
        images: images.length,
        brokenImages: images.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src.slice(0, 80)),
        widgetScripts: document.querySelectorAll('script[type*="jupyter.widget"]').length,
        text: document.body.innerText,
        links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
    };
}"""

_CODE = re.compile(r"```.*?```|`[^`\n]*`", re.DOTALL)
_MATH = re.compile(r"\$\$.+?\$\$|\$[^$\n]+\$|\\\(.+?\\\)|\\\[.+?\\\]", re.DOTALL)
# The text a widget output shows where no widget runs starts a line (a plot title in the code may hold the words).
WIDGET_TEXT = re.compile(r"(^|\n)\s*(Interactive explorer:|交互探索器：)")


@dataclass
class Handouts:
    out: Path  # the built site
    sources: dict[tuple[str, str], Path]  # (language, stem) -> the snapshot of the notebook it was built from


def _language(notebook: Path) -> str:
    return "zh" if notebook.parent.name == "zh" else "en"


@pytest.fixture(scope="session")
def handouts(tmp_path_factory, timings, handout_paths) -> Handouts:
    """The handouts, built from a snapshot of the notebooks (so expectations match the pages)."""
    base = tmp_path_factory.mktemp("html")
    snapshot = base / "notebooks"
    (snapshot / "zh").mkdir(parents=True)
    sources = {}
    for path in handout_paths:
        language = _language(path)
        sources[language, path.stem] = snapshot / ("zh" if language == "zh" else "") / path.name
        shutil.copyfile(path, sources[language, path.stem])
    glossary = next((path.parent / "术语表.md" for path in handout_paths if _language(path) == "zh"), None)
    start = time.monotonic()
    build(
        base / "site",
        notebooks=[p for (language, _), p in sources.items() if language == "en"],
        chinese=[p for (language, _), p in sources.items() if language == "zh"],
        glossary=glossary if glossary is not None and glossary.is_file() else None,
    )
    timings("html/build (all pages)", build=time.monotonic() - start)
    return Handouts(out=base / "site", sources=sources)


def _expected(notebook: Path, edition: str) -> dict[str, int]:
    """What a page should show, counted from the notebook itself."""
    nb = nbformat.read(notebook, as_version=4)
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    math = len(_MATH.findall(_CODE.sub("", markdown)))
    images = explorers = 0
    if edition == "solution":
        for cell in nb.cells:
            for out in cell.get("outputs", []):
                data = out.get("data", {})
                images += any(m in data for m in ("image/png", "image/jpeg", "image/svg+xml"))
                explorers += "application/vnd.jupyter.widget-view+json" in data
    return {"math": math, "images": images, "explorers": explorers}


def _open(page, path: Path) -> dict:
    page.add_init_script(MATHJAX_PROBE)
    page.goto(path.as_uri(), wait_until="load", timeout=60_000)
    state = page.evaluate(MATHJAX_DONE, MATHJAX_TIMEOUT_S * 1000)
    facts = page.evaluate(PAGE_FACTS)
    facts["mathjax"] = state
    return facts


def _dead_links(facts: dict) -> list[str]:
    dead = []
    for href in facts["links"]:
        url = urlparse(href)
        if url.scheme == "file" and not Path(unquote(url.path)).exists():
            dead.append(href)
    return dead


def _page(handouts: Handouts, notebook: Path, edition: str) -> Path:
    language = _language(notebook)
    return handouts.out / ("zh" if language == "zh" else "") / edition / f"{notebook.stem}.html"


@pytest.mark.parametrize("language", ["en", "zh"])
def test_course_map_opens_offline(handouts, handout_paths, language, page, traffic, timings):
    mine = [path for path in handout_paths if _language(path) == language]
    if not mine:
        pytest.skip(f"no {language} notebooks")
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    index = handouts.out / ("zh" if language == "zh" else "") / "index.html"
    other = handouts.out / ("zh/index.html" if language == "en" else "index.html")
    start = time.monotonic()
    facts = _open(page, index)
    page.screenshot(path=str(SCREENSHOT_DIR / f"index{'' if language == 'en' else '.zh'}.png"), full_page=True)
    timings(f"html/index ({language})", open=time.monotonic() - start)
    problems = []
    for notebook in mine:
        for edition in EDITIONS:
            target = _page(handouts, notebook, edition).as_uri()
            if target not in facts["links"]:
                problems.append(f"no link to the {edition} edition of {notebook.stem}")
    if any(_language(path) != language for path in handout_paths) and other.as_uri() not in facts["links"]:
        problems.append(f"no link to the course map in the other language ({other.relative_to(handouts.out)})")
    if language == "zh" and LABELS["zh"]["map"] not in facts["text"]:
        problems.append(f"the Chinese course map does not say {LABELS['zh']['map']!r}")
    problems += [f"dead link {href}" for href in _dead_links(facts)]
    if traffic.blocked or traffic.failed:
        problems.append(traffic.report())
    assert not problems, f"course map ({index.relative_to(handouts.out)}): " + "; ".join(problems)


@pytest.mark.parametrize("edition", EDITIONS)
def test_handout_opens_offline(handouts, handout, edition, page, traffic, timings):
    language = _language(handout)
    path = _page(handouts, handout, edition)
    assert path.is_file(), f"{path} was not written"
    start = time.monotonic()
    facts = _open(page, path)
    folder = SCREENSHOT_DIR / ("zh" if language == "zh" else "") / edition
    folder.mkdir(parents=True, exist_ok=True)
    shot = folder / f"{handout.stem}.png"
    page.screenshot(path=str(shot), full_page=True)
    timings(f"html/{'zh/' if language == 'zh' else ''}{edition}/{handout.stem}", open=time.monotonic() - start)

    expected = _expected(handouts.sources[language, handout.stem], edition)
    problems = []
    if language == "zh":
        labels = LABELS["zh"]
        english = handouts.out / edition / f"{handout.stem}.html"
        if labels["map"] not in facts["text"] or labels["edition"][edition] not in facts["text"]:
            problems.append(f"the navigation bar is not in Chinese (no {labels['map']!r} / {labels['edition'][edition]!r})")
        if english.is_file() and english.as_uri() not in facts["links"]:
            problems.append(f"no link to the English page {english.name}")
    if facts["mathjax"] != "done":
        problems.append(f"MathJax: {facts['mathjax']} (after {MATHJAX_TIMEOUT_S}s)")
    if expected["math"] and not facts["math"]:
        problems.append(f"the markdown has {expected['math']} math expression(s) but none was typeset")
    if facts["mathErrors"] or facts["mathErrorNodes"]:
        problems.append(f"TeX errors: {facts['mathErrors'][:5]} ({facts['mathErrorNodes']} error node(s) on the page)")
    if facts["math"] and facts["mathOutput"] != "HTML-CSS":
        problems.append(f"MathJax rendered with {facts['mathOutput']!r}, not HTML-CSS with the local STIX-Web fonts")
    if facts["math"] and facts["mathFont"] != "STIX-Web":
        problems.append(f"MathJax fell back to font {facts['mathFont']!r}: the local web fonts did not load")
    if facts["brokenImages"]:
        problems.append(f"images that did not load: {facts['brokenImages'][:5]}")
    if facts["images"] < expected["images"]:
        problems.append(f"{expected['images']} image outputs in the notebook, {facts['images']} images on the page")
    if facts["widgetScripts"] or WIDGET_TEXT.search(facts["text"]):
        problems.append(
            f"{expected['explorers']} explorer(s): a widget view or its text stands where the static picture should be"
        )
    problems += [f"dead link {href}" for href in _dead_links(facts)]
    if traffic.blocked or traffic.failed:
        problems.append(traffic.report())
    assert not problems, f"{path.name} ({edition} edition, screenshot {shot}):\n  " + "\n  ".join(problems)
