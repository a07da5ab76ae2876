"""Browser sessions of agents, managers and admins: opened by a password, kept as a hash."""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from carebot.agents.accounts import hash_token
from carebot.agents.passwords import verify_password
from carebot.db.models import Agent, WebSession

SESSION_PREFIX = "cbs_"
_TOKEN = re.compile(r"cbs_[A-Za-z0-9_-]{20,100}")
# last_seen_at is written at most this often: a request does not cost a write each time.
TOUCH_EVERY = timedelta(minutes=1)


@dataclass(frozen=True)
class Lifetime:
    """How long a session lives without use, and at most."""

    idle: timedelta
    absolute: timedelta


@dataclass(frozen=True)
class Login:
    """An open session: the cookie's token (shown once) and the CSRF token pages send back."""

    agent: Agent
    token: str
    csrf_token: str


async def log_in(
    session: AsyncSession, name: str, password: str, now: datetime, lifetime: Lifetime
) -> Login | None:
    """Open a session for the enabled agent with this name and password, or None."""
    agent = await session.scalar(select(Agent).where(Agent.name == name.strip()))
    # verify_password runs the KDF even without an agent, so timing does not tell names apart.
    if not verify_password(agent.password_hash if agent else None, password):
        return None
    if agent is None or agent.disabled:
        return None
    # The agent's sessions that ran out go now (each login cleans up after the last ones).
    await session.execute(delete(WebSession).where(
        WebSession.agent_id == agent.id,
        (WebSession.expires_at <= now) | (WebSession.last_seen_at <= now - lifetime.idle),
    ))
    token = SESSION_PREFIX + secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    session.add(WebSession(
        token_hash=hash_token(token), agent_id=agent.id, csrf_token=csrf, created_at=now,
        last_seen_at=now, expires_at=now + lifetime.absolute,
    ))
    await session.flush()
    return Login(agent, token, csrf)


async def find_session(
    session: AsyncSession, token: str, now: datetime, lifetime: Lifetime
) -> tuple[WebSession, Agent] | None:
    """The live session for this cookie and its enabled agent, or None (expired, revoked)."""
    if not _TOKEN.fullmatch(token):
        return None
    row = (await session.execute(
        select(WebSession, Agent)
        .join(Agent, Agent.id == WebSession.agent_id)
        .where(WebSession.token_hash == hash_token(token))
    )).one_or_none()
    if row is None:
        return None
    web_session, agent = row[0], row[1]
    if (agent.disabled or web_session.expires_at <= now
            or web_session.last_seen_at + lifetime.idle <= now):
        return None
    return web_session, agent


def needs_touch(web_session: WebSession, now: datetime) -> bool:
    """Whether this request should move the session's idle clock (once a minute at most)."""
    return now - web_session.last_seen_at >= TOUCH_EVERY


async def touch(session: AsyncSession, web_session: WebSession, now: datetime) -> None:
    """Record use of the session now: it stays alive another idle period."""
    await session.execute(
        update(WebSession).where(WebSession.id == web_session.id).values(last_seen_at=now)
    )


def csrf_matches(web_session: WebSession, sent: str) -> bool:
    """Whether the header carries this session's CSRF token (compared in constant time)."""
    return hmac.compare_digest(web_session.csrf_token.encode(), sent.encode("utf-8", "replace"))


async def log_out(session: AsyncSession, token: str) -> None:
    """End the session this cookie names (nothing happens if there is none)."""
    if _TOKEN.fullmatch(token):
        await session.execute(delete(WebSession).where(WebSession.token_hash == hash_token(token)))


async def revoke_sessions(session: AsyncSession, agent_id: int) -> None:
    """End every browser session of this agent (disabled, password reset)."""
    await session.execute(delete(WebSession).where(WebSession.agent_id == agent_id))

