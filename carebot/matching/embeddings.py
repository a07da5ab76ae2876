"""Pure-numpy sentence embeddings for ``sentence-transformers/all-MiniLM-L6-v2``.

The model is a 6-layer BERT (hidden 384, 12 heads, FFN 1536, exact GELU, post-LayerNorm)
followed by attention-mask mean pooling and L2 normalisation.  This module reproduces
``SentenceTransformer(model_dir).encode(texts, normalize_embeddings=True)`` without torch,
transformers or the Rust ``tokenizers`` package: the only runtime dependency is numpy.

Two pieces are implemented here:

* :class:`BertWordPieceTokenizer` - a pure-Python port of the HF *fast* BERT tokenizer
  (``BertNormalizer`` + ``BertPreTokenizer`` + ``WordPiece`` + ``[CLS] .. [SEP]``).  It
  follows the Rust implementation, which is what sentence-transformers actually runs,
  rather than the older Python ``BertTokenizer`` where the two differ (order of
  lower-casing and accent stripping, special tokens typed inside the text).
* :class:`MiniLmEncoder` - the transformer forward pass in float32 numpy, with the
  weights read straight from ``model.safetensors`` (the format is parsed by hand).

Typical use::

    enc = MiniLmEncoder.load("/path/to/model")
    vecs = enc.encode(["where is my card?", "I lost my PIN"])   # (2, 384) float32
    vec = enc.encode_one("where is my card?")                   # (384,) float32

Threading: numpy's BLAS (OpenBLAS) decides the thread count.  For single short queries
one BLAS thread is as fast or faster than several and does not fight the event loop for
cores; set ``OPENBLAS_NUM_THREADS=1`` (or use ``threadpoolctl``) in latency-bound services.
"""

from __future__ import annotations

import json
import math
import re
import struct
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

__all__ = ["BertWordPieceTokenizer", "MiniLmEncoder", "l2_normalize", "load_safetensors", "padded"]

F32 = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.intp]

# --------------------------------------------------------------------------------------
# safetensors
# --------------------------------------------------------------------------------------

_ST_DTYPES: Final[Mapping[str, str]] = {
    "F32": "<f4",
    "F16": "<f2",
    "BF16": "<u2",  # no numpy bfloat16: read the raw bits, widened to float32 below
    "F64": "<f8",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U8": "u1",
    "BOOL": "?",
}


def load_safetensors(path: str | Path) -> dict[str, npt.NDArray[Any]]:
    """Memory-map every tensor of a ``.safetensors`` file as a read-only numpy array.

    Layout: 8-byte little-endian header length N, N bytes of JSON mapping tensor name to
    ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets relative to the end of
    the header), then the raw little-endian buffer.  Memory-mapping means tensors that
    are never touched in full (the 47 MB word-embedding table, of which a query reads a
    handful of rows) cost address space, not resident memory.  BF16 tensors are widened
    to float32 eagerly because numpy has no bfloat16 dtype.
    """
    path = Path(path)
    with path.open("rb") as fh:
        (header_len,) = struct.unpack("<Q", fh.read(8))
        header: dict[str, Any] = json.loads(fh.read(header_len))
    data_start = 8 + header_len
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    tensors: dict[str, npt.NDArray[Any]] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype_code = info["dtype"]
        if dtype_code not in _ST_DTYPES:
            raise ValueError(f"{path}: unsupported safetensors dtype {dtype_code!r} for {name}")
        begin, end = info["data_offsets"]
        shape = tuple(int(d) for d in info["shape"])
        # np.asarray drops the np.memmap subclass (cheaper indexing) but keeps the
        # mapping alive through .base.
        arr = np.asarray(raw[data_start + begin : data_start + end]).view(_ST_DTYPES[dtype_code])
        arr = arr.reshape(shape)
        if dtype_code == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = arr
    return tensors


# --------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------

# Characters Rust's ``char::is_whitespace`` (Unicode White_Space) accepts.  Python's
# ``str.isspace`` differs (it also accepts U+001C..U+001F), so the set is spelled out.
_WHITESPACE: Final[frozenset[str]] = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)

# ASCII fast path: drop control characters except \t \n \r, which become spaces.
_ASCII_CLEAN: Final[dict[int, int | None]] = {
    **{c: None for c in range(32)},
    0x7F: None,
    ord("\t"): ord(" "),
    ord("\n"): ord(" "),
    ord("\r"): ord(" "),
}
# After cleaning and lower-casing, an ASCII string contains only spaces, [a-z0-9] and
# punctuation (every other printable ASCII char is punctuation for BERT), so a single
# regex does BertPreTokenizer's "split on whitespace, isolate each punctuation char".
_ASCII_WORDS: Final[re.Pattern[str]] = re.compile(r"[a-z0-9]+|[^ a-z0-9]")


_REMOVED_CATEGORIES: Final = frozenset({"Cc", "Cf", "Co", "Cs"})

