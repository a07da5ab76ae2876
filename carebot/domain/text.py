"""What a piece of text from outside may contain: the rules every entry point applies.

PostgreSQL refuses NUL characters and lone surrogates (SQLite stores them), so a request
carrying one used to be stored on one database and fail with a 500 on the other; and an id
made only of invisible characters is an id no person can tell apart from another.
"""

from __future__ import annotations

import re
import unicodedata

# Zero-width and other format characters (Unicode category Cf: ZWSP, ZWJ, BOM, …) show
# nothing: a value of only these is blank.
_INVISIBLE_CATEGORIES = {"Cf", "Zs", "Zl", "Zp", "Cc"}
_SURROGATE = re.compile("[\ud800-\udfff]")


def text_problem(value: str) -> str | None:
    """Why `value` cannot be stored as it is, or None when it can."""
    if "\x00" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (it contains a lone surrogate)"
    return None


def is_blank(value: str) -> bool:
    """Whether `value` shows nothing: empty, spaces, or only invisible characters."""
    return all(c.isspace() or unicodedata.category(c) in _INVISIBLE_CATEGORIES for c in value)


def scrub(value: str) -> str:
    """`value` with NUL and lone surrogates replaced by U+FFFD: for text a platform delivered,
    which is kept (and answered) rather than refused."""
    if text_problem(value) is None:
        return value
    return _SURROGATE.sub("\ufffd", value.replace("\x00", "\ufffd"))
