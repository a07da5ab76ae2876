"""Knowledge-base evaluation: query sets, routing metrics and a CSV-to-knowledge converter.

Pure functions (no database, no network); the benchmark and the CLI build on them.
"""

from __future__ import annotations

import csv
import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import yaml

from carebot.matching.faq import Candidate, FaqDoc
from carebot.matching.knowledge import MAX_ANSWER, MAX_TEXT

METRIC_KEYS = (
    "top1",
    "top3",
    "answer_rate",
    "handoff_precision",
    "handoff_recall",
    "wrong_answer_rate",
    "ms_p50",
    "ms_p99",
)


class SupportsMatch(Protocol):
    """Anything ranking FAQ entries like `Matcher.match`."""

    def match(self, text: str, limit: int = 3) -> list[Candidate]: ...


def read_queries(path: str | Path) -> list[tuple[str, str | None]]:
    """Read a `text,expected` CSV; an empty `expected` means "no FAQ fits, hand off" (None).

    Raises ValueError naming the file and line for a missing header column, a wrong number
    of fields or an empty text.
    """
    path = Path(path)
    out: list[tuple[str, str | None]] = []
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path}:1: empty file, expected a 'text,expected' header")
        names = [h.strip().lower() for h in header]
        if "text" not in names or "expected" not in names:
            raise ValueError(
                f"{path}:1: header must have columns 'text' and 'expected', got {header!r}"
            )
        i_text, i_expected = names.index("text"), names.index("expected")
        for row in reader:
            line = reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise ValueError(
                    f"{path}:{line}: expected {len(header)} fields, got {len(row)}: {row!r}"
                )
            text = row[i_text].strip()
            if not text:
                raise ValueError(f"{path}:{line}: empty text")
            expected = row[i_expected].strip()
            out.append((text, expected or None))
    return out


def _share(hits: int, total: int) -> float:
    return hits / total if total else math.nan


def evaluate(
    matcher: SupportsMatch,
    queries: Sequence[tuple[str, str | None]],
    answer_threshold: float,
    suggest_threshold: float,
) -> dict[str, float]:
    """Run every query through `matcher.match(text, limit=3)` and compute routing metrics.

    A query is *in scope* when it has an expected FAQ id, *out of scope* when expected is None.
    "Top score" is the first candidate's score, 0 when there is none. Definitions:

    * top1 / top3: among in-scope queries, the share whose expected id is the first / among
      the first three candidates.
    * answer_rate: among all queries, the share with top score >= answer_threshold (the bot
      answers with the top entry).
    * handoff: top score < suggest_threshold (the bot hands the customer to a human). A
      handoff is *warranted* when the query is out of scope or its top-1 candidate is wrong.
    * handoff_precision: among handed-off queries, the share where the handoff was warranted.
    * handoff_recall: among queries where a handoff was warranted, the share handed off.
    * wrong_answer_rate: among all queries, the share answered (top score >= answer_threshold)
      with a wrong entry; answering an out-of-scope query counts as wrong.
    * ms_p50 / ms_p99: percentiles of the wall time of one `match` call, in milliseconds.
    * n_queries, n_in_scope, n_out_of_scope: counts.

    Ratios with an empty denominator are NaN.
    """
    n_in = n_top1 = n_top3 = 0
    n_answered = n_wrong_answer = 0
    n_handoff = n_warranted = n_handoff_warranted = 0
    times: list[float] = []
    for text, expected in queries:
        start = time.perf_counter()
        cands = matcher.match(text, limit=3)
        times.append((time.perf_counter() - start) * 1000.0)
        ids = [c.faq_id for c in cands]
        top = cands[0].score if cands else 0.0
        top1_right = expected is not None and bool(ids) and ids[0] == expected
        if expected is not None:
            n_in += 1
            n_top1 += top1_right
            n_top3 += expected in ids[:3]
        answered = top >= answer_threshold
        handed_off = top < suggest_threshold
        warranted = not top1_right
        n_answered += answered
        n_wrong_answer += answered and not top1_right
        n_handoff += handed_off
        n_warranted += warranted
        n_handoff_warranted += handed_off and warranted
    n = len(queries)
    return {
        "top1": _share(n_top1, n_in),
        "top3": _share(n_top3, n_in),
        "answer_rate": _share(n_answered, n),
        "handoff_precision": _share(n_handoff_warranted, n_handoff),
        "handoff_recall": _share(n_handoff_warranted, n_warranted),
        "wrong_answer_rate": _share(n_wrong_answer, n),
        "ms_p50": float(np.percentile(times, 50)) if times else math.nan,
        "ms_p99": float(np.percentile(times, 99)) if times else math.nan,
        "n_queries": float(n),
        "n_in_scope": float(n_in),
        "n_out_of_scope": float(n - n_in),
    }


