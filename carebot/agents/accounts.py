"""Agents, managers and admins: creation, bearer-token authentication, availability."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from carebot.db.models import Agent

ROLES = ("agent", "manager", "admin")
STATUSES = ("online", "away", "offline")
TOKEN_PREFIX = "cbt_"
_TOKEN = re.compile(r"[A-Za-z0-9_-]+")


class AgentError(ValueError):
    """An agent cannot be created or changed as asked."""


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
    if role not in ROLES:
        raise AgentError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if not 0 <= capacity <= 1000:
        raise AgentError(f"capacity must be between 0 and 1000, got {capacity}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    agent = Agent(
        name=name, role=role, capacity=capacity, token_hash=hash_token(token),
        # Offline until a console connects; presence then brings the agent online.
        status="offline", status_auto=True, disabled=False, created_at=now,
    )
    session.add(agent)
    try:
        await session.flush()
    except IntegrityError:
        raise AgentError(f"an agent named {name!r} already exists") from None
    return agent, token


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
