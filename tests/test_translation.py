"""The Chinese edition keeps in step with the English.

Every translatable unit of every English notebook has a current translation; the Chinese
notebooks are exactly what the English and the catalogues make, and their code is the English
code; the translations follow the glossary; the package's messages are all translated; the
course's CJK font has every character the plots may draw. Nbval executes both editions.
"""

from __future__ import annotations

import io
import re
import shutil
import tokenize

import nbformat
import polib
import pytest

from course_utils.tooling import translate as T
from course_utils.tooling.nbval_compare import code_cells, compared_text
from course_utils.tooling.notebooks import course_notebooks

NOTEBOOKS = course_notebooks()
IDS = [p.stem for p in NOTEBOOKS]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_every_english_unit_has_a_current_translation(notebook):
    problems = T.catalogue_problems(notebook)
    assert not problems, T.report(problems)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_chinese_notebook_is_built_from_the_english_and_its_catalogue(notebook):
    problems = T.code_problems(notebook)
    assert not problems, T.report(problems)


def _skeleton(source: str) -> list[tuple[int, str]]:
    """The code's tokens, without comments and with every string literal's text blanked."""
    tokens = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        name = tokenize.tok_name.get(token.type, "")
        if token.type in (tokenize.COMMENT, tokenize.NL) or name == "FSTRING_MIDDLE":
            continue
        text = '""' if token.type == tokenize.STRING else token.string
        tokens.append((token.type, text))
    return tokens


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_chinese_code_is_the_english_code(notebook):
    english = nbformat.read(notebook, as_version=4)
    chinese = nbformat.read(T.ZH_NOTEBOOKS / notebook.name, as_version=4)
    assert chinese.cells[0].source == T.LANGUAGE_CELL, f"notebooks/zh/{notebook.name}: the first cell must select Chinese"
    assert len(chinese.cells) == len(english.cells) + 1, f"notebooks/zh/{notebook.name}: run `make zh`"
    for index, (en, zh) in enumerate(zip(english.cells, chinese.cells[1:])):
        assert en.cell_type == zh.cell_type, f"notebooks/zh/{notebook.name}, cell {index + 1}: cell type differs"
        if en.cell_type == "code":
            assert _skeleton(zh.source) == _skeleton(en.source), (
                f"notebooks/zh/{notebook.name}, cell {index + 1}: the code differs from notebooks/{notebook.name}, "
                f"cell {index} (comments and strings aside)"
            )
            assert zh.metadata.get("tags", []) == en.metadata.get("tags", [])


#: What a computation prints: decimals, scientific notation, booleans (words and counts may be rephrased).
MEASURED = re.compile(r"(?<![\w.])-?\d+\.\d+(?:e[-+]?\d+)?(?![\w.])|(?<![\w.])-?\d(?:\.\d+)?e[-+]?\d+|\b(?:True|False|nan|inf)\b")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_chinese_outputs_carry_the_english_numbers(notebook):
    """The fast guard over the Chinese edition's stored outputs (`make test-zh` re-executes them):
    each compared cell shows the same measured numbers and booleans as its English twin, whatever
    the translation did to the words around them."""
    english = nbformat.read(notebook, as_version=4)
    chinese = nbformat.read(T.ZH_NOTEBOOKS / notebook.name, as_version=4)
    problems = []
    for number, (en, zh) in enumerate(zip(code_cells(english), code_cells(chinese)[1:])):
        expected, shown = sorted(MEASURED.findall(compared_text(en))), sorted(MEASURED.findall(compared_text(zh)))
        if expected != shown:
            problems.append(f"notebooks/zh/{notebook.name}, code cell {number + 1}: numbers {shown} where the English shows {expected}")
    assert not problems, T.report(problems)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_translation_follows_the_glossary(notebook):
    problems = T.glossary_problems(notebook)
    assert not problems, T.report(problems)


@pytest.mark.parametrize("module", T.package_modules(), ids=lambda m: str(m.relative_to(T.PACKAGE)))
def test_every_package_message_is_translated(module):
    problems = T.package_problems(module)
    assert not problems, T.report(problems)


def test_glossary_gives_each_term_one_rendering():
    terms = T.glossary()
    assert len(terms) >= 40
    spellings = [e.lower() for t in terms for e in t.english]
    assert len(spellings) == len(set(spellings)), "an English term appears in two rows of the glossary"
    assert all(t.chinese for t in terms)


def test_course_font_draws_every_chinese_character_of_the_code():
    from fontTools.ttLib import TTFont

    from course_utils.i18n import CJK_FONT

    cmap = TTFont(str(CJK_FONT)).getBestCmap()
    missing = sorted(c for c in T.font_characters() if ord(c) not in cmap)
    assert not missing, (
        f"{CJK_FONT.name} lacks {''.join(missing[:40])}: run `python -m course_utils.tooling.translate font` "
        "(needs Debian's fonts-noto-cjk) and commit the font"
    )


