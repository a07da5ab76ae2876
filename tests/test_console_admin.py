"""What admins and managers change: agents (role, capacity, disabled, token, password
invite) over the API and the command line, and canned replies."""

from __future__ import annotations

import asyncio
import io
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from carebot.agents.accounts import find_agent
from carebot.agents.passwords import accept_invite, invite_link, set_password, verify_password
from carebot.cli import main
from carebot.db.models import Agent, Touchpoint, WebSession
from carebot.domain.clock import ManualClock
from carebot.settings import Settings
from tests.conftest import START
from tests.helpers import Client, Console, Customer, agent, conforms, conv, create_app

PASSWORD = "correct horse battery"


@pytest.fixture
async def client(
    aiohttp_client: Any, settings: Settings, clock: ManualClock, starter_kb: None
) -> Client:
    quiet = replace(settings, run_timers=False)
    return await aiohttp_client(create_app(quiet, clock))  # type: ignore[no-any-return]


async def _logged_in(sessions: async_sessionmaker[AsyncSession], agent_id: int) -> None:
    """The agent has a console session (the login itself is the console's business)."""
    async with sessions.begin() as session:
        session.add(WebSession(token_hash=f"s{agent_id}", agent_id=agent_id, csrf_token="c",
                               created_at=START, last_seen_at=START,
                               expires_at=START + timedelta(hours=8)))


async def _sessions_of(sessions: async_sessionmaker[AsyncSession], agent_id: int) -> int:
    async with sessions() as session:
        return int(await session.scalar(
            select(func.count()).select_from(WebSession).where(WebSession.agent_id == agent_id)
        ) or 0)


