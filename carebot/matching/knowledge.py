"""The knowledge base: YAML files validated into FaqDocs, imported into the database."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from carebot.db.models import FaqEntry
from carebot.matching.faq import FaqDoc, FaqTranslation

ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
# A translation's key: a language code like de, es or pt_BR.
LANGUAGE_PATTERN = re.compile(r"^[a-z]{2,3}(_[A-Z]{2})?$")
MAX_TEXT = 300
MAX_ANSWER = 4000


class KnowledgeError(ValueError):
    """The knowledge base files are malformed; the message names file, entry and problem."""


@dataclass(frozen=True)
class LoadedDoc:
    """A validated entry and the file it came from."""

    doc: FaqDoc
    source: str


@dataclass(frozen=True)
class ImportReport:
    """What `import_knowledge` changed."""

    added: int
    updated: int
    unchanged: int
    disabled: int

    def __str__(self) -> str:
        return (
            f"{self.added} added, {self.updated} updated, {self.unchanged} unchanged, "
            f"{self.disabled} disabled"
        )


def knowledge_files(path: Path) -> list[Path]:
    """The YAML files at `path`: the file itself, or every *.yaml / *.yml in the directory."""
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix in {".yaml", ".yml"} and p.is_file())
    raise KnowledgeError(f"{path}: no such file or directory")


def load_knowledge(path: Path) -> list[LoadedDoc]:
    """Read and validate every entry; raise KnowledgeError listing every problem found."""
    files = knowledge_files(path)
    if not files:
        raise KnowledgeError(f"{path}: no .yaml files found")
    problems: list[str] = []
    loaded: list[LoadedDoc] = []
    seen: dict[str, str] = {}
    for file in files:
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            problems.append(f"{file}: cannot read YAML: {exc}")
            continue
        if data is None:
            continue
        if not isinstance(data, list):
            problems.append(f"{file}: expected a list of entries, got {type(data).__name__}")
            continue
        for index, raw in enumerate(data, start=1):
            label = f"{file}: entry {index}"
            if isinstance(raw, dict) and isinstance(raw.get("id"), str):
                label += f" ({raw['id']})"
            doc, errors = _validate_entry(raw)
            problems.extend(f"{label}: {e}" for e in errors)
            if doc is None:
                continue
            if doc.id in seen:
                problems.append(f"{label}: duplicate id, already defined in {seen[doc.id]}")
                continue
            seen[doc.id] = str(file)
            loaded.append(LoadedDoc(doc, file.name))
    if problems:
        raise KnowledgeError("knowledge base is invalid:\n  " + "\n  ".join(problems))
    return loaded


def _validate_entry(raw: Any) -> tuple[FaqDoc | None, list[str]]:
    if not isinstance(raw, dict):
        return None, [f"expected a mapping, got {type(raw).__name__}"]
    errors: list[str] = []
    unknown = set(raw) - {"id", "question", "phrasings", "answer", "tags", "translations"}
    if unknown:
        errors.append(f"unknown keys: {', '.join(sorted(map(str, unknown)))}")
    faq_id = raw.get("id")
    if not isinstance(faq_id, str) or not ID_PATTERN.match(faq_id):
        errors.append("'id' must be a lowercase slug (a-z, 0-9, '-', '_'), at most 100 chars")
    question = _text(raw.get("question"), "question", MAX_TEXT, errors)
    answer = _text(raw.get("answer"), "answer", MAX_ANSWER, errors)
    phrasings = _text_list(raw.get("phrasings", []), "phrasings", errors)
    tags = _text_list(raw.get("tags", []), "tags", errors)
    translations = _translations(raw.get("translations", {}), errors)
    if errors:
        return None, errors
    assert isinstance(faq_id, str)
    return FaqDoc(faq_id, question, answer, tuple(phrasings), tuple(tags), translations), []


def _translations(value: Any, errors: list[str]) -> tuple[tuple[str, FaqTranslation], ...]:
    """`translations: {de: {question, answer, phrasings}, …}`; every problem is reported with
    the language it belongs to."""
    if not isinstance(value, dict):
        errors.append("'translations' must be a mapping of language code to "
                      "{question, answer, phrasings}")
        return ()
    out: list[tuple[str, FaqTranslation]] = []
    for code, tr in sorted(value.items(), key=lambda kv: str(kv[0])):
        where = f"translations.{code}"
        if not isinstance(code, str) or not LANGUAGE_PATTERN.match(code):
            errors.append(f"'{where}': the key must be a language code like de or pt_BR")
            continue
        if not isinstance(tr, dict):
            errors.append(f"'{where}' must be a mapping with question, answer and phrasings")
            continue
        unknown = set(tr) - {"question", "answer", "phrasings"}
        if unknown:
            errors.append(f"'{where}': unknown keys: {', '.join(sorted(map(str, unknown)))}")
        mine: list[str] = []
        question = _text(tr.get("question"), "question", MAX_TEXT, mine)
        answer = _text(tr.get("answer"), "answer", MAX_ANSWER, mine)
        phrasings = _text_list(tr.get("phrasings", []), "phrasings", mine)
        errors.extend(f"'{where}': {e}" for e in mine)
        if not mine:
            out.append((code, FaqTranslation(question, answer, tuple(phrasings))))
    return tuple(out)


def _text(value: Any, key: str, limit: int, errors: list[str]) -> str:
    if not isinstance(value, str) or not value.strip():
        errors.append(f"'{key}' is required and must be non-empty text")
        return ""
    if len(value) > limit:
        errors.append(f"'{key}' is longer than {limit} characters")
    return value.strip()


def _text_list(value: Any, key: str, errors: list[str]) -> list[str]:
    if not isinstance(value, list):
        errors.append(f"'{key}' must be a list of strings")
        return []
    out: list[str] = []
    for i, item in enumerate(value, start=1):
        if not isinstance(item, str | int | float) or not str(item).strip():
            errors.append(f"'{key}' item {i} must be non-empty text")
        elif len(str(item)) > MAX_TEXT:
            errors.append(f"'{key}' item {i} is longer than {MAX_TEXT} characters")
        else:
            out.append(str(item).strip())
    return out


async def import_knowledge(
    session: AsyncSession, loaded: list[LoadedDoc], now: datetime
) -> ImportReport:
    """Upsert entries by id and disable the ones no longer in the files; caller commits."""
    existing = {e.id: e for e in (await session.scalars(select(FaqEntry))).all()}
    added = updated = unchanged = disabled = 0
    for item in loaded:
        doc = item.doc
        fields = {
            "question": doc.question,
            "answer": doc.answer,
            "phrasings": list(doc.phrasings),
            "tags": list(doc.tags),
            "translations": doc.translations_dict(),
            "source": item.source,
            "enabled": True,
        }
        entry = existing.pop(doc.id, None)
        if entry is None:
            session.add(FaqEntry(id=doc.id, created_at=now, updated_at=now, **fields))
            added += 1
        elif any(getattr(entry, k) != v for k, v in fields.items()):
            for k, v in fields.items():
                setattr(entry, k, v)
            entry.updated_at = now
            updated += 1
        else:
            unchanged += 1
    for entry in existing.values():
        if entry.enabled:
            entry.enabled = False
            entry.updated_at = now
            disabled += 1
    return ImportReport(added, updated, unchanged, disabled)


async def enabled_docs(session: AsyncSession) -> list[FaqDoc]:
    """Every enabled entry, as the matcher consumes them."""
    rows = await session.scalars(
        select(FaqEntry).where(FaqEntry.enabled.is_(True)).order_by(FaqEntry.id)
    )
    return [
        FaqDoc(e.id, e.question, e.answer, tuple(e.phrasings), tuple(e.tags),
               FaqDoc.translations_from(e.translations))
        for e in rows
    ]


async def knowledge_version(session: AsyncSession) -> tuple[int, str]:
    """A cheap fingerprint of the stored knowledge base: changes whenever an import changes it."""
    count, latest = (
        await session.execute(select(func.count(), func.max(FaqEntry.updated_at)))
    ).one()
    return int(count), str(latest)