# ----------------------------------------------------------------------------- the tooling itself


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_units_put_back_unchanged_rebuild_the_english(notebook):
    nb = nbformat.read(notebook, as_version=4)
    for index, cell in enumerate(nb.cells):
        units = T.cell_units(cell, index)
        assert T.translate_source(cell.source, units, {u.text: u.text for u in units}) == cell.source
        spans = sorted((u.start, u.end) for u in units)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), f"cell {index}: units overlap"


def test_units_of_a_code_cell():
    source = (
        "# build the mask\n"
        "# (row t may see 0..t)\n"
        "mask = torch.ones(T, T).tril()  # (T, T)\n"
        "print(f\"rows sum to one: {ok}\", 'x')\n"
        "d = {\"key\": 1}\n"
        "plt.title('causal weights')\n"
    )
    units = T.code_units(source, 3)
    assert [(u.kind, u.text) for u in units] == [
        ("comment", "build the mask\n(row t may see 0..t)"),
        ("string", "rows sum to one: {ok}"),
        ("string", "causal weights"),
    ]
    translated = T.translate_source(source, units, {
        "build the mask\n(row t may see 0..t)": "构造掩码\n（第 t 行只能看到 0..t）",
        "rows sum to one: {ok}": "每行之和为 1：{ok}",
        "causal weights": "因果权重",
    })
    assert translated.splitlines()[:2] == ["# 构造掩码", "# （第 t 行只能看到 0..t）"]
    assert "print(f\"每行之和为 1：{ok}\", 'x')" in translated
    assert "(T, T)" in translated and "plt.title('因果权重')" in translated and '{"key": 1}' in translated


def test_markdown_blocks_keep_code_fences_whole():
    source = "Intro line.\n\nSee:\n```python\nx = 1  # one\n\ny = 2\n```\n\n$$\na\n\nb\n$$\n\nLast words."
    texts = [u.text for u in T.markdown_units(source, 0)]
    assert texts == ["Intro line.", "See:\n```python\nx = 1  # one\n\ny = 2\n```", "Last words."]  # the maths has no words


@pytest.fixture
def one_notebook(tmp_path, monkeypatch):
    """A copy of notebook 00 and its catalogue in a temporary course tree."""
    notebooks = tmp_path / "notebooks"
    catalogues = notebooks / "locale" / T.LOCALE / "LC_MESSAGES"
    catalogues.mkdir(parents=True)
    english = NOTEBOOKS[0]
    shutil.copy(english, notebooks / english.name)
    shutil.copy(T.catalogue_path(english), catalogues / f"{english.stem}.po")
    monkeypatch.setattr(T, "NOTEBOOK_CATALOGUES", catalogues)
    monkeypatch.setattr(T, "ROOT", tmp_path)
    return notebooks / english.name


def _change_first_markdown_sentence(path):
    nb = nbformat.read(path, as_version=4)
    index = next(i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and i > 0)
    nb.cells[index].source = nb.cells[index].source.replace(".", ", and one more clause.", 1)
    nbformat.write(nb, path)
    return index


def test_changing_one_english_sentence_fails_naming_notebook_and_cell(one_notebook):
    assert T.catalogue_problems(one_notebook) == []
    index = _change_first_markdown_sentence(one_notebook)
    problems = T.catalogue_problems(one_notebook)
    assert len(problems) == 1
    assert f"notebooks/{one_notebook.name}, cell {index} (markdown)" in problems[0]


def test_extract_marks_a_changed_unit_fuzzy_and_keeps_its_old_translation(one_notebook):
    index = _change_first_markdown_sentence(one_notebook)
    path = T.catalogue_path(one_notebook)
    before = {e.msgid: e.msgstr for e in polib.pofile(str(path))}
    po = T.merge(path, T.notebook_messages(one_notebook))
    fuzzy = [e for e in po if "fuzzy" in e.flags]
    assert len(fuzzy) == 1
    assert fuzzy[0].previous_msgid in before and fuzzy[0].msgstr == before[fuzzy[0].previous_msgid]
    assert fuzzy[0].occurrences[0] == (one_notebook.name, str(index))
    problems = T.catalogue_problems(one_notebook)
    assert len(problems) == 1 and "changed since it was translated" in problems[0]
    unchanged = [e for e in po if not e.obsolete and "fuzzy" not in e.flags]
    assert all(e.msgstr == before[e.msgid] for e in unchanged)


def test_docstrings_are_units_and_other_strings_are_not():
    source = 'def f(x):\n    """Twice x."""\n    key = "not shown"\n    return 2 * x\n'
    assert [(u.kind, u.text) for u in T.code_units(source, 0)] == [("string", "Twice x.")]