# The Rust tokenizer classifies characters with the `unicode_categories` crate, whose
# tables predate the Unicode 14 database in Python 3.11.  Code points assigned (or
# re-classified) since then are seen differently; these ranges give the category the
# Rust side effectively uses ("Cn": unassigned, i.e. an ordinary letter for BERT).
# Generated by scanning every code point through both tokenizers (bench/charscan.py).
# fmt: off
_RUST_CATEGORY_OVERRIDES: Final[tuple[tuple[int, int, str], ...]] = (
    (0x061D, 0x061D, "Cn"), (0x07FD, 0x07FD, "Cn"), (0x0890, 0x0891, "Cn"),
    (0x0898, 0x089F, "Cn"), (0x08CA, 0x08E2, "Cn"), (0x09FD, 0x09FE, "Cn"),
    (0x0A76, 0x0A76, "Cn"), (0x0AFA, 0x0AFF, "Cn"), (0x0B55, 0x0B55, "Cn"),
    (0x0C04, 0x0C04, "Cn"), (0x0C3C, 0x0C3C, "Cn"), (0x0C77, 0x0C77, "Cn"),
    (0x0C84, 0x0C84, "Cn"), (0x0D00, 0x0D00, "Cn"), (0x0D3B, 0x0D3C, "Cn"),
    (0x0D81, 0x0D81, "Cn"), (0x0EBA, 0x0EBA, "Cn"), (0x166D, 0x166D, "Po"),
    (0x1734, 0x1734, "Mn"), (0x180F, 0x180F, "Cn"), (0x1885, 0x1886, "Cn"),
    (0x1ABF, 0x1ACE, "Cn"), (0x1B7D, 0x1B7E, "Cn"), (0x1DF6, 0x1DFB, "Cn"),
    (0x2E43, 0x2E4F, "Cn"), (0x2E52, 0x2E5D, "Cn"), (0xA82C, 0xA82C, "Cn"),
    (0xA8C5, 0xA8C5, "Cn"), (0xA8FF, 0xA8FF, "Cn"), (0xA9BD, 0xA9BD, "Cn"),
    (0x10D24, 0x10D27, "Cn"), (0x10EAB, 0x10EAD, "Cn"), (0x10F46, 0x10F50, "Cn"),
    (0x10F55, 0x10F59, "Cn"), (0x10F82, 0x10F89, "Cn"), (0x11070, 0x11070, "Cn"),
    (0x11073, 0x11074, "Cn"), (0x110C2, 0x110C2, "Cn"), (0x110CD, 0x110CD, "Cn"),
    (0x111C9, 0x111C9, "Po"), (0x111CF, 0x111CF, "Cn"), (0x1123E, 0x1123E, "Cn"),
    (0x1133B, 0x1133B, "Cn"), (0x11438, 0x1143F, "Cn"), (0x11442, 0x11444, "Cn"),
    (0x11446, 0x11446, "Cn"), (0x1144B, 0x1144F, "Cn"), (0x1145A, 0x1145B, "Cn"),
    (0x1145D, 0x1145E, "Cn"), (0x11660, 0x1166C, "Cn"), (0x116B9, 0x116B9, "Cn"),
    (0x1182F, 0x11837, "Cn"), (0x11839, 0x1183B, "Cn"), (0x1193B, 0x1193C, "Cn"),
    (0x1193E, 0x1193E, "Cn"), (0x11943, 0x11946, "Cn"), (0x119D4, 0x119D7, "Cn"),
    (0x119DA, 0x119DB, "Cn"), (0x119E0, 0x119E0, "Cn"), (0x119E2, 0x119E2, "Cn"),
    (0x11A01, 0x11A0A, "Cn"), (0x11A33, 0x11A38, "Cn"), (0x11A3B, 0x11A47, "Cn"),
    (0x11A51, 0x11A56, "Cn"), (0x11A59, 0x11A5B, "Cn"), (0x11A8A, 0x11A96, "Cn"),
    (0x11A98, 0x11A9C, "Cn"), (0x11A9E, 0x11AA2, "Cn"), (0x11C30, 0x11C36, "Cn"),
    (0x11C38, 0x11C3D, "Cn"), (0x11C3F, 0x11C3F, "Cn"), (0x11C41, 0x11C45, "Cn"),
    (0x11C70, 0x11C71, "Cn"), (0x11C92, 0x11CA7, "Cn"), (0x11CAA, 0x11CB0, "Cn"),
    (0x11CB2, 0x11CB3, "Cn"), (0x11CB5, 0x11CB6, "Cn"), (0x11D31, 0x11D36, "Cn"),
    (0x11D3A, 0x11D3A, "Cn"), (0x11D3C, 0x11D3D, "Cn"), (0x11D3F, 0x11D45, "Cn"),
    (0x11D47, 0x11D47, "Cn"), (0x11D90, 0x11D91, "Cn"), (0x11D95, 0x11D95, "Cn"),
    (0x11D97, 0x11D97, "Cn"), (0x11EF3, 0x11EF4, "Cn"), (0x11EF7, 0x11EF8, "Cn"),
    (0x11FFF, 0x11FFF, "Cn"), (0x12FF1, 0x12FF2, "Cn"), (0x13430, 0x13438, "Cn"),
    (0x16E97, 0x16E9A, "Cn"), (0x16F4F, 0x16F4F, "Cn"), (0x16FE2, 0x16FE2, "Cn"),
    (0x16FE4, 0x16FE4, "Cn"), (0x1CF00, 0x1CF2D, "Cn"), (0x1CF30, 0x1CF46, "Cn"),
    (0x1E000, 0x1E006, "Cn"), (0x1E008, 0x1E018, "Cn"), (0x1E01B, 0x1E021, "Cn"),
    (0x1E023, 0x1E024, "Cn"), (0x1E026, 0x1E02A, "Cn"), (0x1E130, 0x1E136, "Cn"),
    (0x1E2AE, 0x1E2AE, "Cn"), (0x1E2EC, 0x1E2EF, "Cn"), (0x1E944, 0x1E94A, "Cn"),
    (0x1E95E, 0x1E95F, "Cn"),
)
# fmt: on