def format_report(metrics: Mapping[str, float], title: str = "FAQ matcher evaluation") -> str:
    """Render metrics as an aligned two-column table (shares as percentages)."""
    rows: list[tuple[str, str]] = []
    for key, value in metrics.items():
        if isinstance(value, float) and math.isnan(value):
            shown = "n/a"
        elif key.startswith("n_"):
            shown = f"{int(value)}"
        elif key.startswith("ms_"):
            shown = f"{value:.2f} ms"
        elif key in METRIC_KEYS or key == "language_detected":
            shown = f"{100.0 * value:.1f} %"
        else:
            shown = f"{value:.4g}"
        rows.append((key, shown))
    width = max([len(k) for k, _ in rows] + [len("metric")])
    vwidth = max([len(v) for _, v in rows] + [len("value")])
    lines = [title, f"{'metric':<{width}}  {'value':>{vwidth}}", f"{'-' * width}  {'-' * vwidth}"]
    lines += [f"{k:<{width}}  {v:>{vwidth}}" for k, v in rows]
    return "\n".join(lines)


def slugify(text: str) -> str:
    """Lower-case id from free text: runs of non-alphanumerics become single hyphens."""
    slug = re.sub(r"[^0-9a-z]+", "-", text.casefold()).strip("-")
    return slug or "faq"


def read_labelled_texts(csv_path: str | Path) -> dict[str, list[str]]:
    """Texts of a `text,category` CSV grouped by category, in first-appearance order."""
    path = Path(csv_path)
    groups: dict[str, list[str]] = {}
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"text", "category"} <= set(reader.fieldnames):
            raise ValueError(f"{path}:1: header must have columns 'text' and 'category'")
        for row in reader:
            text, category = (row["text"] or "").strip(), (row["category"] or "").strip()
            if not text or not category:
                raise ValueError(f"{path}:{reader.line_num}: empty text or category")
            groups.setdefault(category, []).append(text)
    return groups


def knowledge_entries(
    groups: Mapping[str, Sequence[str]], per_faq: int | None = None
) -> list[dict[str, Any]]:
    """One knowledge entry per category: id = slug of the category (made unique), question =
    its first text, phrasings = the following texts so that question + phrasings are the
    first `per_faq` texts (all if None), answer = a placeholder, tags = [category]."""
    entries: list[dict[str, Any]] = []
    used: set[str] = set()
    for category, texts in groups.items():
        if not texts:
            continue
        base = slug = slugify(category)
        n = 2
        while slug in used:
            slug, n = f"{base}-{n}", n + 1
        used.add(slug)
        chosen = list(texts if per_faq is None else texts[: max(per_faq, 1)])
        entries.append(
            {
                "id": slug,
                "question": chosen[0],
                "phrasings": chosen[1:],
                "answer": f"Answer for {category}.",
                "tags": [category],
            }
        )
    return entries


def docs_from_entries(entries: Iterable[Mapping[str, Any]]) -> list[FaqDoc]:
    """FaqDocs from `knowledge_entries` output (not a general knowledge loader)."""
    return [
        FaqDoc(
            id=str(e["id"]),
            question=str(e["question"]),
            answer=str(e["answer"]),
            phrasings=tuple(str(p) for p in e.get("phrasings", ())),
            tags=tuple(str(t) for t in e.get("tags", ())),
        )
        for e in entries
    ]


@dataclass(frozen=True)
class Conversion:
    """What `csv_to_knowledge` wrote, and what it had to leave out or shorten."""

    entries: int
    skipped: int  # texts over the loader's MAX_TEXT characters, left out
    truncated: int  # texts and category names cut to fit (a category with only long texts)


def csv_to_knowledge(
    csv_path: str | Path, out_path: str | Path, per_faq: int | None
) -> Conversion:
    """Write a knowledge YAML list built from a `text,category` CSV.

    Each category becomes `{id, question, phrasings, answer, tags}` as in `knowledge_entries`,
    within the limits `knowledge.load_knowledge` enforces, so `carebot kb import` and
    `kb eval` accept the file: texts over `MAX_TEXT` characters are left out (BANKING77's
    training split has 20, up to 433 characters: messages, not phrasings), and the `per_faq`
    first texts are counted among those kept. A category whose texts are all too long keeps
    its first one cut at a word; a category name too long for a tag is cut too.
    """
    groups: dict[str, list[str]] = {}
    skipped = truncated = 0
    for category, texts in read_labelled_texts(csv_path).items():
        kept = [t for t in texts if len(t) <= MAX_TEXT]
        skipped += len(texts) - len(kept)
        if not kept:
            kept = [_cut(texts[0], MAX_TEXT)]
            skipped -= 1
            truncated += 1
        if len(category) > MAX_TEXT:
            truncated += 1
        groups[category] = kept
    entries = knowledge_entries(groups, per_faq)
    for entry in entries:
        entry["id"] = entry["id"][:_MAX_ID].rstrip("-") or "faq"
        entry["tags"] = [_cut(t, MAX_TEXT) for t in entry["tags"]]
        entry["answer"] = _cut(entry["answer"], MAX_ANSWER)
    with Path(out_path).open("w", encoding="utf-8") as fh:
        yaml.safe_dump(entries, fh, sort_keys=False, allow_unicode=True, width=100)
    return Conversion(len(entries), skipped, truncated)


_MAX_ID = 100  # knowledge.ID_PATTERN


def _cut(text: str, limit: int) -> str:
    """`text` shortened to at most `limit` characters, at a space where there is one."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    return (head.rsplit(" ", 1)[0] if " " in head else head).rstrip()
