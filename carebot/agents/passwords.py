"""Console passwords (argon2id) and the one-time invites that let an agent choose one."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from carebot.agents.accounts import AgentError, hash_token, revoke_web_sessions
from carebot.db.models import Agent

MIN_PASSWORD = 10
MAX_PASSWORD = 256
INVITE_PREFIX = "cbi_"
INVITE_LIFETIME = timedelta(days=7)
# The console page that takes an invite; the token follows in the URL fragment.
INVITE_PATH = "/console/invite"
# argon2id with the library's defaults (RFC 9106's second recommendation: 64 MiB, t=3).
_HASHER = PasswordHasher()
# Verified when an unknown name logs in, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


def check_password_rules(password: str) -> None:
    """Refuse a password too short or too long to be one (AgentError says why)."""
    if len(password) < MIN_PASSWORD:
        raise AgentError(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise AgentError(f"a password has at most {MAX_PASSWORD} characters")


def hash_password(password: str) -> str:
    """The argon2id hash to store for this password."""
    check_password_rules(password)
    return _HASHER.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """Whether the password matches the stored hash (always False without one)."""
    if len(password) > MAX_PASSWORD:
        return False
    try:
        return _HASHER.verify(stored or _DUMMY_HASH, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def set_password(agent: Agent, password: str) -> None:
    """Give the agent a new password; any pending invite is used up."""
    agent.password_hash = hash_password(password)
    agent.invite_hash = None
    agent.invite_expires_at = None


def create_invite(agent: Agent, now: datetime) -> str:
    """A one-time token (valid 7 days) with which the agent sets a password; shown once."""
    token = INVITE_PREFIX + secrets.token_urlsafe(32)
    agent.invite_hash = hash_token(token)
    agent.invite_expires_at = now + INVITE_LIFETIME
    return token


async def accept_invite(
    session: AsyncSession, token: str, password: str, now: datetime
) -> Agent:
    """Set the password of the agent this invite belongs to (AgentError if it is not valid)."""
    if not token.startswith(INVITE_PREFIX) or len(token) > 200:
        raise AgentError("this invite link is not valid")
    agent = await session.scalar(
        select(Agent).where(Agent.invite_hash == hash_token(token)).with_for_update()
    )
    if (agent is None or agent.disabled or agent.invite_expires_at is None
            or agent.invite_expires_at <= now):
        raise AgentError("this invite link is not valid or has expired; ask an admin for a new one")
    set_password(agent, password)
    return agent


async def reset_with_invite(session: AsyncSession, agent: Agent, now: datetime) -> str:
    """Clear the agent's password, end their console sessions (whoever knew the old one is
    out) and return a new one-time invite with which they choose another."""
    agent.password_hash = None
    await revoke_web_sessions(session, agent.id)
    return create_invite(agent, now)


async def change_password(session: AsyncSession, agent: Agent, password: str) -> None:
    """Set the agent's password (an admin's `carebot agents set-password`); their console
    sessions end, so they log in again with it."""
    set_password(agent, password)
    await revoke_web_sessions(session, agent.id)


def invite_link(token: str, base_url: str = "") -> str:
    """Where an invite is accepted: the console's invite page with the token in the
    fragment (never sent to a server, so never in an access log); absolute when the public
    base URL is configured (`CAREBOT_PUBLIC_URL`), else relative to the service."""
    return f"{base_url.rstrip('/')}{INVITE_PATH}#{token}"
