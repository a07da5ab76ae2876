"""The audit log: who did what to which object, append-only, with an admin API and CSV."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from carebot.agents import audit
from carebot.agents.passwords import set_password
from carebot.cli import main
from carebot.db.models import Agent, AuditEntry
from carebot.domain.clock import ManualClock
from carebot.settings import Settings
from tests.conftest import KNOWLEDGE
from tests.helpers import Customer, bearer, create_app, make_agent

Client = TestClient[Any, Any]
PASSWORD = "correct horse battery"


@pytest.fixture
async def client(
    aiohttp_client: Any, settings: Settings, clock: ManualClock, starter_kb: None
) -> Client:
    app = create_app(replace(settings, run_timers=False, run_worker=False), clock)
    return await aiohttp_client(app)  # type: ignore[no-any-return]


async def call(client: Client, token: str, method: str, path: str, body: Any = None,
               expect: int = 200) -> Any:
    resp = await client.request(method, path, json=body, headers=bearer(token))
    data = await resp.json() if resp.content_type == "application/json" else await resp.text()
    assert resp.status == expect, (resp.status, data)
    return data


async def rows(sessions: async_sessionmaker[AsyncSession]) -> list[AuditEntry]:
    async with sessions() as session:
        return list(await session.scalars(select(AuditEntry).order_by(AuditEntry.id)))


async def test_who_did_what_is_on_record_and_the_admin_reads_it_filtered(
    client: Client, sessions: async_sessionmaker[AsyncSession], clock: ManualClock
) -> None:
    admin_id, admin = await make_agent(sessions, "Ada", "admin")
    boss_id, boss = await make_agent(sessions, "Boss", "manager")
    # An admin creates an agent, who then logs in with a password (and once fails to).
    created = await call(client, admin, "POST", "/api/v1/agents",
                         {"name": "Alex", "role": "agent"}, expect=201)
    alex_id, alex = created["id"], created["token"]
    async with sessions.begin() as session:
        row = await session.get(Agent, alex_id)
        assert row is not None
        set_password(row, PASSWORD)
    resp = await client.post("/api/v1/session", json={"name": "Alex", "password": "wrong one!"})
    assert resp.status == 401
    resp = await client.post("/api/v1/session", json={"name": "Nobody", "password": "whatever1"})
    assert resp.status == 401  # an unknown name is not kept: it might be a mistyped password
    resp = await client.post("/api/v1/session", json={"name": "Alex", "password": PASSWORD})
    assert resp.status == 201
    csrf = (await resp.json())["csrf_token"]
    resp = await client.delete("/api/v1/session", headers={"X-CSRF-Token": csrf})
    assert resp.status == 200
    # Codes are configuration: their changes are on record.
    await call(client, admin, "POST", "/api/v1/resolution-codes",
               {"code": "wrong_size", "label": "Wrong size"}, expect=201)
    await call(client, admin, "PATCH", "/api/v1/resolution-codes/wrong_size",
               {"enabled": False})

    # A customer's conversation: Alex holds it; the manager reads it (on record once an hour),
    # Alex reading his own is not; transfer and resolve are on record.
    await call(client, alex, "PUT", "/api/v1/me/availability", {"status": "online"})
    anna = Customer(client, "anna")
    cid = (await anna.say("I want to talk to a person"))["conversation_id"]
    await call(client, alex, "POST", f"/api/v1/conversations/{cid}/reply",
               {"text": "the secret refund plan"}, expect=201)
    await call(client, alex, "GET", f"/api/v1/conversations/{cid}")
    await call(client, boss, "GET", f"/api/v1/conversations/{cid}")
    await call(client, boss, "GET", f"/api/v1/conversations/{cid}")  # same hour: once
    clock.advance(minutes=61)
    await call(client, boss, "GET", f"/api/v1/conversations/{cid}")
    await call(client, alex, "POST", f"/api/v1/conversations/{cid}/transfer", {"agent_id": None})
    await call(client, boss, "POST", f"/api/v1/conversations/{cid}/resolve",
               {"code": "answered"})

    log = await rows(sessions)
    assert [(e.action, e.actor_type, e.actor_id, e.object_type, e.object_id) for e in log] == [
        ("agent.created", "agent", admin_id, "agent", str(alex_id)),
        ("session.login_failed", "anonymous", None, "agent", str(alex_id)),
        ("session.login", "agent", alex_id, "agent", str(alex_id)),
        ("session.logout", "agent", alex_id, "agent", str(alex_id)),
        ("code.created", "agent", admin_id, "resolution_code", "wrong_size"),
        ("code.changed", "agent", admin_id, "resolution_code", "wrong_size"),
        ("conversation.read", "agent", boss_id, "conversation", str(cid)),
        ("conversation.read", "agent", boss_id, "conversation", str(cid)),
        ("conversation.transferred", "agent", alex_id, "conversation", str(cid)),
        ("conversation.resolved", "agent", boss_id, "conversation", str(cid)),
    ]
    assert log[0].actor_name == "Ada" and log[0].details == {
        "name": "Alex", "role": "agent", "capacity": 3}
    assert log[5].details == {"enabled": False}
    assert log[8].details == {"from_agent_id": alex_id, "to_agent_id": None,
                              "assigned_agent_id": None}
    assert log[9].details == {"code": "answered"}
    # Never a text or a secret: not the reply, not the password, not the token.
    dumped = json.dumps([[e.actor_name, e.object_id, e.details] for e in log])
    for secret in ("secret refund plan", PASSWORD, "wrong one!", alex, "Nobody"):
        assert secret not in dumped

    # The admin API: newest first, filters, CSV; other roles get 403.
    page = await call(client, admin, "GET", "/api/v1/audit?limit=2")
    assert page["total"] == 10 and [e["action"] for e in page["items"]] == [
        "conversation.resolved", "conversation.transferred"]
    by_object = await call(client, admin, "GET",
                           f"/api/v1/audit?object_type=conversation&object_id={cid}"
                           f"&actor={boss_id}")
    assert [e["action"] for e in by_object["items"]] == [
        "conversation.resolved", "conversation.read", "conversation.read"]
    sessions_only = await call(client, admin, "GET", "/api/v1/audit?action=session")
    assert {e["action"] for e in sessions_only["items"]} == {
        "session.login", "session.login_failed", "session.logout"}
    later = await call(client, admin, "GET",
                       "/api/v1/audit?from=2026-03-02T10:00:00Z&to=2026-03-03")
    assert {e["action"] for e in later["items"]} == {
        "conversation.read", "conversation.transferred", "conversation.resolved"}
    assert len(later["items"]) == 3
    await call(client, admin, "GET", "/api/v1/audit?colour=red", expect=400)
    await call(client, admin, "GET", "/api/v1/audit?actor_type=robot", expect=400)
    await call(client, boss, "GET", "/api/v1/audit", expect=403)
    await call(client, alex, "GET", "/api/v1/audit.csv", expect=403)
    resp = await client.get("/api/v1/audit.csv?action=conversation", headers=bearer(admin))
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(await resp.text())))
    assert [r["action"] for r in table] == [
        "conversation.resolved", "conversation.transferred", "conversation.read",
        "conversation.read"]
    assert table[0]["actor_name"] == "Boss" and json.loads(table[0]["details"]) == {
        "code": "answered"}


async def test_the_log_is_append_only_in_the_database(
    sessions: async_sessionmaker[AsyncSession], clock: ManualClock
) -> None:
    async with sessions.begin() as session:
        audit.record(session, audit.SYSTEM, "retention.applied", None, None, {"messages": 3},
                     at=clock())
    for change in (update(AuditEntry).values(action="nothing.happened"), delete(AuditEntry)):
        with pytest.raises(DBAPIError, match="append-only"):
            async with sessions.begin() as session:
                await session.execute(change)
    with pytest.raises(DBAPIError, match="append-only"):
        async with sessions.begin() as session:
            await session.execute(text("UPDATE audit_log SET details = NULL"))
    assert [e.action for e in await rows(sessions)] == ["retention.applied"]


def test_details_with_texts_or_secrets_are_refused() -> None:
    for bad in ({"text": "hi"}, {"new_token": "x"}, {"password_hash": "x"},
                {"comment": "x"}, {"long": "x" * 201}, {"nested": {"a": 1}},
                {"payload": "yes:1"}):
        with pytest.raises(audit.AuditDetailsError):
            audit._checked(bad)
    assert audit._checked({"count": 3, "ids": [1, 2], "ok": True}) == {
        "count": 3, "ids": [1, 2], "ok": True}


def test_reading_is_on_record_only_for_someone_else() -> None:
    assert not audit.read_is_audited(7, "assigned", 7)
    assert audit.read_is_audited(8, "assigned", 7)
    assert not audit.read_is_audited(8, "queued", None)  # the queue is everyone's
    assert audit.read_is_audited(8, "resolved", 7)
    assert audit.read_is_audited(8, "bot", None)


async def test_the_command_line_is_on_record_as_cli(
    settings: Settings, sessions: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CAREBOT_DATABASE_URL", settings.database_url)
    for argv in (["agents", "add", "Cleo", "--role", "manager"],
                 ["codes", "add", "lost_parcel", "--label", "Lost parcel", "--no-survey"],
                 ["codes", "set", "lost_parcel", "--reopen", "no"],
                 ["agents", "disable", "Cleo"],
                 ["kb", "import", str(KNOWLEDGE)]):
        assert await asyncio.to_thread(main, argv) == 0, argv
    capsys.readouterr()
    log = await rows(sessions)
    assert [(e.action, e.actor_type, e.object_id) for e in log] == [
        ("agent.created", "cli", log[0].object_id),
        ("code.created", "cli", "lost_parcel"),
        ("code.changed", "cli", "lost_parcel"),
        ("agent.disabled", "cli", log[0].object_id),
        ("knowledge.imported", "cli", None),
    ]
    assert all(e.actor_name.startswith("cli") for e in log)
    assert log[1].details == {"label": "Lost parcel", "survey": False, "may_reopen": True,
                              "enabled": True}
    assert log[2].details == {"may_reopen": False}
    assert log[3].details is None  # disabled: the event itself is the fact
    assert log[4].details is not None and log[4].details["added"] > 0


async def test_canned_replies_and_sites_changes_are_on_record_without_their_texts(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    admin_id, admin = await make_agent(sessions, "Root", "admin")
    await call(client, admin, "POST", "/api/v1/canned-replies",
               {"shortcut": "refund", "text": "Refunds take 5 to 10 days."}, expect=201)
    await call(client, admin, "PATCH", "/api/v1/canned-replies/refund",
               {"text": "Refunds take 3 to 5 days."})
    await call(client, admin, "DELETE", "/api/v1/canned-replies/refund", expect=204)
    site = await call(client, admin, "POST", "/api/v1/sites",
                      {"name": "Shop", "origins": ["https://shop.example"]}, expect=201)
    await call(client, admin, "POST", f"/api/v1/sites/{site['id']}/secret")
    log = await rows(sessions)
    assert [(e.action, e.actor_id, e.object_type) for e in log] == [
        ("canned_reply.created", admin_id, "canned_reply"),
        ("canned_reply.changed", admin_id, "canned_reply"),
        ("canned_reply.deleted", admin_id, "canned_reply"),
        ("site.created", admin_id, "site"),
        ("site.secret_rotated", admin_id, "site"),
    ]
    stored = json.dumps([e.details for e in log])
    assert "Refunds take" not in stored and site["secret"] not in stored
    assert log[1].details == {"shortcut": "refund", "fields": "text"}
