"""Masking what must never be stored: payment card numbers, and optionally IBANs, e-mail
addresses and phone numbers.

Channels apply it where they validate a customer's text, before the message is batched: the
original never reaches the database, the matcher, an agent's console or a log line. The log
record factory (`carebot.web.logs`) masks card numbers in every record too, as a second line.

- **Card numbers** (always): 13 to 19 digits, optionally grouped by single spaces or dashes,
  starting with 2 to 6 (the ranges card networks issue from) and passing the Luhn check. An order
  or tracking number of that shape that happens to pass the check (one in ten random numbers
  does) is masked too; a wrong guess costs an agent one question, a missed card costs far more.
- **IBANs** (`iban`): two letters, two check digits and 11 to 30 letters or digits (spaces
  allowed between groups), passing the ISO 13616 mod-97 check.
- **E-mail addresses** (`email`).
- **Phone numbers** (`phone`): an international number (`+` or `00`, 8 to 15 digits) or a
  national one written in at least two groups (`030 1234 5678`, `(030) 123-4567`) with 9 to 15
  digits. A run of digits without separators is left alone: that is how order numbers look.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

CARD = "card"
IBAN = "iban"
EMAIL = "email"
PHONE = "phone"
OPTIONAL = (IBAN, EMAIL, PHONE)
MASKS = {
    CARD: "[card number removed]",
    IBAN: "[IBAN removed]",
    EMAIL: "[email removed]",
    PHONE: "[phone number removed]",
}

# Runs of digits in groups separated by one space or dash; card numbers are looked for
# inside them at group boundaries, so "4111 1111 1111 1111 12/26" still has its card found.
_DIGIT_RUN = re.compile(r"(?<![\d])\d+(?:[ -]\d+)*(?![\d])")
_GROUP = re.compile(r"\d+")
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]){11,30}(?![A-Za-z0-9])")
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*"
                    r"\.[A-Za-z]{2,24}(?![\w-])")
_PHONE = re.compile(
    r"(?<![\w+])(?:(?:\+|00)\d(?:[ ()./-]{0,2}\d){6,16}"
    r"|\(?\d{2,5}\)?(?:[ ./-]{1,2}\(?\d{2,}\)?){1,5})(?![\w])"
)


def luhn_valid(digits: str) -> bool:
    """Whether a string of digits passes the Luhn check (card numbers do)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = ord(ch) - 48
        if i % 2:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    """Whether the text (spaces allowed) is an IBAN with a valid mod-97 checksum."""
    compact = candidate.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34:
        return False
    moved = compact[4:] + compact[:4]
    number = "".join(str(int(c, 36)) for c in moved)
    return int(number) % 97 == 1


@dataclass(frozen=True)
class Redacted:
    """The text with what was found masked, and the kinds found."""

    text: str
    kinds: frozenset[str] = frozenset()


class Redactor:
    """Masks card numbers and the optional kinds it was built with."""

    def __init__(self, optional: Iterable[str] = ()) -> None:
        kinds = set(optional)
        unknown = kinds - set(OPTIONAL)
        if unknown:
            raise ValueError(
                f"unknown redaction kind(s) {', '.join(sorted(unknown))}; choose from "
                f"{', '.join(OPTIONAL)} (card numbers are always masked)"
            )
        self.kinds = frozenset({CARD, *kinds})

    @staticmethod
    @functools.lru_cache(maxsize=8)
    def parse(setting: str) -> Redactor:
        """From a comma-separated setting such as `iban,email` (empty: card numbers only)."""
        return Redactor(k.strip().lower() for k in setting.split(",") if k.strip())

    def __call__(self, text: str) -> Redacted:
        """`text` with every match masked (cheap when there is nothing to find)."""
        found: set[str] = set()
        if any(c.isdigit() for c in text):
            if IBAN in self.kinds:  # first: a window of an IBAN's digits may pass Luhn
                text = _mask_ibans(text, found)
            text = _mask_cards(text, found)
        if EMAIL in self.kinds and "@" in text:
            text = _sub(_EMAIL, text, lambda m: True, EMAIL, found)
        if PHONE in self.kinds and any(c.isdigit() for c in text):
            text = _sub(_PHONE, text, _phone_like, PHONE, found)
        return Redacted(text, frozenset(found))


CARDS_ONLY = Redactor()


def mask_cards(text: str) -> str:
    """`text` with card numbers masked (log lines, agents' texts)."""
    return CARDS_ONLY(text).text


def _mask_cards(text: str, found: set[str]) -> str:
    spans: list[tuple[int, int]] = []
    for run in _DIGIT_RUN.finditer(text):
        if sum(c.isdigit() for c in run.group(0)) < 13:
            continue
        groups = [(run.start() + g.start(), run.start() + g.end())
                  for g in _GROUP.finditer(run.group(0))]
        i = 0
        while i < len(groups):
            end = _card_from(text, groups, i)
            if end is None:
                i += 1
                continue
            spans.append((groups[i][0], groups[end][1]))
            i = end + 1
    if not spans:
        return text
    found.add(CARD)
    out, last = [], 0
    for start, stop in spans:
        out += [text[last:start], MASKS[CARD]]
        last = stop
    return "".join(out) + text[last:]


def _mask_ibans(text: str, found: set[str]) -> str:
    def replace(m: re.Match[str]) -> str:
        # The pattern runs on into a following word ("… 0130 00 ok"): try it shorter, at the
        # spaces, longest first.
        candidate = m.group(0)
        cuts = [len(candidate)] + [i for i in range(len(candidate) - 1, 0, -1)
                                   if candidate[i] == " "]
        for cut in cuts:
            if iban_valid(candidate[:cut]):
                found.add(IBAN)
                return MASKS[IBAN] + candidate[cut:]
        return candidate

    return _IBAN.sub(replace, text)


def _card_from(text: str, groups: list[tuple[int, int]], i: int) -> int | None:
    """The last group of the longest card number starting at group `i`, if any."""
    if text[groups[i][0]] not in "23456":
        return None
    digits, ends = "", []
    for j in range(i, len(groups)):
        digits += text[groups[j][0]:groups[j][1]]
        if len(digits) > 19:
            break
        if len(digits) >= 13:
            ends.append((j, digits))
    for j, candidate in reversed(ends):
        if luhn_valid(candidate):
            return j
    return None


def _digits(match: str) -> str:
    return "".join(c for c in match if c.isdigit())


def _phone_like(match: str) -> bool:
    digits = _digits(match)
    if match.startswith(("+", "00")):
        return 8 <= len(digits) <= 15
    return 9 <= len(digits) <= 15


def _sub(pattern: re.Pattern[str], text: str, check: Callable[[str], bool], kind: str,
         found: set[str]) -> str:
    def replace(m: re.Match[str]) -> str:
        if check(m.group(0)):
            found.add(kind)
            return MASKS[kind]
        return m.group(0)

    return pattern.sub(replace, text)