async def test_admins_change_role_and_capacity_disable_and_enable_agents(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    root = await agent(client, sessions, "Root", "admin")
    amy = await agent(client, sessions, "Amy")
    await amy.online()
    await _logged_in(sessions, amy.id)
    cid = (await Customer(client, "adm1").say("/human"))["conversation_id"]
    assert (await conv(sessions, cid)).assigned_agent_id == amy.id

    changed = await root.call("PATCH", "/api/v1/agents/Amy", {"role": "manager", "capacity": 5})
    conforms("Agent", changed)
    assert (changed["role"], changed["capacity"], changed["open_conversations"]) == (
        "manager", 5, 1)

    gone = await root.call("PATCH", f"/api/v1/agents/{amy.id}", {"disabled": True})
    assert (gone["disabled"], gone["status"], gone["open_conversations"]) == (True, "offline", 0)
    await amy.call("GET", "/api/v1/me", expect=401)
    assert await _sessions_of(sessions, amy.id) == 0  # logged out of the console too
    back = await conv(sessions, cid)
    assert (back.status, back.released_by_agent_id) == ("queued", amy.id)
    async with sessions() as session:
        kinds = list(await session.scalars(
            select(Touchpoint.kind).where(Touchpoint.conversation_id == cid)))
    assert kinds[-1] == "requeued"

    again = await root.call("PATCH", "/api/v1/agents/Amy", {"disabled": False})
    assert (again["disabled"], again["status"]) == (False, "offline")
    await amy.call("GET", "/api/v1/me")

    # Somebody must stay able to manage the agents.
    refused = await root.call("PATCH", "/api/v1/agents/Root", {"role": "agent"}, expect=409)
    assert "last enabled admin" in refused["error"]["message"]
    await root.call("PATCH", "/api/v1/agents/Root", {"disabled": True}, expect=409)
    for bad in ({"role": "boss"}, {"capacity": -1}, {"capacity": "3"}, {"capacity": True},
                {"disabled": "yes"}, {"colour": "red"}, {}):
        await root.call("PATCH", "/api/v1/agents/Amy", bad, expect=400)
    await root.call("PATCH", "/api/v1/agents/Nobody", {"capacity": 1}, expect=404)
    await root.call("PATCH", "/api/v1/agents/%00", {"capacity": 1}, expect=404)
    await amy.call("PATCH", "/api/v1/agents/Amy", {"capacity": 9}, expect=403)  # a manager


async def test_more_capacity_pulls_a_waiting_conversation_at_once(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    root = await agent(client, sessions, "Root", "admin")
    full = await agent(client, sessions, "Full", capacity=0, status="online")
    cid = (await Customer(client, "cap1").say("/human"))["conversation_id"]
    assert (await conv(sessions, cid)).status == "queued"
    await root.call("PATCH", f"/api/v1/agents/{full.id}", {"capacity": 1})
    assert (await conv(sessions, cid)).assigned_agent_id == full.id


async def test_a_new_agent_gets_a_token_and_an_invite_once(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    root = await agent(client, sessions, "Root", "admin")
    made = await root.call("POST", "/api/v1/agents", {"name": "Nia", "capacity": 2}, 201)
    conforms("NewAgent", made)
    assert made["invite"]["url"] == f"/console/invite#{made['invite']['token']}"
    assert made["password_set"] is False
    await Console(client, made["id"], made["token"]).call("GET", "/api/v1/me")
    async with sessions.begin() as session:
        nia = await accept_invite(session, made["invite"]["token"], PASSWORD, START)
        assert verify_password(nia.password_hash, PASSWORD)
    await root.call("POST", "/api/v1/agents", {"name": "Nia"}, 409)
    await root.call("POST", "/api/v1/agents", {"name": "Ola", "team": "x"}, 400)
    await root.call("POST", "/api/v1/agents", {"name": "Ola", "capacity": 1001}, 400)
    listed = await root.call("GET", "/api/v1/agents")
    assert [a["password_set"] for a in listed["items"]] == [False, True]


async def test_a_token_rotates_and_a_password_resets_with_a_new_invite(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    root = await agent(client, sessions, "Root", "admin")
    bo = await agent(client, sessions, "Bo")
    rotated = await root.call("POST", f"/api/v1/agents/{bo.id}/token")
    conforms("AgentWithToken", rotated)
    await bo.call("GET", "/api/v1/me", expect=401)  # the old token stopped working
    await Console(client, bo.id, rotated["token"]).call("GET", "/api/v1/me")

    async with sessions.begin() as session:
        row = await session.get(Agent, bo.id)
        assert row is not None
        set_password(row, PASSWORD)
    await _logged_in(sessions, bo.id)
    first = await root.call("POST", "/api/v1/agents/Bo/invite")
    second = await root.call("POST", "/api/v1/agents/Bo/invite")
    conforms("AgentWithInvite", second)
    assert second["password_set"] is False
    assert await _sessions_of(sessions, bo.id) == 0
    async with sessions.begin() as session:
        row = await session.get(Agent, bo.id)
        assert row is not None and not verify_password(row.password_hash, PASSWORD)
    with pytest.raises(ValueError, match="not valid"):  # only the newest invite works
        async with sessions.begin() as session:
            await accept_invite(session, first["invite"]["token"], PASSWORD, START)
    async with sessions.begin() as session:
        await accept_invite(session, second["invite"]["token"], PASSWORD, START)

    await root.call("PATCH", "/api/v1/agents/Bo", {"disabled": True})
    await root.call("POST", "/api/v1/agents/Bo/invite", expect=409)
    await root.call("POST", "/api/v1/agents/999999/token", expect=404)


def test_an_invite_link_is_absolute_with_a_public_url() -> None:
    assert invite_link("cbi_x") == "/console/invite#cbi_x"
    assert invite_link("cbi_x", "https://help.example/") == (
        "https://help.example/console/invite#cbi_x")


async def test_managers_keep_canned_replies_and_every_agent_reads_them(
    client: Client, sessions: async_sessionmaker[AsyncSession], clock: ManualClock,
    settings: Settings,
) -> None:
    boss = await agent(client, sessions, "Boss", "manager")
    ann = await agent(client, sessions, "Ann")
    refund = await boss.call("POST", "/api/v1/canned-replies", {
        "shortcut": "refund", "title": "Refund issued",
        "text": "Your refund is on its way: 3-5 working days."}, 201)
    conforms("CannedReply", refund)
    assert refund["created_by"] == boss.id
    hello = await boss.call("POST", "/api/v1/canned-replies",
                            {"shortcut": "hello", "text": "Hi! How can I help?"}, 201)
    assert hello["title"] == "hello"
    await boss.call("POST", "/api/v1/canned-replies", {"shortcut": "refund", "text": "x"}, 409)
    for bad in ({"shortcut": "Refund!", "text": "x"}, {"shortcut": "a" * 33, "text": "x"},
                {"shortcut": "ok", "text": "x", "title": "t" * 101}, {"shortcut": "ok"},
                {"shortcut": "ok", "text": "   "}, {"shortcut": "ok", "text": "x", "tag": 1}):
        await boss.call("POST", "/api/v1/canned-replies", bad, 400)
    await boss.call("POST", "/api/v1/canned-replies",
                    {"shortcut": "long", "text": "x" * (settings.max_text_chars + 1)}, 413)
    await ann.call("POST", "/api/v1/canned-replies", {"shortcut": "mine", "text": "x"}, 403)

    listed = await ann.call("GET", "/api/v1/canned-replies")
    assert [c["shortcut"] for c in listed["items"]] == ["hello", "refund"]

    clock.advance(minutes=5)
    changed = await boss.call("PATCH", f"/api/v1/canned-replies/{refund['id']}",
                              {"text": "Refunded: 3-5 working days."})
    assert changed["text"] == "Refunded: 3-5 working days."
    assert changed["updated_at"] > changed["created_at"]
    await boss.call("PATCH", "/api/v1/canned-replies/refund", {"shortcut": "hello"}, 409)
    await boss.call("PATCH", "/api/v1/canned-replies/refund", {}, 400)
    await boss.call("PATCH", "/api/v1/canned-replies/refund", {"colour": "red"}, 400)
    await boss.call("PATCH", "/api/v1/canned-replies/nope", {"text": "x"}, 404)
    await ann.call("DELETE", "/api/v1/canned-replies/refund", expect=403)
    await boss.call("DELETE", "/api/v1/canned-replies/refund", expect=204)
    await boss.call("DELETE", f"/api/v1/canned-replies/{refund['id']}", expect=404)
    assert [c["shortcut"] for c in (await ann.call("GET", "/api/v1/canned-replies"))["items"]
            ] == ["hello"]


async def _cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def test_the_command_line_manages_agents_by_name(
    client: Client, sessions: async_sessionmaker[AsyncSession], database_url: str,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CAREBOT_DATABASE_URL", database_url)
    monkeypatch.setenv("CAREBOT_PUBLIC_URL", "https://help.example")
    assert await _cli("agents", "add", "zed", "--capacity", "2") == 0
    out = capsys.readouterr().out
    token = next(x for x in out.splitlines() if x.startswith("token: ")).removeprefix("token: ")
    invite = next(x for x in out.splitlines() if x.startswith("invite: "))
    assert invite.startswith("invite: https://help.example/console/invite#cbi_")
    zed = Console(client, 0, token)
    await zed.call("GET", "/api/v1/me")

    assert await _cli("agents", "set", "zed", "--role", "manager", "--capacity", "4") == 0
    me = await zed.call("GET", "/api/v1/me")
    assert (me["role"], me["capacity"]) == ("manager", 4)
    assert await _cli("agents", "set", "zed") == 2
    assert await _cli("agents", "set", "ghost", "--capacity", "1") == 2
    assert "no agent named 'ghost'" in capsys.readouterr().err

    assert await _cli("agents", "rotate-token", "zed") == 0
    new = capsys.readouterr().out.splitlines()[0].removeprefix("token: ")
    await zed.call("GET", "/api/v1/me", expect=401)
    zed = Console(client, 0, new)
    await zed.call("GET", "/api/v1/me")

    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert await _cli("agents", "set-password", "zed", "--password-stdin") == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert await _cli("agents", "set-password", "zed", "--password-stdin") == 2
    assert "at least 10 characters" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # no terminal, no --password-stdin
    assert await _cli("agents", "set-password", "zed") == 2
    async with sessions() as session:
        row = await find_agent(session, "zed")
        assert row is not None and verify_password(row.password_hash, PASSWORD)

    assert await _cli("agents", "invite", "zed") == 0
    assert "invite: https://help.example/console/invite#cbi_" in capsys.readouterr().out
    async with sessions() as session:
        row = await find_agent(session, "zed")
        assert row is not None and row.password_hash is None

    assert await _cli("agents", "disable", "zed") == 0
    await zed.call("GET", "/api/v1/me", expect=401)
    assert await _cli("agents", "enable", "zed") == 0
    await zed.call("GET", "/api/v1/me")

    assert await _cli("stats", "--agent", "zed", "--json") == 0
    assert await _cli("stats", "--agent", "ghost") == 2


async def test_a_password_typed_at_the_prompt_is_asked_twice(
    client: Client, sessions: async_sessionmaker[AsyncSession], database_url: str,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    await agent(client, sessions, "Yan")
    monkeypatch.setenv("CAREBOT_DATABASE_URL", database_url)
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    typed = iter([PASSWORD, PASSWORD + "!"])
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(typed))
    assert await _cli("agents", "set-password", "Yan") == 2
    assert "differ" in capsys.readouterr().err
    typed = iter([PASSWORD, PASSWORD])
    assert await _cli("agents", "set-password", "Yan") == 0
    async with sessions() as session:
        row = await find_agent(session, "Yan")
        assert row is not None and verify_password(row.password_hash, PASSWORD)


async def test_the_command_line_manages_canned_replies(
    client: Client, database_url: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], sessions: async_sessionmaker[AsyncSession],
) -> None:
    monkeypatch.setenv("CAREBOT_DATABASE_URL", database_url)
    assert await _cli("canned", "add", "thanks", "--title", "Thanks",
                      "--text", "Thanks for waiting!") == 0
    assert await _cli("canned", "add", "thanks", "--text", "again") == 2
    assert "taken" in capsys.readouterr().err
    assert await _cli("canned", "list") == 0
    assert capsys.readouterr().out.split()[:3] == ["/thanks", "Thanks", "Thanks"]
    reader = await agent(client, sessions, "Reader")
    assert len((await reader.call("GET", "/api/v1/canned-replies"))["items"]) == 1
    assert await _cli("canned", "remove", "thanks") == 0
    assert await _cli("canned", "remove", "thanks") == 2