def _build_override_map() -> dict[str, str]:
    table: dict[str, str] = {}
    for first, last, cat in _RUST_CATEGORY_OVERRIDES:
        for cp in range(first, last + 1):
            table[chr(cp)] = cat
    return table


_OVERRIDE_MAP: Final = _build_override_map()


def _category(ch: str) -> str:
    """Unicode general category as the HF Rust tokenizer sees it."""
    return _OVERRIDE_MAP.get(ch) or unicodedata.category(ch)


def _is_chinese_char(cp: int) -> bool:
    """CJK ideograph blocks that BERT surrounds with spaces (one token per ideograph)."""
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F
        or 0x2B920 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


def _is_punctuation(ch: str) -> bool:
    """BERT punctuation: all non-alphanumeric printable ASCII plus Unicode category P*."""
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return _category(ch).startswith("P")


class BertWordPieceTokenizer:
    r"""Uncased BERT WordPiece tokenizer, token-for-token compatible with HF ``tokenizers``.

    Pipeline (mirroring the Rust ``BertNormalizer``/``BertPreTokenizer``/``WordPiece``):

    1. split out special tokens typed literally in the text (``"[SEP]"`` -> id 102), as
       the fast tokenizer matches its added tokens on the raw input first;
    2. clean: drop NUL, U+FFFD and control/format/private/surrogate chars (Cc Cf Co Cs,
       *not* unassigned Cn) except
       ``\t\n\r``; map whitespace to a space;
    3. put spaces around CJK ideographs;
    4. strip accents (NFD, drop Mn) *then* lower-case char by char (Rust order; no
       final-sigma rule);
    5. split on whitespace and around every punctuation char;
    6. greedy longest-match WordPiece with ``##`` continuations; a word longer than
       ``max_input_chars_per_word`` chars, or with an unmatchable piece, is one ``[UNK]``.
    """

    #: WordPiece results are memoised per word: customer messages reuse a small
    #: vocabulary, and the greedy search is the slowest part of tokenising in Python.
    #: Typos and order numbers make new words all the time, so the memo is bounded: 20,000
    #: words (about 4 MB) hold a support vocabulary; 100,000 let the service grow by ~20 MB.
    _CACHE_LIMIT: Final = 20_000

    def __init__(
        self,
        vocab: Mapping[str, int],
        *,
        lowercase: bool = True,
        strip_accents: bool | None = None,
        handle_chinese_chars: bool = True,
        max_input_chars_per_word: int = 100,
        unk_token: str = "[UNK]",
        cls_token: str = "[CLS]",
        sep_token: str = "[SEP]",
        special_tokens: Sequence[str] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"),
    ) -> None:
        """Create from a token -> id mapping and the BertNormalizer/WordPiece options."""
        self.vocab: dict[str, int] = dict(vocab)
        self.lowercase = lowercase
        # HF semantics: strip_accents=None means "follow lowercase".
        self.strip_accents = lowercase if strip_accents is None else strip_accents
        self.handle_chinese_chars = handle_chinese_chars
        self.max_input_chars_per_word = max_input_chars_per_word
        self.unk_id = self.vocab[unk_token]
        self.cls_id = self.vocab[cls_token]
        self.sep_id = self.vocab[sep_token]
        self._special_ids = {t: self.vocab[t] for t in special_tokens if t in self.vocab}
        # Longest first so that a token that is a prefix of another cannot shadow it.
        alternation = "|".join(
            re.escape(t) for t in sorted(self._special_ids, key=len, reverse=True)
        )
        self._special_re = re.compile(f"({alternation})") if alternation else None
        self._word_cache: dict[str, tuple[int, ...]] = {}
        self._char_cache: dict[str, str] = {}

    @classmethod
    def from_model_dir(cls, model_dir: str | Path) -> BertWordPieceTokenizer:
        """Build from ``vocab.txt`` and the normaliser flags of a HF model directory."""
        model_dir = Path(model_dir)
        with (model_dir / "vocab.txt").open(encoding="utf-8") as fh:
            vocab = {line.rstrip("\n"): i for i, line in enumerate(fh)}
        opts: dict[str, Any] = {}
        tok_json = model_dir / "tokenizer.json"
        tok_cfg = model_dir / "tokenizer_config.json"
        if tok_json.exists():
            spec = json.loads(tok_json.read_text(encoding="utf-8"))
            norm = spec.get("normalizer") or {}
            if norm.get("type") == "BertNormalizer":
                opts["lowercase"] = bool(norm.get("lowercase", True))
                opts["strip_accents"] = norm.get("strip_accents")
                opts["handle_chinese_chars"] = bool(norm.get("handle_chinese_chars", True))
            model = spec.get("model") or {}
            if "max_input_chars_per_word" in model:
                opts["max_input_chars_per_word"] = int(model["max_input_chars_per_word"])
            specials = [t["content"] for t in spec.get("added_tokens", []) if t.get("special")]
            if specials:
                opts["special_tokens"] = specials
        elif tok_cfg.exists():
            cfg = json.loads(tok_cfg.read_text(encoding="utf-8"))
            opts["lowercase"] = bool(cfg.get("do_lower_case", True))
            opts["strip_accents"] = cfg.get("strip_accents")
            opts["handle_chinese_chars"] = bool(cfg.get("tokenize_chinese_chars", True))
        return cls(vocab, **opts)

    # -- public API ------------------------------------------------------------------

    def encode(self, text: str, max_length: int) -> list[int]:
        """Token ids ``[CLS] ... [SEP]`` for ``text``, truncated to ``max_length`` ids."""
        ids = self.tokenize_ids(text)
        del ids[max(max_length - 2, 0) :]
        return [self.cls_id, *ids, self.sep_id]

    def tokenize_ids(self, text: str) -> list[int]:
        """Word-piece ids of ``text`` without the ``[CLS]``/``[SEP]`` wrapping."""
        if self._special_re is None or "[" not in text:
            return self._ids_for_segment(text)
        ids: list[int] = []
        # re.split with a capturing group alternates: text, special, text, special, ...
        for i, part in enumerate(self._special_re.split(text)):
            if i % 2:
                ids.append(self._special_ids[part])
            elif part:
                ids.extend(self._ids_for_segment(part))
        return ids

    # -- internals -------------------------------------------------------------------

    def _ids_for_segment(self, text: str) -> list[int]:
        ids: list[int] = []
        cache = self._word_cache
        for word in self._pre_tokenize(text):
            pieces = cache.get(word)
            if pieces is None:
                pieces = self._wordpiece(word)
                if len(cache) >= self._CACHE_LIMIT:
                    cache.clear()  # crude bound; the working set refills quickly
                cache[word] = pieces
            ids.extend(pieces)
        return ids

    def _pre_tokenize(self, text: str) -> list[str]:
        if text.isascii():
            # The common case: no NFD, no categories, no CJK to worry about.
            cleaned = text.translate(_ASCII_CLEAN)
            return _ASCII_WORDS.findall(cleaned.lower() if self.lowercase else cleaned)
        normalized = self._normalize(text)
        if normalized.isascii() and self.lowercase:
            return _ASCII_WORDS.findall(normalized)  # e.g. "Café" -> "cafe"
        return self._split_general(normalized)

    def _normalize(self, text: str) -> str:
        char_cache = self._char_cache
        parts: list[str] = []
        for ch in text:
            mapped = char_cache.get(ch)
            if mapped is None:
                mapped = self._clean_char(ch)
                if len(char_cache) < self._CACHE_LIMIT:
                    char_cache[ch] = mapped
            parts.append(mapped)
        out = "".join(parts)
        if self.strip_accents:
            out = unicodedata.normalize("NFD", out)
            out = "".join(c for c in out if _category(c) != "Mn")
        if self.lowercase:
            # Per character like Rust's char::to_lowercase: str.lower() on the whole
            # string would apply the final-sigma rule, which the fast tokenizer does not.
            out = "".join(map(str.lower, out))
        return out

    def _clean_char(self, ch: str) -> str:
        cp = ord(ch)
        if ch in "\t\n\r":
            return " "
        # Rust's `is_other` covers Cc, Cf, Co and Cs but not Cn: unassigned code points
        # survive as ordinary letters (and end up inside an [UNK] word).
        if cp == 0 or cp == 0xFFFD or _category(ch) in _REMOVED_CATEGORIES:
            return ""
        if ch in _WHITESPACE:
            return " "
        if self.handle_chinese_chars and _is_chinese_char(cp):
            return f" {ch} "
        return ch

    @staticmethod
    def _split_general(text: str) -> list[str]:
        words: list[str] = []
        for chunk in text.split():
            start = 0
            for i, ch in enumerate(chunk):
                if _is_punctuation(ch):
                    if i > start:
                        words.append(chunk[start:i])
                    words.append(ch)
                    start = i + 1
            if start < len(chunk):
                words.append(chunk[start:])
        return words

    def _wordpiece(self, word: str) -> tuple[int, ...]:
        if len(word) > self.max_input_chars_per_word:
            return (self.unk_id,)
        vocab = self.vocab
        whole = vocab.get(word)
        if whole is not None:
            return (whole,)
        pieces: list[int] = []
        start, n = 0, len(word)
        while start < n:
            end = n
            found: int | None = None
            while start < end:
                sub = word[start:end] if start == 0 else "##" + word[start:end]
                found = vocab.get(sub)
                if found is not None:
                    break
                end -= 1
            if found is None:
                return (self.unk_id,)  # any unmatchable piece makes the whole word [UNK]
            pieces.append(found)
            start = end
        return tuple(pieces)


