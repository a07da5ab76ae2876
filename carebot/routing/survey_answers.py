"""Reading a typed survey answer ("5", "4/5", "⭐⭐⭐⭐", "very satisfied") as a score.

Only clear meanings map to a score; anything else is None and the text is handled as a new
message (never lost, never misread as a rating).
"""

from __future__ import annotations

import re

_WORDS: dict[str, dict[str, int]] = {
    "csat": {
        "very satisfied": 5, "extremely satisfied": 5, "excellent": 5, "perfect": 5,
        "amazing": 5, "great": 5, "awesome": 5, "fantastic": 5, "brilliant": 5,
        "satisfied": 4, "good": 4, "pretty good": 4, "quite good": 4, "fine": 4,
        "ok": 3, "okay": 3, "neutral": 3, "average": 3, "so so": 3, "meh": 3,
        "dissatisfied": 2, "unsatisfied": 2, "not satisfied": 2, "bad": 2, "poor": 2,
        "not good": 2,
        "very dissatisfied": 1, "very unsatisfied": 1, "very bad": 1, "terrible": 1,
        "awful": 1, "horrible": 1, "useless": 1, "worst": 1,
    },
    "ces": {
        "very easy": 7, "extremely easy": 7, "super easy": 7,
        "easy": 6, "quite easy": 6, "pretty easy": 6,
        "somewhat easy": 5, "fairly easy": 5,
        "neutral": 4, "ok": 4, "okay": 4,
        "somewhat difficult": 3, "somewhat hard": 3,
        "difficult": 2, "hard": 2, "not easy": 2,
        "very difficult": 1, "very hard": 1, "extremely difficult": 1, "impossible": 1,
    },
}
_STAR = re.compile(r"^(?:⭐|★|\*)+$")
# "4", "4/5", "4 / 5", "4 out of 5", "4 of 5", "4 stars", "4 points", "4!"
_NUMBER = re.compile(
    r"^(?P<n>\d{1,2})\s*(?:(?:/|out of|of)\s*(?P<of>\d{1,2}))?\s*(?:stars?|points?)?$"
)


def parse_score(text: str, kind: str, scale: int) -> int | None:
    """The score 1..scale the text clearly means, or None."""
    cleaned = re.sub(r"[\s!.,]+", " ", text.strip().casefold()).strip()
    cleaned = cleaned.replace("\ufe0f", "").replace(" ", " ")
    if not cleaned or len(cleaned) > 40:
        return None
    compact = cleaned.replace(" ", "")
    if _STAR.match(compact):
        stars = len(re.findall(r"⭐|★|\*", compact))
        return stars if 1 <= stars <= scale else None
    number = _NUMBER.match(cleaned)
    if number:
        value = int(number.group("n"))
        out_of = number.group("of")
        if out_of is not None and int(out_of) != scale:
            return None  # "4/10" on a 1-5 scale is not clear enough to convert
        return value if 1 <= value <= scale else None
    return _WORDS.get(kind, {}).get(cleaned)
