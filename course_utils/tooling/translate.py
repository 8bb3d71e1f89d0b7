"""The Chinese edition: PO catalogues beside the English notebooks, and the notebooks built from them.

The English notebooks are the source. What a learner reads in them is cut into *units*:

- each block of a markdown cell (blocks are separated by blank lines; a fenced code block
  or a ``$$`` display stays whole);
- each comment of a code cell (consecutive whole-line comments at one indentation are one
  unit);
- each string literal a code cell shows: an argument of ``print``, of matplotlib's titles,
  labels, text and legends, any ``label=``, ``title=``, ``desc=`` keyword argument, and the
  docstrings of the functions and classes a cell defines;
- each *label* a code cell builds to show later: a string of words (two or more, or one word and
  a ``{field}``) that is an item of a list, tuple or dict (key or value), a function's return
  value, or an argument of ``append``/``extend`` or of a function the notebook defines; a table's
  rows, a plot's legend entries, the cases of a loop, what a helper reports. Strings of code
  (``"b t, b s -> b t s"``, ``" Hint:"`` passed to ``str.split``) are not words and stay as they are.

Every unit is one gettext entry (its English is the ``msgid``) in
``notebooks/locale/zh_CN/LC_MESSAGES/<notebook>.po``. The messages of the package itself
(``_()`` and ``N_()`` in ``course_utils``) go to one catalogue per module in
``course_utils/locale/zh_CN/LC_MESSAGES/``.

Commands (``python -m course_utils.tooling.translate ...``)::

    extract   update every catalogue from the English: new units come in untranslated; a unit
              whose English changed keeps its old translation, marked fuzzy, with the old
              English beside it (``#| msgid``), as gettext's msgmerge does (``make translations``)
    build     write notebooks/zh/ from the English notebooks and the catalogues
              (``make zh`` also executes them)
    check     what the tests would say of the given notebooks' translations (default: all),
              English prose in their outputs and plot text included
    extract-package, check-package
              the same for the given modules of the package (default: all)
    status    how many entries each catalogue has, and how many are untranslated or fuzzy
    font      rewrite the course's CJK font subset from Debian's fonts-noto-cjk
              (``--source PATH``: the NotoSansCJK-Regular.ttc to cut it from)

A Chinese notebook is its English notebook with every unit replaced by its translation and
one cell in front, which selects Chinese for the checks. Its code is the English code.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import functools
import html
import io
import re
import sys
import tokenize
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import nbformat
import polib

from .notebooks import NOTEBOOKS, ROOT, course_notebooks

LOCALE = "zh_CN"
LANGUAGE = "zh"
ZH_NOTEBOOKS = NOTEBOOKS / "zh"
NOTEBOOK_CATALOGUES = NOTEBOOKS / "locale" / LOCALE / "LC_MESSAGES"
PACKAGE = ROOT / "course_utils"
PACKAGE_CATALOGUES = PACKAGE / "locale" / LOCALE / "LC_MESSAGES"
GLOSSARY = ZH_NOTEBOOKS / "术语表.md"

#: The first cell of every Chinese notebook.
LANGUAGE_CELL = 'import course_utils\n\ncourse_utils.set_language("zh")  # 练习检查、提示和图表都用中文'

#: Calls whose string arguments a learner sees, and keyword arguments that are shown.
DISPLAY_CALLS = {
    "print", "title", "set_title", "suptitle", "xlabel", "ylabel", "set_xlabel", "set_ylabel",
    "text", "annotate", "legend", "set_description", "write", "Markdown", "HTML",
}
DISPLAY_KEYWORDS = {"label", "title", "xlabel", "ylabel", "desc", "description", "suptitle", "caption"}

_FENCE = re.compile(r"^\s*(```|~~~)")
_WORD_IN_TEXT = re.compile(r"[A-Za-z]{2,}")
_WORD_IN_COMMENT = re.compile(r"[A-Za-z]{3,}")
_SKIP_COMMENT = re.compile(r"^#+\s*(noqa|type:|%%|!|fmt:|pragma|BEGIN SOLUTION|END SOLUTION)")
_BRACES = re.compile(r"\{[^{}]*\}")
_STRING_START = re.compile(r"^([A-Za-z]*)('''|\"\"\"|'|\")", re.S)


@dataclass(frozen=True)
class Unit:
    """One translatable piece of a notebook cell.

    Attributes:
        cell: the cell's index in the notebook.
        kind: ``"markdown"``, ``"comment"`` or ``"string"``.
        text: the English (the msgid).
        start, end: where it sits in the cell's source (character offsets).
        prefix: for a comment block, what goes before each line (indentation and ``# ``);
            for a string, nothing (only the inside of the quotes is the unit).
        f_string: True for an f-string (its ``{...}`` must stay as they are).
        label: True for a string kept to be shown later (see :func:`is_label`), not shown where it stands.
    """

    cell: int
    kind: str
    text: str
    start: int
    end: int
    prefix: str = ""
    f_string: bool = False
    label: bool = False


# ----------------------------------------------------------------------------- markdown


def markdown_units(source: str, cell: int) -> list[Unit]:
    """The blocks of one markdown cell that hold words."""
    units, offset, block_start, fence = [], 0, None, None
    lines = source.split("\n")
    in_math = False
    for number, line in enumerate(lines):
        starts_fence = _FENCE.match(line)
        if fence is None and not in_math and not line.strip():
            if block_start is not None:
                units.append((block_start, offset - 1))
                block_start = None
        elif block_start is None:
            block_start = offset
        if starts_fence:
            fence = None if fence is not None and line.strip().startswith(fence) else (fence or starts_fence.group(1))
        elif fence is None and line.strip().startswith("$$") and not (line.strip().endswith("$$") and len(line.strip()) > 2):
            in_math = not in_math
        offset += len(line) + 1
        if number == len(lines) - 1 and block_start is not None:
            units.append((block_start, len(source)))
    return [Unit(cell, "markdown", source[a:b], a, b) for a, b in units if _has_words(source[a:b])]


def _has_words(block: str) -> bool:
    text = re.sub(r"`[^`]*`|\$[^$]*\$|<[^>]+>|https?://\S+", " ", block)
    return bool(_WORD_IN_TEXT.search(text))


# ----------------------------------------------------------------------------- code


def _line_offsets(source: str) -> list[int]:
    offsets, total = [0], 0
    for line in source.split("\n"):
        total += len(line) + 1
        offsets.append(total)
    return offsets


def _strings_in(node: ast.expr) -> Iterator[ast.expr]:
    """The string nodes an expression shows: itself, the parts of a ``+`` or ``... if ... else ...``, items."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str) or isinstance(node, ast.JoinedStr):
        yield node
    elif isinstance(node, ast.BinOp):
        yield from _strings_in(node.left)
        yield from _strings_in(node.right)
    elif isinstance(node, ast.IfExp):
        yield from _strings_in(node.body)
        yield from _strings_in(node.orelse)
    elif isinstance(node, (ast.List, ast.Tuple)):
        for item in node.elts:
            yield from _strings_in(item)
    elif isinstance(node, (ast.GeneratorExp, ast.ListComp)):
        yield from _strings_in(node.elt)
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "join":
        yield from _strings_in(node.func.value)  # " then ".join(f"{n} calls" for ...)
        for arg in node.args:
            yield from _strings_in(arg)


#: Calls whose string arguments are kept to be shown later (a list of events, a table's rows).
COLLECTING_CALLS = {"append", "extend", "insert", "add", "get", "setdefault"}  # get: its default
#: Keyword arguments of a widget that hold what its options show.
WIDGET_KEYWORDS = {"options", "value"}
#: Single words that notebooks use as labels (a verdict, a case's name); a single word is an
#: identifier unless it is listed here, so this list is reviewed by hand.
SINGLE_WORD_LABELS = {"Dense", "Random", "buffer", "clean", "fails", "greedy", "grouped", "loads", "partly", "plain", "solved"}
_CODE_LIKE = re.compile(r"->|\*\*|^\s*(def|import|from|-)\s|^[\w.]+=")
_LABEL_WORDS = re.compile(r"[A-Za-z]{2,}")


def _bindings(tree: ast.AST) -> dict[str, list[ast.expr]]:
    """Name -> the expressions assigned to it in ``tree`` (``x = ...``, ``for x in ...``)."""
    bound: dict[str, list[ast.expr]] = {}
    for node in ast.walk(tree):
        targets, value = [], None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, (ast.For, ast.comprehension)):
            targets, value = [node.target], node.iter
        for target in targets:
            for name in ast.walk(target):
                if isinstance(name, ast.Name):
                    bound.setdefault(name.id, []).append(value)
    return bound