# --------------------------------------------------------------------------------------
# Numerics
# --------------------------------------------------------------------------------------

_SQRT_HALF: Final = 1.0 / math.sqrt(2.0)
# Rational minimax approximation of erf on [-4, 4] (the one Eigen/XLA vectorise; its
# error is a few float32 ulp, far below what matters here).  numpy has no erf;
# scipy.special.erf is ~10x slower than these few SIMD passes (it runs in float64
# scalar code) and math.erf per element is slower still.  The 1/sqrt(2) of GELU's
# erf(x/sqrt(2)) is folded into the coefficients so x can be used directly.
_ERF_ALPHA: Final = (
    -2.72614225801306e-10,
    2.77068142495902e-08,
    -2.10102402082508e-06,
    -5.69250639462346e-05,
    -7.34990630326855e-04,
    -2.95459980854025e-03,
    -1.60960333262415e-02,
)  # numerator odd powers x^13 .. x^1
_ERF_BETA: Final = (
    -1.45660718464996e-05,
    -2.13374055278905e-04,
    -1.68282697438203e-03,
    -7.37332916720468e-03,
    -1.42647390514189e-02,
)  # denominator even powers x^8 .. x^0
_GELU_ALPHA: Final = tuple(
    np.float32(c * _SQRT_HALF ** (13 - 2 * i)) for i, c in enumerate(_ERF_ALPHA)
)
_GELU_BETA: Final = tuple(
    np.float32(c * _SQRT_HALF ** (8 - 2 * i)) for i, c in enumerate(_ERF_BETA)
)
_GELU_CLIP: Final = np.float32(4.0 / _SQRT_HALF)  # erf(x/sqrt2) == +-1 in float32 beyond


