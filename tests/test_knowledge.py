"""The knowledge base files: validation, import (upsert, disable) and the shipped starter KB."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from carebot.cli import main
from carebot.db.models import FaqEntry
from carebot.domain.clock import ManualClock
from carebot.matching.knowledge import (
    KnowledgeError,
    enabled_docs,
    import_knowledge,
    knowledge_files,
    load_knowledge,
)
from tests.conftest import KNOWLEDGE

ENTRY = """
- id: {id}
  question: {question}
  phrasings: [first way to ask, second way to ask]
  answer: The answer.
  tags: [demo]
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_every_shipped_knowledge_file_loads() -> None:
    files = knowledge_files(KNOWLEDGE)
    assert len(files) >= 5
    loaded = load_knowledge(KNOWLEDGE)
    assert len(loaded) >= 40, "the starter knowledge base promises at least 40 entries"
    for item in loaded:
        assert len(item.doc.phrasings) >= 3, f"{item.doc.id} needs several phrasings"
    ids = {item.doc.id for item in loaded}
    assert {"order-status"} <= ids


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("- id: Bad Id\n  question: q\n  answer: a\n", "'id' must be a lowercase slug"),
        ("- id: no-answer\n  question: q\n", "'answer' is required"),
        ("- id: x\n  question: q\n  answer: a\n  phrasings: just one string\n",
         "'phrasings' must be a list"),
        ("- id: x\n  question: q\n  answer: a\n  colour: red\n", "unknown keys: colour"),
        ("id: x\nquestion: q\n", "expected a list of entries"),
        ("- id: x\n  question: [unclosed\n", "cannot read YAML"),
    ],
)
def test_malformed_file_error_names_file_entry_and_problem(
    tmp_path: Path, body: str, problem: str
) -> None:
    write(tmp_path / "broken.yaml", body)
    with pytest.raises(KnowledgeError) as err:
        load_knowledge(tmp_path)
    message = str(err.value)
    assert "broken.yaml" in message
    assert problem in message


def test_duplicate_ids_across_files_are_rejected(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", ENTRY.format(id="same", question="Q1?"))
    write(tmp_path / "b.yaml", ENTRY.format(id="same", question="Q2?"))
    with pytest.raises(KnowledgeError, match=r"b\.yaml: entry 1 \(same\): duplicate id"):
        load_knowledge(tmp_path)


async def test_import_upserts_and_disables_removed_entries(
    tmp_path: Path, sessions: async_sessionmaker[AsyncSession], clock: ManualClock
) -> None:
    write(tmp_path / "kb.yaml", ENTRY.format(id="one", question="Q1?")
          + ENTRY.format(id="two", question="Q2?"))
    async with sessions.begin() as session:
        report = await import_knowledge(session, load_knowledge(tmp_path), clock())
    assert (report.added, report.updated, report.disabled) == (2, 0, 0)

    clock.advance(minutes=1)
    write(tmp_path / "kb.yaml", ENTRY.format(id="one", question="Q1 changed?"))
    async with sessions.begin() as session:
        report = await import_knowledge(session, load_knowledge(tmp_path), clock())
    assert (report.added, report.updated, report.unchanged, report.disabled) == (0, 1, 0, 1)

    async with sessions() as session:
        rows = {e.id: e for e in (await session.scalars(select(FaqEntry))).all()}
        assert rows["one"].question == "Q1 changed?"
        assert rows["two"].enabled is False, "a removed entry is disabled, not deleted"
        assert [d.id for d in await enabled_docs(session)] == ["one"]


def test_cli_import_of_a_malformed_file_changes_nothing(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CAREBOT_DATABASE_URL", database_url)
    write(tmp_path / "good.yaml", ENTRY.format(id="good", question="Good?"))
    assert main(["kb", "import", str(tmp_path)]) == 0
    assert "1 added" in capsys.readouterr().out

    write(tmp_path / "bad.yaml", ENTRY.format(id="new-one", question="New?")
          + "- id: broken\n  question: q\n")
    assert main(["kb", "import", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml: entry 2 (broken): 'answer' is required" in err

    # Nothing from the bad run landed: the valid entry in the bad file was not imported either.
    write(tmp_path / "bad.yaml", "[]\n")
    assert main(["kb", "import", str(tmp_path)]) == 0
    assert "0 added, 0 updated, 1 unchanged, 0 disabled" in capsys.readouterr().out
