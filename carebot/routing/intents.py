"""Recognising what a customer's words mean before (or instead of) FAQ matching."""

from __future__ import annotations

import re
from functools import lru_cache

_HUMAN_WORDS = (
    r"(human|person|people|agent|operator|representative|rep|someone|somebody|staff|"
    r"real person|live chat|customer service|support team|manager)"
)
_HUMAN_PATTERNS = [
    rf"\b(talk|speak|chat|connect|transfer|put)\b.*\b{_HUMAN_WORDS}\b",
    rf"\b(want|need|get|give)\b.*\b(a |an |to a |to an )?{_HUMAN_WORDS}\b",
    rf"^\s*{_HUMAN_WORDS}\s*(please|pls|now)?\s*[.!]*$",
    r"\b(not a bot|stop the bot|no bot|you are useless|useless bot)\b",
]
# The same request in the other shipped languages: a verb of talking and a person, in either
# order ("mit einem Menschen sprechen", "parler à un conseiller", "hablar con una persona").
_OTHER_LANGUAGES = {
    "de": (r"(sprechen|reden|verbinden|verbunden|chatten|weiterleiten)",
           r"(mensch|menschen|mitarbeiter\w*|person|berater\w*|kundendienst|kundenservice|"
           r"jemandem|echten person)"),
    "fr": (r"(parler|discuter|passer)",
           r"(humain|une personne|vraie personne|conseill\w*|agent|opérat\w*|quelqu'un|"
           r"service client)"),
    "es": (r"(hablar|pasar|pasarme|pásame|comunicarme|atienda)",
           r"(humano|una persona|persona real|agente|operador\w*|asesor\w*|alguien|"
           r"atención al cliente)"),
}
_HUMAN_PATTERNS += [
    rf"\b{verb}\b.*\b{who}\b|\b{who}\b.*\b{verb}\b" for verb, who in _OTHER_LANGUAGES.values()
]
_HUMAN_PATTERNS.append(r"\b(kein bot|pas un robot|pas un bot|no eres un bot)\b")
# One search instead of one per pattern: the inbound path asks this of every typed message.
_HUMAN = re.compile("|".join(f"(?:{p})" for p in _HUMAN_PATTERNS))
_CLEAN = re.compile(r"[\s.!,]+")
_YES = {
    "yes", "y", "yep", "yeah", "yes thanks", "yes thank you", "thanks", "thank you", "thx",
    "that helped", "it helped", "perfect", "great", "great thanks", "ok thanks", "👍",
    "ja", "ja danke", "danke", "hat geholfen", "oui", "oui merci", "merci", "ça m'a aidé",
    "sí", "si", "sí gracias", "si gracias", "gracias", "me ha ayudado",
}
_NO = {"no", "n", "nope", "not really", "no it didn't", "didn't help", "it didn't help", "👎",
       "nein", "nicht wirklich", "hat nicht geholfen", "non", "pas vraiment",
       "ça ne m'a pas aidé", "no realmente", "no me ha ayudado"}
_COMMAND = re.compile(r"^/([a-z_]+)(@\w+)?(\s|$)")


def _clean(text: str) -> str:
    return _CLEAN.sub(" ", text.casefold()).strip()


@lru_cache(maxsize=1024)  # asked twice per message (before matching, and when deciding)
def wants_human(text: str) -> bool:
    """Whether the customer is asking for a person rather than asking a question."""
    return _HUMAN.search(_clean(text)) is not None


def typed_feedback(text: str) -> bool | None:
    """A typed answer to "Did this help?": True, False, or None when it is something else."""
    cleaned = _clean(text)
    if cleaned in _YES:
        return True
    if cleaned in _NO:
        return False
    return None


def command(text: str) -> str | None:
    """The bot command at the start of the text ("/human@carebot" -> "human"), if any."""
    match = _COMMAND.match(text.strip().casefold())
    return match.group(1) if match else None