def _plot_sinks(tree: ast.AST) -> list[ast.expr]:
    """The arguments that put text into a plot or a widget (``ax.set_title(...)``, ``label=...``, ``w.description = ...``)."""
    sinks = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in PLOT_CALLS or name.startswith(("plot", "show", "draw")):  # plt.plot, plot_family(...)
                sinks += node.args
            sinks += [k.value for k in node.keywords if k.arg in PLOT_KEYWORDS]
        elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Attribute) and t.attr in PLOT_KEYWORDS for t in node.targets):
            sinks.append(node.value)
    return sinks


def _bound_strings(expr: ast.expr, bound: dict[str, list[ast.expr]], seen: set[int], depth: int = 0) -> Iterator[ast.expr]:
    """The string nodes in ``expr`` and in what the names in it are bound to (three levels deep)."""
    if id(expr) in seen or depth > 3:
        return
    seen.add(id(expr))
    for node in ast.walk(expr):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) or isinstance(node, ast.JoinedStr):
            yield node
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            for value in bound.get(node.id, []):
                yield from _bound_strings(value, bound, seen, depth + 1)


def _label_nodes(tree: ast.AST, helpers: set[str]) -> Iterator[ast.expr]:
    """String nodes that hold a label shown later: items of lists, tuples and dicts, return values,
    arguments of ``append`` and of the notebook's own functions (``helpers``)."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            for item in node.elts:
                yield from _strings_in(item)
        elif isinstance(node, ast.Dict):
            for item in [*node.keys, *node.values]:
                if item is not None:
                    yield from _strings_in(item)
        elif isinstance(node, ast.Return) and node.value is not None:
            yield from _strings_in(node.value)
        elif isinstance(node, ast.Compare):  # `mode == "eval, no_grad"`: the same label, compared
            for operand in [node.left, *node.comparators]:
                yield from _strings_in(operand)
        elif isinstance(node, ast.Subscript):  # `results["lookup", "dot product"]`: the same label, looked up
            yield from _strings_in(node.slice)
        elif isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in COLLECTING_CALLS or (isinstance(node.func, ast.Name) and name in helpers):
                for arg in [*node.args, *(k.value for k in node.keywords)]:
                    yield from _strings_in(arg)
            for keyword in node.keywords:
                if keyword.arg in WIDGET_KEYWORDS:
                    yield from _strings_in(keyword.value)
    bound, seen = _bindings(tree), set()
    for sink in _plot_sinks(tree):  # `suffix = " (no parameter)"` ... `ax.set_title(name + suffix)`
        yield from _bound_strings(sink, bound, seen)


def is_label(text: str, f_string: bool) -> bool:
    """Whether a string literal outside a display call reads as words: words with a space between them
    (``"no scaling"``, ``"gain {gain:.3g}"``), not an identifier (``"running_mean"``) or code
    (``"head_size ** -0.5"``, ``"kdim=5, vdim=3"``, ``"- func: sigmoid(Tensor self) -> Tensor"``)."""
    if text in SINGLE_WORD_LABELS or re.fullmatch(r"[a-z]+(?:-[a-z]+)+", text):  # "self-attention"
        return True
    if " " not in text.strip() or _CODE_LIKE.search(_BRACES.sub(" ", text) if f_string else text):
        return False
    shown = _BRACES.sub(" ", text) if f_string else text
    words = re.findall(r"(?<![\w.=])[A-Za-z]{2,}(?![\w(=])", shown)
    return any(word not in ("True", "False", "None") for word in words)


def notebook_helpers(nb: nbformat.NotebookNode) -> set[str]:
    """The names of the functions a notebook defines (their string arguments may be labels)."""
    names = set()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        names |= {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    return names


def _displayed_nodes(tree: ast.AST) -> Iterator[ast.expr]:
    """String nodes (plain and f-strings) that a display call or keyword shows."""
    strings_in = _strings_in

    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and ast.get_docstring(node) is not None:
            yield node.body[0].value  # a docstring: what help() and the IDE show
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if name in DISPLAY_CALLS:
            for arg in node.args:
                yield from strings_in(arg)
        for keyword in node.keywords:
            if keyword.arg in DISPLAY_KEYWORDS or (name in DISPLAY_CALLS and keyword.arg is None):
                yield from strings_in(keyword.value)


def _node_span(node: ast.expr, source_lines: list[str], offsets: list[int]) -> tuple[int, int]:
    def char(lineno: int, byte_col: int) -> int:
        line = source_lines[lineno - 1]
        return offsets[lineno - 1] + len(line.encode()[:byte_col].decode(errors="ignore"))

    return char(node.lineno, node.col_offset), char(node.end_lineno, node.end_col_offset)


def _string_tokens(tokens: list[tokenize.TokenInfo], offsets: list[int]) -> Iterator[tuple[int, int, str]]:
    """(start, end, literal) of every string literal, f-strings whole (Python 3.12 splits them)."""
    depth, start = 0, None
    for token in tokens:
        kind = tokenize.tok_name.get(token.type, "")
        if kind == "FSTRING_START":
            if depth == 0:
                start = offsets[token.start[0] - 1] + token.start[1]
            depth += 1
        elif kind == "FSTRING_END":
            depth -= 1
            if depth == 0:
                end = offsets[token.end[0] - 1] + token.end[1]
                yield start, end, ""
        elif token.type == tokenize.STRING and depth == 0:
            a = offsets[token.start[0] - 1] + token.start[1]
            b = offsets[token.end[0] - 1] + token.end[1]
            yield a, b, token.string


def code_units(source: str, cell: int, helpers: set[str] = frozenset()) -> list[Unit]:
    """The comments, shown strings and labels of one code cell (``helpers``: the notebook's own functions)."""
    offsets = _line_offsets(source)
    lines = source.split("\n")
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
        tree = ast.parse(source)
    except (SyntaxError, tokenize.TokenError):
        return []
    units = _comment_units(tokens, lines, offsets, cell)
    shown = [_node_span(node, lines, offsets) for node in _displayed_nodes(tree)]
    labels = [_node_span(node, lines, offsets) for node in _label_nodes(tree, set(helpers))]
    for a, b, _ in _string_tokens(tokens, offsets):
        displayed = any(lo <= a and b <= hi for lo, hi in shown)
        if not displayed and not any(lo <= a and b <= hi for lo, hi in labels):
            continue
        literal = source[a:b]
        match = _STRING_START.match(literal)
        prefix, quote = match.group(1), match.group(2)
        f_string = "f" in prefix.lower()
        inner_start, inner_end = a + len(prefix) + len(quote), b - len(quote)
        text = source[inner_start:inner_end]
        if not displayed and ("r" in prefix.lower() or "b" in prefix.lower()):
            continue  # a regular expression or bytes: code, not words
        if displayed and _WORD_IN_TEXT.search(_shown_words(text) if f_string else text):
            units.append(Unit(cell, "string", text, inner_start, inner_end, f_string=f_string))
        elif not displayed and is_label(text, f_string):
            units.append(Unit(cell, "string", text, inner_start, inner_end, f_string=f_string, label=True))
    return sorted(units, key=lambda unit: unit.start)


def _shown_words(f_string: str) -> str:
    """What an f-string shows of its own: the text outside its fields and the literals inside them."""
    literals = [lit for field in _BRACES.findall(f_string) for lit in re.findall(r"'([^']*)'|\"([^\"]*)\"", field)]
    return " ".join([_BRACES.sub(" ", f_string), *(a or b for a, b in literals)])


def _comment_units(tokens, lines, offsets, cell) -> list[Unit]:
    units: list[Unit] = []
    group: list[tokenize.TokenInfo] = []

    def close():
        if group:
            first, last = group[0], group[-1]
            text = "\n".join(_comment_text(t.string) for t in group)
            whole_line = lines[first.start[0] - 1][: first.start[1]].strip() == ""
            if _WORD_IN_COMMENT.search(text) and not _SKIP_COMMENT.match(first.string):
                indent = lines[first.start[0] - 1][: first.start[1]] if whole_line else ""
                start = offsets[first.start[0] - 1] + (0 if whole_line else first.start[1])
                end = offsets[last.end[0] - 1] + last.end[1]
                units.append(Unit(cell, "comment", text, start, end, prefix=indent))
            group.clear()

    for token in tokens:
        if token.type != tokenize.COMMENT:
            continue
        row, col = token.start
        whole_line = lines[row - 1][:col].strip() == ""
        previous = group[-1] if group else None
        continues = (
            previous is not None and whole_line and previous.start[0] == row - 1
            and previous.start[1] == col and lines[previous.start[0] - 1][: previous.start[1]].strip() == ""
        )
        if not continues:
            close()
        group.append(token)
        if not whole_line:
            close()
    close()
    return units


def _comment_text(comment: str) -> str:
    text = comment[1:]
    return text[1:] if text.startswith(" ") else text


def cell_units(cell: nbformat.NotebookNode, index: int, helpers: set[str] = frozenset()) -> list[Unit]:
    """The units of one cell (raw cells have none); ``helpers``: the functions its notebook defines."""
    if cell.cell_type == "markdown":
        return markdown_units(cell.source, index)
    if cell.cell_type == "code":
        return code_units(cell.source, index, helpers)
    return []


def notebook_units(nb: nbformat.NotebookNode) -> list[Unit]:
    """Every unit of a notebook, in reading order.

    A label is translated only where every literal of the same text in the notebook's code is a
    unit too, so a key and every lookup of it change together (``outputs["dog bites man"]``).
    """
    helpers = notebook_helpers(nb)
    units = [unit for index, cell in enumerate(nb.cells) for unit in cell_units(cell, index, helpers)]
    spans = {(u.cell, u.start, u.end) for u in units}
    elsewhere = set()  # texts of string literals that are not units
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        try:
            tokens = list(tokenize.generate_tokens(io.StringIO(cell.source).readline))
        except (SyntaxError, tokenize.TokenError):
            continue
        for a, b, _ in _string_tokens(tokens, _line_offsets(cell.source)):
            match = _STRING_START.match(cell.source[a:b])
            start, end = a + len(match.group(1)) + len(match.group(2)), b - len(match.group(2))
            if (index, start, end) not in spans:
                elsewhere.add(cell.source[start:end])
    keys = package_literals() & _looked_up(nb)  # `slope["naive attention"]`: a name the package gives
    probes = _probes(nb)  # `name.startswith("encoder")`: the code reads the label's words
    return [u for u in units if not (u.label and (u.text in elsewhere or u.text in keys or any(p in u.text for p in probes)))]


def _code_trees(nb: nbformat.NotebookNode):
    """The syntax tree of every code cell that parses."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        try:
            yield ast.parse(cell.source)
        except SyntaxError:
            continue


def report(problems: list[str], limit: int = 25) -> str:
    """The first ``limit`` problems, one a line, and how many more there are."""
    more = f"\n... and {len(problems) - limit} more" if len(problems) > limit else ""
    return "\n".join(problems[:limit]) + more


_STRING_PROBES = {"startswith", "endswith", "find", "index", "count", "split", "replace", "removeprefix", "removesuffix"}


def _probes(nb: nbformat.NotebookNode) -> set[str]:
    """Strings a notebook's code looks for inside other strings (``s.startswith("encoder")``, ``"x" in s``)."""
    found = set()
    for tree in _code_trees(nb):
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _STRING_PROBES:
                found |= {a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)}
            elif isinstance(node, ast.Compare) and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops):
                if isinstance(node.left, ast.Constant) and isinstance(node.left.value, str):
                    found.add(node.left.value)
    return {p for p in found if len(p.strip()) >= 3}