def gelu_(x: F32) -> F32:
    """Exact (erf) GELU, ``x * 0.5 * (1 + erf(x / sqrt(2)))``, computed in place on ``x``.

    Written as explicit ufunc calls with ``out=`` so the ~25 passes reuse three
    scratch buffers; np.clip/np.full_like would add allocations and Python overhead.
    """
    z = np.minimum(x, _GELU_CLIP)  # the rational function is only valid on the clip range
    np.maximum(z, -_GELU_CLIP, out=z)
    z2 = np.multiply(z, z)
    p = np.multiply(z2, _GELU_ALPHA[0])  # Horner, numerator (odd polynomial)
    for c in _GELU_ALPHA[1:-1]:
        p += c
        p *= z2
    p += _GELU_ALPHA[-1]
    p *= z
    q = np.multiply(z2, _GELU_BETA[0], out=z)  # Horner, denominator (even); z is free now
    for c in _GELU_BETA[1:-1]:
        q += c
        q *= z2
    q += _GELU_BETA[-1]
    p /= q  # p = erf(x / sqrt 2)
    p += np.float32(1.0)
    p *= np.float32(0.5)
    x *= p
    return x


def _layer_norm_(x: F32, gamma: F32, beta: F32, eps: np.float32) -> F32:
    """LayerNorm over the last axis of a 2-D scratch array, in place."""
    inv_n = np.float32(1.0 / x.shape[-1])
    # np.add.reduce rather than x.mean(): same pairwise sum, without mean()'s Python
    # wrapper, which costs as much as the arithmetic for a 15-token query.
    mean = np.add.reduce(x, axis=-1, keepdims=True)
    mean *= inv_n
    x -= mean
    var = np.einsum("ij,ij->i", x, x)  # one fused pass instead of x*x then a reduce
    var *= inv_n
    var += eps
    np.sqrt(var, out=var)
    x /= var[:, None]
    x *= gamma
    x += beta
    return x


def _softmax_(x: F32) -> F32:
    """Softmax over the last axis, in place (max-subtracted for stability)."""
    x -= np.maximum.reduce(x, axis=-1, keepdims=True)
    np.exp(x, out=x)
    x /= np.add.reduce(x, axis=-1, keepdims=True)
    return x


