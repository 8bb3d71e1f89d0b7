"""The plots' Chinese font: a learner's own labels draw without boxes, with or without a system CJK font.

``course_utils.set_language("zh")`` puts a fallback chain behind matplotlib's default font: the
course's subset of Noto Sans CJK SC (the 3,500 common characters of the Table of General Standard
Chinese Characters and every character of the translations), then the system's Chinese fonts,
then a one-time warning. These tests draw labels with matplotlib's Agg renderer and read its
"Glyph ... missing from font(s)" warnings: none may appear for common characters, on a font
manager that knows only matplotlib's own fonts (a machine without Chinese fonts) and on one with
a system CJK font; a rare character is drawn by the system font when there is one, and otherwise
gets the course's warning once.
"""

from __future__ import annotations

import random
import warnings

import matplotlib
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from fontTools.ttLib import TTFont  # noqa: E402
from matplotlib import font_manager  # noqa: E402

from course_utils import i18n  # noqa: E402
from course_utils.tooling import translate as T  # noqa: E402

RARE = "龘"  # U+9F98: in no common-character list, so not in the course's font


def _clear_font_caches():
    font_manager.fontManager._findfont_cached.cache_clear()
    font_manager._get_font.cache_clear()


@pytest.fixture
def bare_fonts(monkeypatch):
    """matplotlib as on a machine without Chinese fonts: its font manager knows only its own fonts.

    The module-level font manager is changed in place (the renderers hold it), and put back after.
    """
    manager = font_manager.fontManager
    saved = manager.ttflist, manager.afmlist
    manager.ttflist = [f for f in manager.ttflist if "mpl-data" in f.fname]
    manager.afmlist = [f for f in manager.afmlist if "mpl-data" in f.fname]
    _clear_font_caches()
    monkeypatch.setattr(i18n, "_missing_glyph_warned", False)
    try:
        with matplotlib.rc_context():
            yield manager
    finally:
        manager.ttflist, manager.afmlist = saved
        _clear_font_caches()


@pytest.fixture
def system_cjk_font(bare_fonts, tmp_path):
    """A stand-in for a system CJK font (called Noto Sans CJK SC) that also has the rare character."""
    font = TTFont(str(i18n.CJK_FONT))
    for record in font["name"].names:
        if record.nameID in (1, 4, 16):
            record.string = "Noto Sans CJK SC"
        elif record.nameID == 6:
            record.string = "NotoSansCJKsc-Regular"
    glyph = font.getBestCmap()[ord("一")]
    for table in font["cmap"].tables:
        if table.isUnicode():
            table.cmap[ord(RARE)] = glyph
    path = tmp_path / "system-cjk.otf"
    font.save(str(path))
    bare_fonts.addfont(str(path))
    return bare_fonts


def _draw(*labels: str) -> list[str]:
    """Draw ``labels`` as a title, axis labels, a legend and a text; return matplotlib's glyph warnings."""
    assert i18n.use_cjk_font.__wrapped__()
    fig, ax = plt.subplots()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ax.set_title(labels[0])
            ax.set_xlabel(labels[-1])
            for label in labels:
                ax.plot([0, 1], [0, 1], label=label)
            ax.legend()
            fig.text(0.1, 0.1, " ".join(labels))
            fig.canvas.draw()
    finally:
        plt.close(fig)
    return [str(w.message) for w in caught if "missing from font" in str(w.message) or "Chinese font" in str(w.message)
            or "中文字体" in str(w.message)]


def _common_sample(n: int = 300) -> list[str]:
    chars = T.common_characters()
    rng = random.Random(0)
    picked = "".join(rng.sample(chars, n))
    return [picked[i : i + 30] for i in range(0, n, 30)]


def test_the_font_holds_the_3500_common_characters_and_the_courses_own():
    cmap = TTFont(str(i18n.CJK_FONT)).getBestCmap()
    common = T.common_characters()
    assert len(common) == len(set(common)) == 3500
    missing = sorted(c for c in T.subset_characters() if ord(c) not in cmap)
    assert not missing, f"run `python -m course_utils.tooling.translate font`: the font lacks {''.join(missing[:40])}"


def test_common_labels_draw_without_a_system_cjk_font(bare_fonts):
    assert i18n.system_cjk_fonts(bare_fonts) == []
    assert _draw("验证集", "热图", "训练损失（交叉熵）", T.CJK_PUNCTUATION, *_common_sample()) == []


def test_common_labels_draw_with_a_system_cjk_font(system_cjk_font):
    assert i18n.system_cjk_fonts(system_cjk_font) == ["Noto Sans CJK SC"]
    assert _draw("验证集", "热图", *_common_sample()) == []


def test_a_rare_character_falls_back_to_the_system_font(system_cjk_font):
    assert _draw(f"{RARE}（罕见字）") == []
    assert matplotlib.rcParams["font.family"][-2:] == ["Noto Sans SC (course subset)", "Noto Sans CJK SC"]


def test_a_character_no_font_has_gets_one_clear_warning(bare_fonts):
    first = _draw(f"{RARE} 一")
    second = _draw(f"{RARE}{RARE}")
    course = [m for m in first + second if "fonts-noto-cjk" in m]
    assert len(course) == 1, first + second  # once per process, beside matplotlib's own warning per glyph
    assert any("missing from font" in m for m in first)


def test_the_warning_is_in_chinese_when_the_course_is(bare_fonts, monkeypatch):
    monkeypatch.setattr(i18n, "_chosen", "zh")
    messages = _draw(RARE)
    assert any("fonts-noto-cjk" in m and "中文字体" in m for m in messages), messages