def _looked_up(nb: nbformat.NotebookNode) -> set[str]:
    """The strings a notebook's code looks up or compares (``d["key"]``, ``x == "key"``)."""
    found = set()
    for tree in _code_trees(nb):
        for node in ast.walk(tree):
            operands = [node.slice] if isinstance(node, ast.Subscript) else (
                [node.left, *node.comparators] if isinstance(node, ast.Compare) else [])
            found |= {s.value for o in operands for s in _strings_in(o) if isinstance(s, ast.Constant)}
    return found


@functools.cache
def package_literals() -> frozenset[str]:
    """Every string literal of the package's code: a label a notebook shares with it is a key
    (``slope["naive attention"]`` looks up a name that ``course_utils.scaling`` gives), not a label."""
    literals = set()
    for path in PACKAGE.rglob("*.py"):
        if "tooling" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                literals.add(node.value)
    return frozenset(literals)


# ----------------------------------------------------------------------------- applying translations


def render(unit: Unit, translation: str) -> str:
    """What replaces ``unit``'s text in the cell when it reads ``translation``."""
    if unit.kind != "comment":
        return translation
    if unit.prefix or "\n" in unit.text:
        return "\n".join(f"{unit.prefix}# {line}".rstrip() for line in translation.split("\n"))
    return "# " + " ".join(translation.split("\n"))


