"""The course's languages: English (the source) and Chinese (``"zh"``).

Every message the package shows a learner (check results, mistake hints, exercise titles,
the environment report, plot titles) is written in English and marked for translation:

- ``_(text)`` translates ``text`` now, into the language in force;
- ``N_(text)`` only marks ``text`` (a mistake hint, an exercise title) for the catalogue;
  whoever shows it later passes it through ``_``.

Messages with values in them are format strings: ``_("got {got}").format(got=...)``, so a
translation can move the values around. The translations live in gettext PO catalogues,
one per module, in ``course_utils/locale/zh_CN/LC_MESSAGES/``; an entry that is missing,
empty or marked fuzzy (its English changed since it was translated) falls back to English.

The language is, in order: what :func:`set_language` chose in this process, else the
``COURSE_LANG`` environment variable (``COURSE_LANG=zh make lab`` sets it for a whole
session), else English. A Chinese notebook calls ``course_utils.set_language("zh")`` in its
first cell.
"""

from __future__ import annotations

import functools
import os
import unicodedata
from pathlib import Path

#: The languages the course speaks: code -> its name in that language.
LANGUAGES = {"en": "English", "zh": "中文"}
#: The environment variable that chooses the language for a whole session.
ENV_VAR = "COURSE_LANG"
#: Where each language's catalogues live (gettext's layout).
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
LOCALES = {"zh": "zh_CN"}
#: A font with the Chinese glyphs the course's plots use (a subset of Noto Sans CJK SC, OFL).
CJK_FONT = Path(__file__).resolve().parent / "data" / "fonts" / "NotoSansSC-course-subset.otf"

_ALIASES = {"zh_cn": "zh", "zh-cn": "zh", "zh_hans": "zh", "zh-hans": "zh", "cn": "zh", "chinese": "zh", "english": "en"}
_chosen: str | None = None


def _normalise(language: object, source: str) -> str:
    if not isinstance(language, str):
        raise TypeError(f"{source} must be a language code string such as 'zh' or 'en', got {type(language).__name__}")
    code = language.strip().lower()
    code = _ALIASES.get(code, code)
    if code not in LANGUAGES:
        raise ValueError(f"{source} must be one of {sorted(LANGUAGES)}, got {language!r}")
    return code


def set_language(language: str) -> None:
    """Choose the language of everything the package shows from now on, in this process.

    Args:
        language: ``"zh"`` (also ``"zh_CN"``, ``"zh-Hans"``) for Chinese, ``"en"`` for English.

    Choosing Chinese also lets matplotlib draw Chinese plot titles and labels.
    """
    global _chosen
    _chosen = _normalise(language, "language")
    if _chosen != "en":
        use_cjk_font()


def get_language() -> str:
    """The language in force: :func:`set_language`'s choice, else ``$COURSE_LANG``, else ``"en"``."""
    if _chosen is not None:
        return _chosen
    from_env = os.environ.get(ENV_VAR, "").strip()
    if not from_env:
        return "en"
    try:
        code = _normalise(from_env, f"the environment variable {ENV_VAR}")
    except ValueError:
        return "en"
    if code != "en":
        use_cjk_font()
    return code


@functools.cache
def catalogue(language: str) -> dict[str, str]:
    """Every current translation of the package's messages into ``language``: English -> translation."""
    locale = LOCALES.get(language)
    if locale is None:
        return {}
    import polib

    translations: dict[str, str] = {}
    for path in sorted((LOCALE_DIR / locale / "LC_MESSAGES").glob("*.po")):
        for entry in polib.pofile(str(path)):
            if entry.msgstr and not entry.obsolete and "fuzzy" not in entry.flags:
                translations[entry.msgid] = entry.msgstr
    return translations


def _(message: str) -> str:
    """``message`` in the language in force (English when there is no current translation)."""
    language = get_language()
    if language == "en" or not isinstance(message, str):
        return message
    return catalogue(language).get(message, message)


def display_width(text: str) -> int:
    """Columns ``text`` takes in a monospaced font: wide (CJK) characters take two, so tables line up in Chinese."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def N_(message: str) -> str:
    """Mark ``message`` for translation without translating it (it is shown later, through ``_``)."""
    return message


#: Chinese fonts a system may have, best first: matplotlib falls back to them, glyph by glyph,
#: for a character the course's font lacks (a learner's own label).
SYSTEM_CJK_FONTS = (
    "Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "Source Han Sans CN", "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei", "Microsoft YaHei", "PingFang SC", "Hiragino Sans GB", "Heiti SC", "SimHei",
    "Noto Sans CJK JP", "Noto Sans CJK TC", "Droid Sans Fallback", "AR PL UMing CN",
)


def system_cjk_fonts(font_manager=None) -> list[str]:
    """The families of :data:`SYSTEM_CJK_FONTS` that matplotlib's font manager found on this system."""
    if font_manager is None:
        from matplotlib import font_manager as fm

        font_manager = fm.fontManager
    found = {entry.name for entry in font_manager.ttflist}
    return [name for name in SYSTEM_CJK_FONTS if name in found]


@functools.cache
def use_cjk_font() -> bool:
    """Let matplotlib draw Chinese: a fallback chain behind its default font.

    First the course's font (the 3,500 common characters and every character of the course's
    translations), then the system's Chinese fonts (:func:`system_cjk_fonts`) for a rarer
    character; a character that none of them has is drawn as a box, and the first time that
    happens a warning says once, in the course's language, how to install a Chinese font
    (matplotlib's own warning, one per character, is kept for the rest).

    Returns False (and changes nothing) when matplotlib or the course's font is missing.
    """
    try:
        from matplotlib import font_manager, rcParams
    except ImportError:
        return False
    if not CJK_FONT.exists():
        return False
    font_manager.fontManager.addfont(str(CJK_FONT))
    name = font_manager.FontProperties(fname=str(CJK_FONT)).get_name()
    chain = [name, *system_cjk_fonts(font_manager.fontManager)]
    families = [f for f in rcParams["font.family"] if f not in chain]
    rcParams["font.family"] = [*families, *chain]  # matplotlib falls back along this list, glyph by glyph
    _warn_once_on_missing_glyphs()
    return True


_missing_glyph_warned = False  # the warning below is given once per process


def _warn_once_on_missing_glyphs() -> None:
    """Say once, clearly, what to do when matplotlib finds a glyph missing from every font of the chain."""
    try:
        from matplotlib import _text_helpers
    except ImportError:  # a matplotlib without the hook: its own warnings still say which glyph
        return
    original = getattr(_text_helpers, "warn_on_missing_glyph", None)
    if original is None or getattr(original, "_course_wrapped", False):
        return

    def warn_on_missing_glyph(codepoint, fontnames):
        global _missing_glyph_warned
        if not _missing_glyph_warned and codepoint > 0x2E7F:
            _missing_glyph_warned = True
            import warnings

            warnings.warn(_(
                "A plot label uses a character that neither the course's font (the 3,500 common characters) nor a "
                "Chinese font of this system has: it is drawn as a box. Install a Chinese font (Debian/Ubuntu: "
                "apt-get install fonts-noto-cjk; conda: conda install -c conda-forge font-ttf-noto-cjk) and restart the kernel."
            ), UserWarning, stacklevel=2)
        return original(codepoint, fontnames)

    warn_on_missing_glyph._course_wrapped = True
    _text_helpers.warn_on_missing_glyph = warn_on_missing_glyph