# --------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Layer:
    """One transformer block, weights laid out for ``activations @ W`` (in, out)."""

    w_qkv: F32  # (H, 3H): query | key | value, query pre-scaled by 1/sqrt(head_dim)
    b_qkv: F32  # (3H,)
    w_attn_out: F32  # (H, H)
    b_attn_out: F32
    ln1_g: F32
    ln1_b: F32
    w_ffn_in: F32  # (H, I)
    b_ffn_in: F32
    w_ffn_out: F32  # (I, H)
    b_ffn_out: F32
    ln2_g: F32
    ln2_b: F32


def fault_in(a: npt.NDArray[Any]) -> None:
    """Touch every memory page of the C-contiguous array `a` (one byte read per page)."""
    if a.size and a.flags.c_contiguous:
        np.add.reduce(a.reshape(-1).view(np.uint8)[::4096], dtype=np.uint64)


def _f32(a: npt.NDArray[Any]) -> F32:
    """Copy ``a`` into a private, C-contiguous float32 array (off the memory map)."""
    return np.array(a, dtype=np.float32, order="C", copy=True)


class MiniLmEncoder:
    """all-MiniLM-L6-v2 (any BERT + mean pooling + normalise) sentence encoder in numpy.

    Build with :meth:`load`; then :meth:`encode` for lists and :meth:`encode_one` for
    the latency-sensitive single-message case.  Instances are read-only after loading
    and safe to share between threads (the tokenizer's memo dicts only ever gain
    entries).  numpy releases the GIL inside BLAS, so threads do overlap in matmuls.
    """

    #: Upper bound on ``batch * seq_len**2`` so the (batch, heads, L, L) attention
    #: scores stay around 16 MB even for 256-token texts; short texts are unaffected.
    _ATTN_BUDGET: Final = 350_000

    def __init__(
        self,
        tokenizer: BertWordPieceTokenizer,
        word_emb: F32,
        pos_type_emb: F32,
        emb_ln_g: F32,
        emb_ln_b: F32,
        layers: Sequence[_Layer],
        *,
        num_heads: int,
        layer_norm_eps: float,
        max_seq_length: int,
    ) -> None:
        """Wrap prepared weights; use :meth:`load` rather than calling this directly."""
        self.tokenizer = tokenizer
        self.word_emb = word_emb
        self.pos_type_emb = pos_type_emb
        self.emb_ln_g = emb_ln_g
        self.emb_ln_b = emb_ln_b
        self.layers = tuple(layers)
        self.hidden = int(word_emb.shape[1])
        self.num_heads = num_heads
        self.head_dim = self.hidden // num_heads
        self.eps = np.float32(layer_norm_eps)
        self.max_seq_length = max_seq_length

    @property
    def dim(self) -> int:
        """Embedding dimension (384 for MiniLM-L6)."""
        return self.hidden

    @classmethod
    def load(cls, model_dir: str | Path) -> MiniLmEncoder:
        """Load a sentence-transformers BERT model directory (config, vocab, safetensors).

        Weights are prepared once here so the forward pass does no re-layout: matrices
        transposed to (in, out), Q/K/V fused into one (H, 3H) matrix, the attention
        1/sqrt(head_dim) scale folded into the query weights, and the position and
        token-type-0 embeddings pre-added.  The word-embedding table stays memory-mapped.
        """
        model_dir = Path(model_dir)
        cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        if cfg.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"unsupported hidden_act {cfg.get('hidden_act')!r}")
        if cfg.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("only absolute position embeddings are supported")
        _check_pooling(model_dir)
        st_cfg_path = model_dir / "sentence_bert_config.json"
        st_cfg = json.loads(st_cfg_path.read_text(encoding="utf-8")) if st_cfg_path.exists() else {}
        max_pos = int(cfg.get("max_position_embeddings", 512))
        max_seq_length = min(int(st_cfg.get("max_seq_length") or max_pos), max_pos)

        weights = load_safetensors(model_dir / "model.safetensors")
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in weights else ""

        def w(name: str) -> npt.NDArray[Any]:
            return weights[prefix + name]

        hidden = int(cfg["hidden_size"])
        num_heads = int(cfg["num_attention_heads"])
        head_dim = hidden // num_heads
        q_scale = np.float32(1.0 / math.sqrt(head_dim))

        word_emb = w("embeddings.word_embeddings.weight")
        if word_emb.dtype != np.float32:
            word_emb = _f32(word_emb)
        else:
            # The table stays a read-only view of the mapped file, shared by worker processes;
            # fault all of it in now, or the process's memory creeps up by up to its 47 MB
            # as customers use words not seen before, which looks like a leak.
            fault_in(word_emb)
        # Sentence embeddings always use segment 0, so its embedding is a constant
        # per-position offset.
        pos_type = _f32(w("embeddings.position_embeddings.weight")[:max_seq_length])
        pos_type += w("embeddings.token_type_embeddings.weight")[0].astype(np.float32)

        layers: list[_Layer] = []
        for i in range(int(cfg["num_hidden_layers"])):
            p = f"encoder.layer.{i}."
            wq = w(p + "attention.self.query.weight").astype(np.float32) * q_scale
            bq = w(p + "attention.self.query.bias").astype(np.float32) * q_scale
            # torch Linear stores (out, in); concatenate along out, then transpose.
            w_qkv = np.concatenate(
                [wq, w(p + "attention.self.key.weight"), w(p + "attention.self.value.weight")]
            )
            b_qkv = np.concatenate(
                [bq, w(p + "attention.self.key.bias"), w(p + "attention.self.value.bias")]
            )
            layers.append(
                _Layer(
                    w_qkv=_f32(w_qkv.T),
                    b_qkv=_f32(b_qkv),
                    w_attn_out=_f32(w(p + "attention.output.dense.weight").T),
                    b_attn_out=_f32(w(p + "attention.output.dense.bias")),
                    ln1_g=_f32(w(p + "attention.output.LayerNorm.weight")),
                    ln1_b=_f32(w(p + "attention.output.LayerNorm.bias")),
                    w_ffn_in=_f32(w(p + "intermediate.dense.weight").T),
                    b_ffn_in=_f32(w(p + "intermediate.dense.bias")),
                    w_ffn_out=_f32(w(p + "output.dense.weight").T),
                    b_ffn_out=_f32(w(p + "output.dense.bias")),
                    ln2_g=_f32(w(p + "output.LayerNorm.weight")),
                    ln2_b=_f32(w(p + "output.LayerNorm.bias")),
                )
            )
        return cls(
            BertWordPieceTokenizer.from_model_dir(model_dir),
            word_emb,
            pos_type,
            _f32(w("embeddings.LayerNorm.weight")),
            _f32(w("embeddings.LayerNorm.bias")),
            layers,
            num_heads=num_heads,
            layer_norm_eps=float(cfg.get("layer_norm_eps", 1e-12)),
            max_seq_length=max_seq_length,
        )

    # -- public API ------------------------------------------------------------------

    def tokenize(self, text: str) -> list[int]:
        """Token ids exactly as sentence-transformers feeds them to the model."""
        return self.tokenizer.encode(text, self.max_seq_length)

    def encode_one(self, text: str) -> F32:
        """Embedding of one text, shape ``(dim,)``, unit L2 norm.

        The fast path for a single customer message: no padding, no attention mask,
        no sorting or batching bookkeeping.
        """
        ids = np.asarray(self.tokenize(text), dtype=np.intp)
        hidden = self.hidden_states(ids[None, :], None)
        pooled: F32 = np.add.reduce(hidden, axis=0, keepdims=True)
        pooled /= np.float32(hidden.shape[0])
        vec: F32 = l2_normalize(pooled)[0]
        return vec

    def encode(self, texts: Sequence[str] | str, batch_size: int = 64) -> F32:
        """Embeddings of ``texts``, shape ``(len(texts), dim)``, float32, unit L2 norm.

        Texts are sorted by token count and padded only to the longest text of their
        batch, so a batch of short messages never pays for one long outlier; results
        are returned in input order.
        """
        if isinstance(texts, str):
            texts = [texts]
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        out = np.empty((len(texts), self.hidden), dtype=np.float32)
        if not texts:
            return out
        token_ids = [self.tokenize(t) for t in texts]
        order = sorted(range(len(token_ids)), key=lambda i: len(token_ids[i]))
        for batch in self.length_batches(order, token_ids, batch_size):
            out[batch] = self._embed_batch(*padded(token_ids, batch))
        return out

    def length_batches(
        self, order: Sequence[int], token_ids: Sequence[Sequence[int]], batch_size: int
    ) -> Iterator[list[int]]:
        """Consecutive runs of ``order`` (sorted by length) capped by count and L^2 budget."""
        batch: list[int] = []
        for i in order:
            n = len(token_ids[i])  # ascending, so n is the batch's padded length
            if batch and (len(batch) >= batch_size or (len(batch) + 1) * n * n > self._ATTN_BUDGET):
                yield batch
                batch = []
            batch.append(i)
        if batch:
            yield batch

    def hidden_states(self, ids: IntArray, valid: npt.NDArray[np.bool_] | None) -> F32:
        """Last hidden state, shape ``(B * L, H)``, for padded ids ``(B, L)``.

        ``valid`` marks real tokens; ``None`` means no padding (skips the mask add).
        """
        mask_bias = None if valid is None else attention_mask_bias(valid)
        return self._transform(self.embed_tokens(ids), ids.shape, mask_bias)

    def embed_tokens(self, ids: IntArray) -> F32:
        """The transformer's input for padded ids ``(B, L)``: word + position embeddings,
        layer-normalised, flattened to ``(B * L, H)``."""
        batch, seq_len = ids.shape
        x: F32 = self.word_emb[ids.reshape(-1)]  # fancy indexing copies: x is ours
        x = x.reshape(batch, seq_len, self.hidden)
        x += self.pos_type_emb[:seq_len]
        x = x.reshape(batch * seq_len, self.hidden)
        return _layer_norm_(x, self.emb_ln_g, self.emb_ln_b, self.eps)

    # -- internals -------------------------------------------------------------------

    def _embed_batch(self, ids: IntArray, lengths: IntArray) -> F32:
        batch, seq_len = ids.shape
        if bool((lengths == seq_len).all()):
            hidden = self.hidden_states(ids, None).reshape(batch, seq_len, self.hidden)
            pooled: F32 = np.add.reduce(hidden, axis=1)
            pooled /= np.float32(seq_len)
            return l2_normalize(pooled)
        valid = np.arange(seq_len)[None, :] < lengths[:, None]  # (B, L)
        hidden = self.hidden_states(ids, valid).reshape(batch, seq_len, self.hidden)
        # Mean over real tokens only: (B, 1, L) @ (B, L, H) sums the valid rows.
        summed = np.matmul(valid.astype(np.float32)[:, None, :], hidden)[:, 0, :]
        summed /= lengths.astype(np.float32)[:, None]
        return l2_normalize(summed)

    def _transform(self, x: F32, shape: tuple[int, ...], mask_bias: F32 | None) -> F32:
        """The transformer layers over embedded tokens ``(B * L, H)`` of a ``(B, L)`` batch.

        All matmuls run on the flattened activations so BLAS sees one tall matrix instead
        of B small ones.
        """
        batch, seq_len = shape
        heads, head_dim, hidden = self.num_heads, self.head_dim, self.hidden
        for layer in self.layers:
            qkv = _mm(x, layer.w_qkv)
            qkv += layer.b_qkv
            # (B*L, 3H) -> (3, B, heads, L, head_dim); views only, BLAS takes the strides.
            qkv5 = qkv.reshape(batch, seq_len, 3, heads, head_dim).transpose(2, 0, 3, 1, 4)
            q, k, v = qkv5[0], qkv5[1], qkv5[2]
            scores: F32 = q @ k.transpose(0, 1, 3, 2)  # (B, heads, L, L), already scaled
            if mask_bias is not None:
                scores += mask_bias
            _softmax_(scores)
            ctx = (scores @ v).transpose(0, 2, 1, 3).reshape(batch * seq_len, hidden)
            attn = _mm(ctx, layer.w_attn_out)
            attn += layer.b_attn_out
            attn += x  # residual
            x = _layer_norm_(attn, layer.ln1_g, layer.ln1_b, self.eps)

            inter = _mm(x, layer.w_ffn_in)
            inter += layer.b_ffn_in
            gelu_(inter)
            out = _mm(inter, layer.w_ffn_out)
            out += layer.b_ffn_out
            out += x  # residual
            x = _layer_norm_(out, layer.ln2_g, layer.ln2_b, self.eps)
        return x