def translate_source(source: str, units: Iterable[Unit], translations: dict[str, str]) -> str:
    """``source`` with each unit that has a translation replaced (the rest stay English)."""
    for unit in sorted(units, key=lambda u: u.start, reverse=True):
        translation = translations.get(unit.text)
        if translation:
            source = source[: unit.start] + render(unit, translation) + source[unit.end :]
    return source


def translate_notebook(nb: nbformat.NotebookNode, translations: dict[str, str]) -> nbformat.NotebookNode:
    """The Chinese notebook: every unit translated, outputs cleared, the language cell in front."""
    zh = nbformat.from_dict(nb)
    units = notebook_units(nb)
    for index, cell in enumerate(zh.cells):
        cell.source = translate_source(cell.source, [u for u in units if u.cell == index], translations)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    zh.cells.insert(0, nbformat.v4.new_code_cell(LANGUAGE_CELL))
    return zh


def english_source(zh_path: Path) -> Path:
    """The English notebook a Chinese one is built from."""
    return NOTEBOOKS / zh_path.name


# ----------------------------------------------------------------------------- catalogues


def catalogue_path(notebook: Path) -> Path:
    """The PO catalogue of one English notebook."""
    return NOTEBOOK_CATALOGUES / f"{notebook.stem}.po"


def current_translations(po: polib.POFile) -> dict[str, str]:
    """msgid -> msgstr for every entry that is translated and not fuzzy."""
    return {e.msgid: e.msgstr for e in po if e.msgstr and not e.obsolete and "fuzzy" not in e.flags}


def load(path: Path) -> polib.POFile:
    return polib.pofile(str(path), wrapwidth=0) if path.exists() else _new_po()


def _new_po() -> polib.POFile:
    po = polib.POFile(wrapwidth=0)
    po.metadata = {
        "Project-Id-Version": "attention-from-the-inside",
        "Language": LOCALE,
        "MIME-Version": "1.0",
        "Content-Type": "text/plain; charset=UTF-8",
        "Content-Transfer-Encoding": "8bit",
        "Plural-Forms": "nplurals=1; plural=0;",
    }
    return po


@dataclass(frozen=True)
class Message:
    """One English message to be translated, and where it comes from."""

    text: str
    where: str
    kind: str
    brace_format: bool = False


def merge(path: Path, messages: Iterable[Message]) -> polib.POFile:
    """``path``'s catalogue brought up to date with ``messages`` (written back), like msgmerge.

    A message already there keeps its translation. A new message that is close to one that
    went away takes that one's translation, marked fuzzy, with the old English kept as
    ``previous_msgid``. A translation nobody uses any more stays at the end, obsolete.
    """
    old = load(path)
    old_entries = {e.msgid: e for e in old}
    po = _new_po()
    seen: dict[str, polib.POEntry] = {}
    for message in messages:
        if message.text in seen:
            seen[message.text].occurrences.append(tuple(message.where.rsplit(":", 1)))
            continue
        entry = polib.POEntry(msgid=message.text, msgstr="", occurrences=[tuple(message.where.rsplit(":", 1))], comment=message.kind)
        if message.brace_format:
            entry.flags.append("python-brace-format")
        before = old_entries.get(message.text)
        if before is not None and not before.obsolete:
            entry.msgstr, entry.tcomment, entry.previous_msgid = before.msgstr, before.tcomment, before.previous_msgid
            if "fuzzy" in before.flags:
                entry.flags.append("fuzzy")
        elif before is not None and before.msgstr:  # came back: its translation was kept, obsolete
            entry.msgstr, entry.tcomment = before.msgstr, before.tcomment
        seen[message.text] = entry
        po.append(entry)
    gone = [e for e in old if e.msgid not in seen and e.msgstr and e.msgid]
    for entry in po:
        if entry.msgstr or not gone:
            continue
        match = difflib.get_close_matches(entry.msgid, [e.msgid for e in gone], n=1, cutoff=0.6)
        if match:
            before = next(e for e in gone if e.msgid == match[0])
            entry.msgstr, entry.tcomment, entry.previous_msgid = before.msgstr, before.tcomment, before.msgid
            entry.flags.append("fuzzy")
    used = {e.previous_msgid for e in po if "fuzzy" in e.flags}
    for before in gone:
        if before.msgid not in used:
            po.append(polib.POEntry(msgid=before.msgid, msgstr=before.msgstr, tcomment=before.tcomment, obsolete=True))
    path.parent.mkdir(parents=True, exist_ok=True)
    po.save(str(path))
    return po


