"""Agents, managers and admins: creation, bearer-token authentication, availability."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from carebot.db.models import Agent, WebSession

ROLES = ("agent", "manager", "admin")
STATUSES = ("online", "away", "offline")
MAX_CAPACITY = 1000
TOKEN_PREFIX = "cbt_"
_TOKEN = re.compile(r"[A-Za-z0-9_-]+")


class AgentError(ValueError):
    """An agent cannot be created or changed as asked; `status` is the HTTP status that fits
    (400 bad input, 404 no such agent, 409 conflicts with the agents there are)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def hash_token(token: str) -> str:
    """SHA-256 of the token; tokens are 256-bit random, so a fast hash is enough."""
    return hashlib.sha256(token.encode()).hexdigest()


async def create_agent(
    session: AsyncSession, name: str, role: str, capacity: int, now: datetime
) -> tuple[Agent, str]:
    """Create an agent; return it with its bearer token (shown once, only the hash is stored)."""
    name = name.strip()
    if not name or len(name) > 100:
        raise AgentError("name must be 1 to 100 characters")
    _check_role(role)
    _check_capacity(capacity)
    token = new_token()
    agent = Agent(
        name=name, role=role, capacity=capacity, token_hash=hash_token(token),
        # Offline until a console connects; presence then brings the agent online.
        status="offline", status_auto=True, disabled=False, created_at=now,
    )
    session.add(agent)
    try:
        await session.flush()
    except IntegrityError:
        raise AgentError(f"an agent named {name!r} already exists", 409) from None
    return agent, token


def new_token() -> str:
    """A fresh bearer token (256 random bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def _check_role(role: object) -> None:
    if role not in ROLES:
        raise AgentError(f"role must be one of {', '.join(ROLES)}, got {role!r}")


def _check_capacity(capacity: object) -> None:
    if not isinstance(capacity, int) or isinstance(capacity, bool) or not (
        0 <= capacity <= MAX_CAPACITY
    ):
        raise AgentError(f"capacity must be an integer from 0 to {MAX_CAPACITY}, got "
                         f"{capacity!r}")


async def authenticate(session: AsyncSession, token: str) -> Agent | None:
    """The enabled agent holding this token, or None."""
    # Tokens are URL-safe ASCII; anything else (a header of non-UTF-8 bytes among them) is
    # simply not a token, never an encoding error.
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200 or not _TOKEN.fullmatch(token):
        return None
    agent = await session.scalar(select(Agent).where(Agent.token_hash == hash_token(token)))
    if agent is None or agent.disabled:
        return None
    return agent


async def find_agent(session: AsyncSession, name_or_id: str) -> Agent | None:
    """An agent by name, or by numeric id."""
    agent = await session.scalar(select(Agent).where(Agent.name == name_or_id))
    if agent is None and re.fullmatch(r"[0-9]{1,18}", name_or_id):
        agent = await session.get(Agent, int(name_or_id))
    return agent


async def list_agents(session: AsyncSession) -> list[Agent]:
    """Every agent, by id."""
    return list(await session.scalars(select(Agent).order_by(Agent.id)))


async def find_agent_or_fail(session: AsyncSession, name_or_id: str) -> Agent:
    """`find_agent`, or an AgentError (404) naming what was asked for."""
    agent = await find_agent(session, name_or_id)
    if agent is None:
        raise AgentError(f"no agent named {name_or_id!r} (nor with that id)", 404)
    return agent


async def lock_agent(session: AsyncSession, agent_id: int) -> Agent:
    """The agent's row, locked for a change (FOR NO KEY UPDATE: inserts that merely
    reference the agent are not blocked)."""
    agent = await session.scalar(
        select(Agent).where(Agent.id == agent_id).with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )
    if agent is None:
        raise AgentError(f"agent {agent_id} not found", 404)
    return agent


async def keep_an_admin(session: AsyncSession, agent: Agent) -> None:
    """Refuse (409) to demote or disable the last enabled admin: nobody could manage the
    agents any more, over the API or the console."""
    if agent.role != "admin" or agent.disabled:
        return
    others = await session.scalar(
        select(func.count()).select_from(Agent).where(
            Agent.role == "admin", Agent.disabled.is_(False), Agent.id != agent.id)
    )
    if not others:
        raise AgentError(f"{agent.name} is the last enabled admin; make another agent admin "
                         "first", 409)


async def change_agent(
    session: AsyncSession, agent: Agent, *, role: str | None = None,
    capacity: int | None = None,
) -> Agent:
    """Set the agent's role and/or capacity (None: unchanged). A smaller capacity takes
    nothing away: conversations beyond it stay, and no new ones come until there is room."""
    if role is not None:
        _check_role(role)
        if role != "admin":
            await keep_an_admin(session, agent)
        agent.role = role
    if capacity is not None:
        _check_capacity(capacity)
        agent.capacity = capacity
    await session.flush()
    return agent


def enable_agent(agent: Agent) -> None:
    """Let a disabled agent in again: their token and password work again; they start
    offline, with no conversations (those went back to the queue when they were disabled)."""
    agent.disabled = False
    agent.status = "offline"


def rotate_token(agent: Agent) -> str:
    """Give the agent a new bearer token (returned once); the old one stops working."""
    token = new_token()
    agent.token_hash = hash_token(token)
    return token


async def revoke_web_sessions(session: AsyncSession, agent_id: int) -> int:
    """End every console session of the agent (they log in again); how many there were."""
    result = await session.execute(delete(WebSession).where(WebSession.agent_id == agent_id))
    return int(getattr(result, "rowcount", 0) or 0)