def padded(token_ids: Sequence[Sequence[int]], batch: Sequence[int]) -> tuple[IntArray, IntArray]:
    """The ids of texts `batch` as one ``(B, L)`` array padded with [PAD] (0) to the longest,
    and each text's length."""
    lengths = np.fromiter((len(token_ids[i]) for i in batch), np.intp, len(batch))
    ids = np.zeros((len(batch), int(lengths.max())), dtype=np.intp)
    for row, i in enumerate(batch):
        ids[row, : lengths[row]] = token_ids[i]
    return ids, lengths


def attention_mask_bias(valid: npt.NDArray[np.bool_]) -> F32:
    """Additive attention mask ``(B, 1, 1, L)`` as in HF: a huge negative on padded keys,
    which softmax's exp() turns into 0."""
    bias: F32 = np.where(valid, np.float32(0.0), np.finfo(np.float32).min).astype(np.float32)
    return bias[:, None, None, :]


def _mm(a: F32, b: F32) -> F32:
    """Multiply 2-D float32 operands (a typed ``a @ b``: numpy's stubs widen to float64)."""
    result: F32 = np.matmul(a, b)
    return result


def l2_normalize(v: F32) -> F32:
    """Row-wise L2 normalisation with torch's F.normalize floor (eps=1e-12)."""
    norms = np.sqrt(np.einsum("ij,ij->i", v, v))
    np.maximum(norms, np.float32(1e-12), out=norms)
    result: F32 = (v / norms[:, None]).astype(np.float32, copy=False)
    return result


def _check_pooling(model_dir: Path) -> None:
    """Refuse models whose pooling is not plain mean pooling (the only one implemented)."""
    pooling_cfg = model_dir / "1_Pooling" / "config.json"
    if not pooling_cfg.exists():
        return
    cfg = json.loads(pooling_cfg.read_text(encoding="utf-8"))
    other_modes = (
        "pooling_mode_cls_token",
        "pooling_mode_max_tokens",
        "pooling_mode_mean_sqrt_len_tokens",
        "pooling_mode_weightedmean_tokens",
        "pooling_mode_lasttoken",
    )
    if not cfg.get("pooling_mode_mean_tokens", False) or any(cfg.get(m) for m in other_modes):
        raise ValueError(f"{pooling_cfg}: only mean-token pooling is supported")