def notebook_messages(notebook: Path) -> list[Message]:
    nb = nbformat.read(notebook, as_version=4)
    return [
        Message(u.text, f"{notebook.name}:{u.cell}", _KIND_NAMES[u.kind], u.f_string) for u in notebook_units(nb)
    ]


_KIND_NAMES = {"markdown": "markdown", "comment": "code comment", "string": "string shown by the code"}


# ----------------------------------------------------------------------------- the package's messages


def package_modules() -> list[Path]:
    """The package's modules that mark messages with ``_`` or ``N_``."""
    return [
        path for path in sorted(PACKAGE.rglob("*.py"))
        if "tooling" not in path.parts and re.search(r"\bN?_\(", path.read_text(encoding="utf-8"))
    ]


def package_catalogue_path(module: Path) -> Path:
    """``course_utils/checks/nb03.py`` -> ``.../LC_MESSAGES/checks.nb03.po``."""
    dotted = ".".join(module.relative_to(PACKAGE).with_suffix("").parts)
    return PACKAGE_CATALOGUES / f"{dotted}.po"


def package_messages(module: Path) -> list[Message]:
    """Every literal passed to ``_()`` or ``N_()`` in ``module``.

    Raises:
        ValueError: when ``_`` or ``N_`` gets something other than one string literal (an
            f-string cannot be translated: use ``_("... {name} ...").format(name=...)``).
    """
    source = module.read_text(encoding="utf-8")
    messages = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("_", "N_"):
            arg = node.args[0] if len(node.args) == 1 and not node.keywords else None
            if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                where = f"{module.relative_to(ROOT)}:{node.lineno}"
                raise ValueError(f"{where}: {node.func.id}() takes one string literal, got {ast.unparse(node)[:80]}")
            brace = bool(_BRACES.search(arg.value))
            messages.append(Message(arg.value, f"{module.relative_to(ROOT)}:{node.lineno}", "package message", brace))
    return messages


# ----------------------------------------------------------------------------- commands


def extract(notebooks: bool = True, modules: Iterable[Path] = ()) -> None:
    """Bring catalogues up to date: every notebook's (when ``notebooks``) and the given modules' (default: all)."""
    for notebook in course_notebooks() if notebooks else ():
        po = merge(catalogue_path(notebook), notebook_messages(notebook))
        print(f"{catalogue_path(notebook).relative_to(ROOT)}: {_summary(po)}")
    for module in [m.resolve() for m in modules] or package_modules():
        path = package_catalogue_path(module)
        po = merge(path, package_messages(module))
        print(f"{path.relative_to(ROOT)}: {_summary(po)}")


def build(notebooks: Iterable[Path] = ()) -> list[Path]:
    """Write the Chinese notebooks (not executed) and return their paths."""
    written = []
    ZH_NOTEBOOKS.mkdir(parents=True, exist_ok=True)
    for notebook in notebooks or course_notebooks():
        nb = nbformat.read(notebook, as_version=4)
        translations = current_translations(load(catalogue_path(notebook)))
        target = ZH_NOTEBOOKS / notebook.name
        nbformat.write(translate_notebook(nb, translations), target)
        written.append(target)
    return written


def _summary(po: polib.POFile) -> str:
    entries = [e for e in po if not e.obsolete]
    fuzzy = sum("fuzzy" in e.flags for e in entries)
    empty = sum(not e.msgstr for e in entries)
    return f"{len(entries)} entries, {empty} untranslated, {fuzzy} fuzzy"


def status() -> int:
    todo = 0
    paths = [catalogue_path(n) for n in course_notebooks()] + [package_catalogue_path(m) for m in package_modules()]
    for path in paths:
        po = load(path)
        print(f"{path.relative_to(ROOT)}: {_summary(po)}")
        todo += sum(1 for e in po if not e.obsolete and (not e.msgstr or "fuzzy" in e.flags))
    return 1 if todo else 0


# ----------------------------------------------------------------------------- checks


@dataclass(frozen=True)
class Term:
    """One glossary row: the English spellings, the one Chinese rendering, whether tests hold to it."""

    english: tuple[str, ...]
    chinese: str
    checked: bool

    def english_pattern(self) -> re.Pattern:
        spellings = "|".join(re.escape(e).replace(r"\ ", r"[\s-]+") for e in sorted(self.english, key=len, reverse=True))
        return re.compile(rf"(?<![\w-])(?:{spellings})(?:s|es)?(?![\w-])", re.I)

    def chinese_pattern(self) -> re.Pattern:
        return re.compile(re.escape(self.chinese).replace(r"\ ", r"\s?"))


def glossary() -> list[Term]:
    """The rows of the glossary (``notebooks/zh/术语表.md``)."""
    terms = []
    for line in GLOSSARY.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0] not in ("英文", "") and not set(cells[0]) <= set("-: "):
            terms.append(Term(tuple(e.strip() for e in cells[0].split(" / ")), cells[1], cells[2] == "✓"))
    return terms


def prose(markdown: str) -> str:
    """Markdown without what is not prose: code, maths, link targets, HTML tags, URLs."""
    text = re.sub(r"(^|\n)\s*(```|~~~).*?(\n\s*\2|$)", "\n", markdown, flags=re.S)
    text = re.sub(r"\$\$.*?\$\$|\$[^$\n]*\$|`[^`]+`|\]\([^)]*\)|<[^>]+>|https?://\S+", " ", text, flags=re.S)
    return text


def _without_headings(markdown: str) -> str:
    return "\n".join(line for line in markdown.split("\n") if not line.lstrip().startswith("#"))


def _cell_of(entry: polib.POEntry) -> str:
    return f"cell {entry.occurrences[0][1]}" if entry.occurrences else "cell ?"


