"""Text normalisation shared by the FAQ matcher's training phrasings and customer queries.

Both sides go through the same `normalize`, so anything it maps only has to be consistent, not
linguistically perfect: "can't", "cant" and "can not" all become "can not"; "pls" becomes
"please"; "😡" and "?!" disappear. The abbreviation/misspelling table is deliberately modest:
character n-grams and fuzzy matching in the matcher already absorb most typos, and every entry
here is a word that could collide with a real one.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from functools import lru_cache

# Symbols that carry meaning in support questions ("charged $5 twice") become words so they
# survive the punctuation strip below.
_SYMBOL_WORDS: Mapping[str, str] = {
    "$": " dollar ",
    "€": " euro ",
    "£": " pound ",
    "¥": " yen ",
    "%": " percent ",
    "&": " and ",
    "+": " plus ",
    "@": " at ",
    "#": " number ",
}

# Chat abbreviations, contractions written without apostrophes and frequent misspellings.
# Keys are single normalised tokens; values may be several words.
ABBREVIATIONS: Mapping[str, str] = {
    # chat shorthand
    "u": "you",
    "ur": "your",
    "urs": "yours",
    "r": "are",
    "pls": "please",
    "plz": "please",
    "pleas": "please",
    "plse": "please",
    "thx": "thanks",
    "thnx": "thanks",
    "thanx": "thanks",
    "ty": "thank you",
    "msg": "message",
    "msgs": "messages",
    "acct": "account",
    "acc": "account",
    "pw": "password",
    "pwd": "password",
    "passwd": "password",
    "txn": "transaction",
    "amt": "amount",
    "addr": "address",
    "hrs": "hours",
    "mins": "minutes",
    "b4": "before",
    "2day": "today",
    "tmrw": "tomorrow",
    "tmr": "tomorrow",
    "wanna": "want to",
    "gonna": "going to",
    "gotta": "got to",
    "idk": "i do not know",
    "cuz": "because",
    "coz": "because",
    "bc": "because",
    "abt": "about",
    "ppl": "people",
    "okay": "ok",
    "okey": "ok",
    "w": "with",
    "wo": "without",
    "info": "information",
    "hv": "have",
    "cud": "could",
    "shud": "should",
    "wud": "would",
    "wat": "what",
    "wot": "what",
    "wht": "what",
    "y": "why",
    "bday": "birthday",
    "asap": "as soon as possible",
    # contractions after the apostrophe is gone
    "cant": "can not",
    "cannot": "can not",
    "dont": "do not",
    "doesnt": "does not",
    "didnt": "did not",
    "isnt": "is not",
    "arent": "are not",
    "wasnt": "was not",
    "werent": "were not",
    "havent": "have not",
    "hasnt": "has not",
    "hadnt": "had not",
    "wont": "will not",
    "wouldnt": "would not",
    "couldnt": "could not",
    "shouldnt": "should not",
    "aint": "is not",
    "im": "i am",
    "ive": "i have",
    "youre": "you are",
    "youve": "you have",
    "theyre": "they are",
    "whats": "what is",
    "wheres": "where is",
    "hows": "how is",
    "whos": "who is",
    "thats": "that is",
    "theres": "there is",
    # misspellings
    "recieve": "receive",
    "recieved": "received",
    "recieving": "receiving",
    "recive": "receive",
    "recived": "received",
    "pasword": "password",
    "passowrd": "password",
    "passwrod": "password",
    "paswword": "password",
    "adress": "address",
    "adres": "address",
    "addres": "address",
    "acount": "account",
    "accout": "account",
    "acocunt": "account",
    "refnd": "refund",
    "refound": "refund",
    "cancle": "cancel",
    "cancell": "cancel",
    "canel": "cancel",
    "delivary": "delivery",
    "delievery": "delivery",
    "deliverd": "delivered",
    "shiping": "shipping",
    "shippment": "shipment",
    "payed": "paid",
    "wierd": "weird",
    "untill": "until",
    "tommorow": "tomorrow",
    "tomorow": "tomorrow",
    "occured": "occurred",
    "seperate": "separate",
    "definately": "definitely",
    "gaurantee": "guarantee",
    "garantee": "guarantee",
    "wich": "which",
    "teh": "the",
    "becuase": "because",
    "becasue": "because",
    "beacuse": "because",
    "transfered": "transferred",
    "recipt": "receipt",
    "reciept": "receipt",
    "adn": "and",
    "hte": "the",
    "waht": "what",
    "whta": "what",
    "helo": "hello",
    "hepl": "help",
    "plase": "please",
    "pleae": "please",
}

_IS_CONTRACTED = frozenset({"what", "where", "how", "who", "it", "that", "there", "he", "she"})

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'", "\u00b4": "'"})
_TOKEN_RE = re.compile(r"\w+(?:'\w+)*")
_SLASH_WITH = re.compile(r"\bw/o\b|\bw/(?=\s|$)")
_NT = re.compile(r"n't\b")


def _is_latin_letter(ch: str) -> bool:
    return ch.isascii() or "LATIN" in unicodedata.name(ch, "")


@lru_cache(maxsize=4096)
def _strip_accents_word(word: str) -> str:
    # Only strip marks on Latin letters ("café" -> "cafe"): removing them from other scripts
    # (Cyrillic "й" -> "и", Devanagari vowel signs) would change the letter, not its accent.
    decomposed = unicodedata.normalize("NFD", word)
    out: list[str] = []
    for ch in decomposed:
        if unicodedata.combining(ch) and out and _is_latin_letter(out[-1]):
            continue
        out.append(ch)
    return unicodedata.normalize("NFC", "".join(out))


def _expand_token(token: str) -> str:
    if "'" in token:
        token = _NT.sub(" not", token)
        if token.startswith("can not") or token.startswith("ca not"):
            token = "can not"
        elif token.startswith("wo not"):
            token = "will not"
        head, _, tail = token.partition("'")
        if tail == "s":
            # "what's" is "what is"; otherwise 's is a possessive ("card's") and is dropped.
            token = f"{head} is" if head in _IS_CONTRACTED else head
        elif tail == "m":
            token = f"{head} am"
        elif tail == "re":
            token = f"{head} are"
        elif tail == "ve":
            token = f"{head} have"
        elif tail == "ll":
            token = f"{head} will"
        elif tail == "d":
            token = f"{head} would"
        else:
            token = token.replace("'", "")
        return " ".join(ABBREVIATIONS.get(t, t) for t in token.split())
    return ABBREVIATIONS.get(token, token)


# Work per message is bounded: NFKC turns one character into up to 18 ("ﷺ"), and 30 messages
# of 4,096 such characters stalled all inbound matching for seconds. A question is matched on
# its first MAX_INPUT_CHARS characters, and its normalised form is cut at MAX_NORMALIZED_CHARS
# (questions are far shorter; the FAQ loader allows phrasings of 300).
MAX_INPUT_CHARS = 1000
MAX_NORMALIZED_CHARS = 2000


def normalize(text: str) -> str:
    """Normalise a customer message or FAQ phrasing for matching.

    Steps: Unicode NFKC, casefold, accents stripped from Latin letters, meaningful symbols
    ($, €, %, &...) turned into words, emoji and punctuation dropped, contractions expanded,
    chat abbreviations and common misspellings mapped from a curated table
    (`ABBREVIATIONS`), whitespace collapsed. Returns "" for text with no word characters.
    The result is at most `MAX_NORMALIZED_CHARS` long, whatever the input.
    """
    text = unicodedata.normalize("NFKC", text[:MAX_INPUT_CHARS])[:MAX_NORMALIZED_CHARS]
    text = text.casefold().translate(_APOSTROPHES)
    if not text.isascii():
        text = " ".join(_strip_accents_word(w) for w in text.split())
    text = _SLASH_WITH.sub(lambda m: " without " if m.group(0) == "w/o" else " with ", text)
    for symbol, word in _SYMBOL_WORDS.items():
        if symbol in text:
            text = text.replace(symbol, word)
    # \w keeps letters and digits of every script; emoji, punctuation and other symbols are
    # not word characters and vanish here. "_" is a word character, so split it explicitly.
    tokens = _TOKEN_RE.findall(text.replace("_", " "))
    # Symbols spelled as words and expanded contractions can lengthen it again.
    return " ".join(_expand_token(t) for t in tokens)[:MAX_NORMALIZED_CHARS]
