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


@functools.cache
def use_cjk_font() -> bool:
    """Let matplotlib draw Chinese: add the course's CJK font behind its default font.

    Returns False (and changes nothing) when matplotlib or the font is missing.
    """
    try:
        from matplotlib import font_manager, rcParams
    except ImportError:
        return False
    if not CJK_FONT.exists():
        return False
    font_manager.fontManager.addfont(str(CJK_FONT))
    name = font_manager.FontProperties(fname=str(CJK_FONT)).get_name()
    families = [f for f in rcParams["font.family"] if f != name]
    rcParams["font.family"] = [*families, name]  # matplotlib falls back along this list, glyph by glyph
    return True