def _clip(text: str, n: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def catalogue_problems(notebook: Path) -> list[str]:
    """What keeps one notebook's catalogue from being a complete, current translation."""
    po = load(catalogue_path(notebook))
    entries = {e.msgid: e for e in po if not e.obsolete}
    problems = []
    nb = nbformat.read(notebook, as_version=4)
    for unit in notebook_units(nb):
        entry = entries.get(unit.text)
        where = f"notebooks/{notebook.name}, cell {unit.cell} ({unit.kind})"
        if entry is None:
            problems.append(f"{where}: this English has no entry in {catalogue_path(notebook).relative_to(ROOT)} "
                            f"(run `make translations`, then translate it): {_clip(unit.text)!r}")
        elif not entry.msgstr:
            problems.append(f"{where}: not translated yet: {_clip(unit.text)!r}")
        elif "fuzzy" in entry.flags:
            problems.append(f"{where}: the English changed since it was translated (fuzzy entry): {_clip(unit.text)!r}")
        elif unit.f_string or "python-brace-format" in entry.flags:
            if placeholders(unit.text) != placeholders(entry.msgstr):
                problems.append(f"{where}: the translation must keep every {{...}} of the English as it is: {_clip(unit.text)!r}")
    return problems


def glossary_problems(notebook: Path) -> list[str]:
    """Where one notebook's translation departs from the glossary."""
    terms = [t for t in glossary() if t.checked]
    po = load(catalogue_path(notebook))
    problems = []
    for entry in po:
        if entry.obsolete or not entry.msgstr or entry.comment != "markdown":
            continue
        english, chinese = prose(entry.msgid), prose(entry.msgstr)
        for term in terms:
            if _uses(term, english, terms) and not term.chinese_pattern().search(chinese):
                problems.append(
                    f"notebooks/{notebook.name}, {_cell_of(entry)}: the English says {term.english[0]!r}; "
                    f"the glossary renders it {term.chinese!r}, which the translation lacks: {_clip(entry.msgid)!r}"
                )
    zh = ZH_NOTEBOOKS / notebook.name
    if zh.exists():
        problems += first_use_problems(nbformat.read(zh, as_version=4), notebook.name, terms)
    return problems


def placeholders(text: str) -> list[str]:
    """The ``{...}`` of a format string, sorted, with the text of string literals inside them blanked.

    A translation must keep every expression and format spec; only words inside a literal
    (``{'context T':>10}``, a column header) may be translated, and the literal's width may
    change, so that a header of Chinese characters (two columns each) still lines up.
    """
    fields = [re.sub(r"'[^']*'|\"[^\"]*\"", "''", field) for field in _BRACES.findall(text)]
    return sorted(re.sub(r"^\{'':([<>^]?)\d*", r"{'':\1", field) for field in fields)  # a header's width may change


def _uses(term: Term, english: str, terms: list[Term]) -> bool:
    """Whether ``english`` uses ``term`` other than inside a longer term ("embedding" in "rotary position embedding")."""
    longer = [t for t in terms if t is not term and any(len(a) > len(b) and b.lower() in a.lower()
                                                         for a in t.english for b in term.english)]
    taken = [m.span() for t in longer for m in t.english_pattern().finditer(english)]
    return any(not any(a <= m.start() < b for a, b in taken) for m in term.english_pattern().finditer(english))


def first_use_problems(zh: nbformat.NotebookNode, name: str, terms: list[Term]) -> list[str]:
    """Each checked term's first use in a Chinese notebook's prose must be followed by its English in brackets."""
    text = "\n\n".join(_without_headings(prose(c.source)) for c in zh.cells if c.cell_type == "markdown")
    longer = sorted(terms, key=lambda t: len(t.chinese), reverse=True)
    problems = []
    for term in terms:
        taken = [m.span() for t in longer if len(t.chinese) > len(term.chinese) and term.chinese in t.chinese
                 for m in t.chinese_pattern().finditer(text)]
        first = next((m for m in term.chinese_pattern().finditer(text)
                      if not any(a <= m.start() < b for a, b in taken)), None)
        if first is None:
            continue
        after = text[first.end():first.end() + 80]
        bracketed = re.match(r"[*_]*\s?[（(]\s*(.+?)\s*[）)]", after)  # bold may close between them
        if not (bracketed and term.english_pattern().match(bracketed.group(1))):
            problems.append(
                f"notebooks/zh/{name}: the first use of {term.chinese!r} needs its English after it, "
                f"{term.chinese}（{term.english[0]}）: …{_clip(text[max(0, first.start() - 20):first.end() + 20], 60)}…"
            )
    return problems


def package_problems(module: Path) -> list[str]:
    """What keeps one module's catalogue from being a complete, current translation."""
    path = package_catalogue_path(module)
    entries = {e.msgid: e for e in load(path) if not e.obsolete}
    problems = []
    for message in package_messages(module):
        entry = entries.get(message.text)
        if entry is None or not entry.msgstr:
            problems.append(f"{message.where}: not translated in {path.relative_to(ROOT)}: {_clip(message.text)!r}")
        elif "fuzzy" in entry.flags:
            problems.append(f"{message.where}: the English changed since it was translated (fuzzy): {_clip(message.text)!r}")
        elif placeholders(message.text) != placeholders(entry.msgstr):
            problems.append(f"{message.where}: the translation must keep every {{...}} as it is: {_clip(message.text)!r}")
    return problems


def code_problems(notebook: Path) -> list[str]:
    """Where the Chinese notebook's sources are not what the English and the catalogue make."""
    zh_path = ZH_NOTEBOOKS / notebook.name
    if not zh_path.exists():
        return [f"notebooks/zh/{notebook.name} is missing: run `make zh`"]
    expected = translate_notebook(nbformat.read(notebook, as_version=4), current_translations(load(catalogue_path(notebook))))
    actual = nbformat.read(zh_path, as_version=4)
    if len(actual.cells) != len(expected.cells):
        return [f"notebooks/zh/{notebook.name} has {len(actual.cells)} cells, the English and its catalogue make "
                f"{len(expected.cells)}: run `make zh`"]
    problems = []
    for index, (a, e) in enumerate(zip(actual.cells, expected.cells)):
        if a.cell_type != e.cell_type or a.source != e.source:
            problems.append(f"notebooks/zh/{notebook.name}, cell {index}: differs from what notebooks/{notebook.name} "
                            f"(cell {index - 1}) and its catalogue make: run `make zh`")
        elif a.cell_type == "code":
            try:
                ast.parse(a.source)
            except SyntaxError as exc:
                problems.append(f"notebooks/zh/{notebook.name}, cell {index}: the translated code does not parse: {exc}")
    return problems


# ----------------------------------------------------------------------------- English in the outputs

#: English a Chinese notebook's outputs may show, beyond what the rules of :func:`english_in_output`
#: allow (code, values, PyTorch's own messages): each with its reason. Reviewed by hand; keep it short.
ALLOWED_ENGLISH = (
    (r"<Figure size \d+x\d+ with \d+ Axes>", "matplotlib's own text for a figure"),
    (r"GPT-2 small|Llama 2 \d+B|Mistral 7B", "the names of published models"),
    (r"naive attention|course MultiheadAttention", "names that course_utils.scaling gives its benchmark candidates"),
    (r"encoder self-attention", "an option of notebook 05's attention-map widget that its code tells apart by the "
     "English prefix (startswith(\"encoder\")), so the extraction keeps it as it is"),
    (r"supplying both src_key_padding_mask and src_mask at the same time is not supported with NestedTensor input",
     "PyTorch's reason for leaving the fast path, quoted"),
    (r"size mismatch for \w+: copying a param with shape .* from checkpoint, the shape in current model is .*",
     "PyTorch's load_state_dict message, quoted after the notebook's own words"),
)
_RUN = re.compile(r"(?<![\w./\\-])[A-Za-z][a-z]+(?:(?:,? |-)[A-Za-z][a-z]+)+(?![\w(=/])")
_MESSAGE = re.compile(r"\b(?:[A-Z]\w*(?:Error|Exception|Warning)|警告)\s?[:：]\s?(?P<message>.*)$")
_PROGRESS = re.compile(r"\d+%\|.*$")
_LONG_QUOTE = re.compile(r"'[^'\n]{25,}'|\"[^\"\n]{25,}\"")  # sampled or corpus text, a long repr
_KEYWORDS = {"is", "in", "not", "and", "or", "if", "else", "elif", "def", "return", "lambda", "for", "None", "True", "False",
             "nan", "inf"}


@functools.cache
def _foreign_text() -> str:
    """What PyTorch prints of its own (its Python sources, stubs and operator tables): it stays English."""
    import torch
    import torchgen

    roots = [Path(torch.__file__).parent, Path(torchgen.__file__).parent / "packaged"]
    patterns = ["nn/**/*.py", "_VF.py", "functional.py", "_refs/__init__.py", "_C/*.pyi", "**/native_functions.yaml",
                "**/derivatives.yaml", "nested/*.py", "_tensor.py"]
    return " ".join(" ".join(path.read_text(encoding="utf-8", errors="ignore").split())
                    for root in roots for pattern in patterns for path in root.glob(pattern))


@functools.cache
def _course_code() -> str:
    """The package's code without its string literals (its messages must be Chinese; its code is shown as is)."""
    return " ".join(code_without_strings(path.read_text(encoding="utf-8"))
                    for path in PACKAGE.rglob("*.py") if "tooling" not in path.parts)


def code_without_strings(source: str) -> str:
    """``source``'s code and comments, each string literal blanked, whitespace made single spaces."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):
        return ""
    offsets = _line_offsets(source)
    for a, b, _ in reversed(list(_string_tokens(tokens, offsets))):
        source = source[:a] + "''" + source[b:]
    return " ".join(source.split())


@functools.cache
def _code_names() -> frozenset[str]:
    """Names of torch.nn's classes and torch.nn.functional's functions (``Tanh``, ``gelu``)."""
    import torch.nn.functional as F
    from torch import nn

    return frozenset({n for n in dir(nn) if n[:1].isupper()} | {n for n in dir(F) if not n.startswith("_")})


@functools.cache
def _kind_names() -> frozenset[str]:
    """The names the package's options take (``positions="rope"``, ``attention="dense"``, ``"fixed_random"``)."""
    from course_utils.gpt import ATTENTIONS, POSITIONS
    from course_utils.synthesizer import SYNTHESIZER_KINDS

    return frozenset({*ATTENTIONS, *POSITIONS, *(p for kind in SYNTHESIZER_KINDS for p in kind.split("+"))})


@functools.cache
def _course_names() -> frozenset[str]:
    import importlib
    import pkgutil

    import course_utils

    names = set()
    for info in pkgutil.walk_packages(course_utils.__path__, "course_utils."):
        if ".tooling" in info.name or ".bench" in info.name:
            continue
        try:
            names |= {n for n in dir(importlib.import_module(info.name)) if not n.startswith("_")}
        except Exception:  # a module that needs what this machine lacks
            continue
    return frozenset(names)


def english_in_output(line: str, code: str) -> list[str]:
    """The English prose in one line of a Chinese notebook's output (``code``: the English notebook's code).

    Allowed: PyTorch's and Python's own messages (after ``SomeError:`` or ``警告：``), unless a
    ``course_utils`` object raised it (``Head: ...``); progress bars; long quoted text (sampled
    text, the corpus); a line of code; Python's keywords and values; torch.nn's class names and
    torch.nn.functional's function names; three or more words found verbatim in PyTorch's sources
    (its warnings, its fast-path reasons, printed source) or the package's code, and any words of
    the notebook's code (string literals aside: those are what is checked); and
    :data:`ALLOWED_ENGLISH`. What is left and reads as two or more English words is prose.
    """
    message = _MESSAGE.search(line)
    if message:
        head = re.match(r"(\w+):\s", message.group("message"))
        if not (head and head.group(1) in _course_names()):
            line = line[: message.start("message")]
    line = _LONG_QUOTE.sub("''", _PROGRESS.sub("", line))
    for pattern, _reason in ALLOWED_ENGLISH:
        line = re.sub(pattern, "|", line)
    stripped = line.strip()
    for attempt in (stripped, stripped + "\n    pass"):
        try:
            compile(attempt, "<output>", "exec")
            return []
        except (SyntaxError, ValueError):
            pass
    foreign = _foreign_text() + _course_code()
    for segment in re.split(r"\s+->\s+|[：:]\s*", line):  # a segment PyTorch printed, as it printed it
        if len(segment.split()) >= 2 and " ".join(segment.split()) in foreign:
            line = line.replace(segment, "|")
    names = _code_names() | _kind_names()
    line = re.sub(r"(?<![\w.])[A-Za-z]\w*(?![\w.])", lambda m: "|" if m.group() in _KEYWORDS or m.group() in names else m.group(), line)
    found = []
    for run in _RUN.findall(line):
        if run in code:
            continue
        if len(re.findall(r"[A-Za-z]+", run)) < 3 or run not in foreign:  # two words are too common to be PyTorch's
            found.append(run)
    return found


def _output_texts(cell: nbformat.NotebookNode) -> Iterator[str]:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            yield output.get("text", "")
        elif output.get("output_type") == "error":
            yield f"{output.get('ename')}: {output.get('evalue')}"
        for mime in ("text/plain", "text/html", "text/markdown"):
            text = output.get("data", {}).get(mime)
            if text is not None:
                text = "".join(text) if isinstance(text, list) else text
                yield html.unescape(re.sub(r"<[^>]+>", " ", text)) if mime == "text/html" else text


def _chinese_and_english_code(notebook: Path) -> tuple[nbformat.NotebookNode, str]:
    """The Chinese twin of ``notebook``, and the English notebook's code without its strings (the
    identifiers an output may show in English)."""
    zh = nbformat.read(ZH_NOTEBOOKS / notebook.name, as_version=4)
    english = nbformat.read(notebook, as_version=4)
    return zh, " ".join(code_without_strings(c.source) for c in english.cells if c.cell_type == "code")


def output_problems(notebook: Path) -> list[str]:
    """English prose in the stored outputs of one Chinese notebook (stream text, text/plain, text/html)."""
    zh, code = _chinese_and_english_code(notebook)
    problems = []
    for index, cell in enumerate(zh.cells):
        for text in _output_texts(cell):
            for line in text.splitlines():
                words = english_in_output(line, code)
                if words:
                    problems.append(f"notebooks/zh/{notebook.name}, cell {index}: English in the output {words}: {_clip(line, 90)!r}")
    return problems


#: Calls and keyword arguments that put text into a plot or a widget.
PLOT_CALLS = {"title", "set_title", "suptitle", "xlabel", "ylabel", "set_xlabel", "set_ylabel", "text", "annotate",
              "legend", "set_xticklabels", "set_yticklabels", "xticks", "yticks", "figtext", "set_text"}
PLOT_KEYWORDS = {"label", "title", "xlabel", "ylabel", "labels", "description", "options", "suptitle"}


def _plot_strings(tree: ast.AST) -> Iterator[str]:
    """The strings a cell draws into its plots and widgets: literals in a plotting call's arguments, and
    the literals that the names in those arguments are bound to in the cell (``for name, fn in [("验证集", f)]``)."""
    bound, seen = _bindings(tree), set()
    for sink in _plot_sinks(tree):
        for node in _bound_strings(sink, bound, seen):
            if isinstance(node, ast.Constant):
                yield node.value
            else:  # an f-string: the words outside its fields
                yield " ".join(v.value for v in node.values if isinstance(v, ast.Constant))


def plot_text_problems(notebook: Path) -> list[str]:
    """English prose that a Chinese notebook's code draws into plots and widgets (the stored images can't be read)."""
    zh, code = _chinese_and_english_code(notebook)
    problems = []
    for index, cell in enumerate(zh.cells):
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        for text in dict.fromkeys(_plot_strings(tree)):
            words = english_in_output(text, code) if " " in text.strip() else []
            if words:
                problems.append(f"notebooks/zh/{notebook.name}, cell {index}: a plot or widget shows English {words}: {text!r}")
    return problems


# ----------------------------------------------------------------------------- the CJK font

SYSTEM_CJK_FONT = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
#: The 3,500 common characters (level 1 of the Table of General Standard Chinese Characters).
COMMON_CHARACTERS = PACKAGE / "data" / "fonts" / "common-characters.txt"
#: Chinese punctuation and full-width forms a learner's label may use.
CJK_PUNCTUATION = "、。〈〉《》「」『』【】〔〕〖〗・“”‘’…—·！＂＃＄％＆＇（）＊＋，－．／：；＜＝＞？＠［＼］＾＿｀｛｜｝～￥"


def font_characters() -> set[str]:
    """Every non-ASCII character a plot or printed string of the Chinese edition may draw."""
    chars: set[str] = set()
    for notebook in course_notebooks():
        for entry in load(catalogue_path(notebook)):
            if entry.comment != "markdown":
                chars.update(entry.msgstr)
    for module in package_modules():
        for entry in load(package_catalogue_path(module)):
            chars.update(entry.msgstr)
    chars.update(LANGUAGE_CELL)
    return {c for c in chars if ord(c) > 0x2E7F}  # CJK punctuation, kana and ideographs onwards


def common_characters() -> str:
    """The 3,500 common characters, in the table's order."""
    lines = COMMON_CHARACTERS.read_text(encoding="utf-8").splitlines()
    return "".join(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def subset_characters() -> set[str]:
    """What the course's font holds: the course's own characters, the 3,500 common ones, punctuation."""
    return font_characters() | set(common_characters()) | set(CJK_PUNCTUATION)


def write_font(source: Path = SYSTEM_CJK_FONT) -> Path:
    """Subset Noto Sans CJK SC (``source``: Debian's fonts-noto-cjk) to :func:`subset_characters`.

    The same source and characters give the same file, byte for byte. Only outlines and metrics
    are kept: matplotlib draws each character's own glyph (it does not shape text with OpenType
    layout features) and hints outlines with FreeType's autohinter, so layout tables (which pull in
    the Japanese, Korean and traditional forms) and CFF hints would only double the file.
    """
    from fontTools import subset
    from fontTools.ttLib import TTCollection

    from course_utils.i18n import CJK_FONT

    collection = TTCollection(str(source))
    font = next(f for f in collection.fonts if f["name"].getDebugName(1) == "Noto Sans CJK SC")
    options = subset.Options()
    options.name_IDs = ["*"]
    options.layout_features = []
    options.hinting = False
    subsetter = subset.Subsetter(options)
    subsetter.populate(text="".join(sorted(subset_characters())))
    subsetter.subset(font)
    for record in font["name"].names:  # a subset is a different font: say so in its name
        if record.nameID in (1, 4, 16):
            record.string = "Noto Sans SC (course subset)"
        elif record.nameID == 6:
            record.string = "NotoSansSC-CourseSubset"
    CJK_FONT.parent.mkdir(parents=True, exist_ok=True)
    font.recalcTimestamp = False  # the same characters make the same file
    font.save(str(CJK_FONT))
    return CJK_FONT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["extract", "extract-package", "build", "status", "check", "check-package", "font"])
    parser.add_argument("paths", nargs="*", type=Path, help="English notebooks, or modules for *-package (default: all)")
    parser.add_argument("--source", type=Path, default=SYSTEM_CJK_FONT, help="font: the Noto Sans CJK collection to cut from")
    args = parser.parse_args(argv)
    args.notebooks = args.paths
    if args.command == "extract":
        extract()
    elif args.command == "extract-package":
        extract(notebooks=False, modules=args.paths)
    elif args.command == "check-package":
        problems = [p for module in (args.paths or package_modules()) for p in package_problems(module.resolve())]
        print("\n".join(problems) or "no problems")
        return 1 if problems else 0
    elif args.command == "build":
        for path in build(args.notebooks):
            print(f"wrote {path.relative_to(ROOT)}")
    elif args.command == "status":
        return status()
    elif args.command == "check":
        problems = []
        for notebook in args.notebooks or course_notebooks():
            notebook = NOTEBOOKS / Path(notebook).name
            problems += catalogue_problems(notebook) + glossary_problems(notebook) + code_problems(notebook)
            problems += output_problems(notebook) + plot_text_problems(notebook)
        print("\n".join(problems) or "no problems")
        return 1 if problems else 0
    else:
        print(f"wrote {write_font(args.source)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
