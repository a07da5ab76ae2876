"""The web chat's tables: sites, visitors, and the visitor's feed read from `messages`.

A widget shows the messages table, not a copy of it: the history after a reload, a second tab,
and the catch-up after a lost connection are all "the visitor's messages after id N", in id
order. Live delivery only says "look again" (see `carebot.web.web_chat`).

Why ids give the order: every writer of a conversation's messages holds that conversation's
row lock (the inbound batch, console actions) or is the single SQLite writer, so within a
conversation ids grow in commit order. A message committed out of order anyway (a delayed
survey, written by a timer that locks only the survey) still has its outbox row pending, and
the feed sends pending rows even below the cursor (`undelivered`): nothing is lost, and the
widget places every message by its id.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, bindparam, func, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from carebot.agents import audit
from carebot.channels import web
from carebot.db.models import (
    Agent,
    Contact,
    Conversation,
    Message,
    OutboxMessage,
    WebSite,
    WebVisitor,
)
from carebot.domain.texts import N_
from carebot.routing import people
from carebot.routing.actions import ConsoleError


class SiteError(ValueError):
    """A site change that cannot be made; `status` is the HTTP status that fits."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# --- sites ------------------------------------------------------------------------------------

# A new site's texts: catalog texts, so each visitor reads them in their language as long as
# the site keeps them (a site's own text is shown as written).
DEFAULT_GREETING = N_("Hi! How can we help?")
DEFAULT_OFFLINE_TEXT = N_("We're away right now. Leave a message and we'll reply here.")
EDITABLE = ("name", "origins", "title", "greeting", "colour", "offline_text", "enabled")


def _checked(field: str, value: Any) -> Any:
    try:
        if field == "origins":
            return web.normalize_origins(value)
        if field == "colour":
            return web.check_colour(value)
        if field == "enabled":
            if not isinstance(value, bool):
                raise ValueError("'enabled' must be true or false")
            return value
        limits = {"name": 100, "title": web.MAX_TITLE, "greeting": web.MAX_GREETING,
                  "offline_text": web.MAX_OFFLINE_TEXT}
        return web.check_text(value, field, limits[field], blank_ok=field not in {"name",
                                                                                  "title"})
    except ValueError as exc:
        raise SiteError(400, str(exc)) from None


async def create_site(
    session: AsyncSession, name: str, origins: list[str], now: datetime, **settings: Any
) -> WebSite:
    """Add a site (409 if the name is taken); its key and secret are made here."""
    values = {"name": name, "origins": origins, "title": settings.get("title") or name,
              "greeting": settings.get("greeting") or DEFAULT_GREETING,
              "colour": settings.get("colour") or web.DEFAULT_COLOUR,
              "offline_text": settings.get("offline_text") or DEFAULT_OFFLINE_TEXT,
              "enabled": True}
    checked = {k: _checked(k, v) for k, v in values.items()}
    if await session.scalar(select(WebSite.id).where(WebSite.name == checked["name"])):
        raise SiteError(409, f"a site named {checked['name']!r} exists")
    site = WebSite(key=web.new_site_key(), secret=web.new_secret(), created_at=now,
                   updated_at=now, **checked)
    session.add(site)
    await session.flush()
    return site


async def update_site(
    session: AsyncSession, site_id: int, changes: dict[str, Any], now: datetime
) -> WebSite:
    """Change a site's settings (only the `EDITABLE` ones; 400 for anything else)."""
    unknown = sorted(set(changes) - set(EDITABLE))
    if unknown:
        raise SiteError(400, f"cannot change {', '.join(unknown)}; editable: "
                             f"{', '.join(EDITABLE)}")
    site = await session.get(WebSite, site_id, with_for_update=True)
    if site is None:
        raise SiteError(404, f"site {site_id} not found")
    for field, value in changes.items():
        setattr(site, field, _checked(field, value))
    if "name" in changes and await session.scalar(
        select(WebSite.id).where(WebSite.name == site.name, WebSite.id != site.id)
    ):
        raise SiteError(409, f"a site named {site.name!r} exists")
    site.updated_at = now
    await session.flush()
    return site


async def rotate_secret(session: AsyncSession, site_id: int, now: datetime) -> WebSite:
    """A new identity-verification secret: signatures made with the old one stop working."""
    site = await session.get(WebSite, site_id, with_for_update=True)
    if site is None:
        raise SiteError(404, f"site {site_id} not found")
    site.secret = web.new_secret()
    site.updated_at = now
    await session.flush()
    return site


async def list_sites(session: AsyncSession) -> list[WebSite]:
    """Every site, oldest first."""
    return list(await session.scalars(select(WebSite).order_by(WebSite.id)))


async def find_site(session: AsyncSession, name_or_id: str) -> WebSite | None:
    """A site by its name or id (the CLI's way to name one)."""
    if name_or_id.isascii() and name_or_id.isdigit():
        found = await session.get(WebSite, int(name_or_id))
        if found is not None:
            return found
    return await session.scalar(select(WebSite).where(WebSite.name == name_or_id))


@dataclass(frozen=True)
class SiteView:
    """What the channel needs of a site on every request (cached by the web layer)."""

    id: int
    key: str
    name: str
    origins: tuple[str, ...]
    secret: str
    title: str
    greeting: str
    colour: str
    offline_text: str
    enabled: bool

    def public(self, gettext: Callable[[str], str] = str) -> dict[str, Any]:
        """What the widget may know: never the secret, nor the other origins; its greeting
        and offline text in the visitor's language (`gettext`) when they are the defaults."""
        return {"title": self.title, "greeting": gettext(self.greeting),
                "colour": self.colour, "offline_text": gettext(self.offline_text)}


def site_view(site: WebSite) -> SiteView:
    """The cached form of a site row."""
    return SiteView(site.id, site.key, site.name, tuple(site.origins), site.secret, site.title,
                    site.greeting, site.colour, site.offline_text, site.enabled)


async def site_by_key(session: AsyncSession, key: str) -> SiteView | None:
    """The site a snippet names."""
    site = await session.scalar(select(WebSite).where(WebSite.key == key))
    return None if site is None else site_view(site)


def site_dict(site: WebSite, base_url: str = "", *, secret: bool = False) -> dict[str, Any]:
    """The admin API's view of a site; the secret only when asked for (admins)."""
    out: dict[str, Any] = {
        "id": site.id, "key": site.key, "name": site.name, "origins": list(site.origins),
        "title": site.title, "greeting": site.greeting, "colour": site.colour,
        "offline_text": site.offline_text, "enabled": site.enabled,
        "created_at": site.created_at.isoformat(), "updated_at": site.updated_at.isoformat(),
    }
    if base_url:
        out["snippet"] = web.snippet(base_url, site.key)
    if secret:
        out["secret"] = site.secret
    return out


# --- visitors ---------------------------------------------------------------------------------


def contact_of(conn: Connection, key: str) -> int | None:
    """The id of the visitor's contact, once they have written."""
    return conn.execute(
        select(Contact.id).where(Contact.channel == web.CHANNEL, Contact.external_id == key)
    ).scalar()


# Who links an anonymous chat to the account its visitor then signed in to (audit log).
SIGN_IN = audit.AuditActor("system", None, "web chat sign-in")


async def bring_along(
    session: AsyncSession, anonymous_key: str, signed_in_contact: int, now: datetime
) -> bool:
    """A visitor who chatted anonymously has signed in on the same browser: their anonymous
    customer becomes the same person as the signed-in one, so the console shows both chats
    together. Whether a link was made (not when there was nothing to bring, or when they are
    one person already or one of them was erased)."""
    anonymous = await session.scalar(
        select(Contact.customer_id).where(Contact.channel == web.CHANNEL,
                                          Contact.external_id == anonymous_key))
    signed_in = await session.scalar(
        select(Contact.customer_id).where(Contact.id == signed_in_contact))
    if anonymous is None or signed_in is None or anonymous == signed_in:
        return False
    try:
        await people.link(session, signed_in, anonymous, SIGN_IN, now)
    except ConsoleError:
        return False
    return True


async def note_visitor(
    session: AsyncSession, contact_id: int, site_id: int, user_id: str | None, now: datetime
) -> WebVisitor:
    """The visitor row of a contact, created on first sight; `last_seen_at` moves."""
    visitor = await session.get(WebVisitor, contact_id)
    if visitor is None:
        try:
            async with session.begin_nested():
                visitor = WebVisitor(contact_id=contact_id, site_id=site_id, user_id=user_id,
                                     last_seen_at=now, created_at=now)
                session.add(visitor)
        except IntegrityError:  # another tab's socket made it first
            visitor = await session.get(WebVisitor, contact_id, populate_existing=True)
            assert visitor is not None
    visitor.last_seen_at = now
    return visitor


def read_marks(conn: Connection, contact_id: int) -> tuple[int | None, int | None]:
    """(the visitor's read mark, the agents' read mark) of a contact."""
    row = conn.execute(
        select(WebVisitor.visitor_read_up_to, WebVisitor.agent_read_up_to)
        .where(WebVisitor.contact_id == contact_id)
    ).one_or_none()
    return (None, None) if row is None else (row[0], row[1])


async def mark_read(
    session: AsyncSession, contact_id: int, up_to: int, *, by_agent: bool
) -> bool:
    """Move a read mark forward (never back); whether it moved."""
    column = WebVisitor.agent_read_up_to if by_agent else WebVisitor.visitor_read_up_to
    result = await session.execute(
        update(WebVisitor)
        .where(WebVisitor.contact_id == contact_id,
               (column.is_(None)) | (column < up_to))
        .values({column.key: up_to})
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


async def web_contact(session: AsyncSession, conversation_id: int) -> tuple[int, str] | None:
    """(contact id, key) of a web conversation's visitor; None for other channels."""
    row = (await session.execute(
        select(Contact.id, Contact.external_id)
        .join(Conversation, Conversation.contact_id == Contact.id)
        .where(Conversation.id == conversation_id, Conversation.channel == web.CHANNEL)
    )).one_or_none()
    return None if row is None else (int(row[0]), str(row[1]))


def latest_conversation(conn: Connection, contact_id: int) -> tuple[int, str, int | None] | None:
    """(id, status, assigned agent) of the visitor's latest conversation."""
    row = conn.execute(
        select(Conversation.id, Conversation.status, Conversation.assigned_agent_id)
        .where(Conversation.contact_id == contact_id)
        .order_by(Conversation.id.desc()).limit(1)
    ).one_or_none()
    return None if row is None else (int(row[0]), str(row[1]), row[2])


def agents_online(conn: Connection) -> bool:
    """Whether any enabled agent is online (else the widget shows the site's offline text)."""
    return bool(conn.execute(
        select(func.count()).select_from(Agent)
        .where(Agent.status == "online", Agent.disabled.is_(False))
    ).scalar())


# --- the feed ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedItem:
    """One message as the widget shows it."""

    id: int
    conversation_id: int
    direction: str
    sender: str
    text: str
    buttons: list[Any] | None
    payload: str | None
    external_id: str | None
    agent: str | None
    at: datetime

    def to_dict(self) -> dict[str, Any]:
        """The widget's JSON: `from` is visitor, bot, agent or system."""
        out: dict[str, Any] = {
            "id": self.id, "conversation_id": self.conversation_id,
            "from": "visitor" if self.direction == "in" else self.sender,
            "text": self.text, "at": self.at.isoformat(),
        }
        if self.buttons:
            out["buttons"] = [{"title": b["title"], "payload": b["payload"]}
                              for b in self.buttons]
        if self.direction == "in":
            out["cid"] = web.cid_of(self.external_id)
            if self.payload:
                out["payload"] = self.payload
        if self.agent:
            out["agent"] = self.agent
        return out


def _feed(contact_id: int) -> Any:
    return _FEED.params(contact_id=contact_id)


_FEED = (
    select(Message.id, Message.conversation_id, Message.direction, Message.sender,
           Message.text, Message.buttons, Message.payload, Message.external_id,
           Agent.name, Message.created_at)
    .join(Conversation, Conversation.id == Message.conversation_id)
    .outerjoin(Agent, Agent.id == Message.agent_id)
    .where(Conversation.contact_id == bindparam("contact_id"),
           Message.direction.in_(("in", "out")))
)
# Built once: a catch-up runs for every message a visitor sends, and building a select (and
# its cache key) costs more than running it.
_AFTER = _FEED.where(Message.id > bindparam("after_id")).order_by(Message.id).limit(
    bindparam("limit", type_=Integer, literal_execute=True))


def _items(rows: Sequence[Any]) -> list[FeedItem]:
    return [FeedItem(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9]) for r in rows]


def after(conn: Connection, contact_id: int, after_id: int, limit: int) -> list[FeedItem]:
    """The visitor's messages after `after_id`, oldest first, at most `limit`."""
    rows = conn.execute(
        _AFTER, {"contact_id": contact_id, "after_id": after_id, "limit": limit}).all()
    return _items(rows)


def before(
    conn: Connection, contact_id: int, before_id: int | None, limit: int
) -> tuple[list[FeedItem], bool]:
    """The `limit` messages before `before_id` (None: the latest), oldest first, and whether
    there are older ones."""
    stmt = _feed(contact_id)
    if before_id is not None:
        stmt = stmt.where(Message.id < before_id)
    rows = conn.execute(stmt.order_by(Message.id.desc()).limit(limit + 1)).all()
    more = len(rows) > limit
    return list(reversed(_items(rows[:limit]))), more


def by_ids(conn: Connection, contact_id: int, ids: Sequence[int]) -> list[FeedItem]:
    """These messages of the visitor, oldest first."""
    if not ids:
        return []
    rows = conn.execute(
        _feed(contact_id).where(Message.id.in_(list(ids))).order_by(Message.id)
    ).all()
    return _items(rows)


def undelivered(conn: Connection, key: str) -> set[int]:
    """Ids of messages to the visitor whose outbox rows wait for a widget."""
    return set(conn.scalars(
        select(OutboxMessage.message_id).where(
            OutboxMessage.channel == web.CHANNEL, OutboxMessage.recipient == key,
            OutboxMessage.status.in_(("pending", "sending")),
            OutboxMessage.message_id.is_not(None),
        )
    ))


async def mark_delivered(
    session: AsyncSession, key: str, message_ids: Sequence[int], now: datetime
) -> int:
    """A widget showed these messages: their outbox rows are `sent` (a worker's claim on one
    is dropped: its own outcome is then not written)."""
    if not message_ids:
        return 0
    result = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.channel == web.CHANNEL, OutboxMessage.recipient == key,
               OutboxMessage.message_id.in_(list(message_ids)),
               OutboxMessage.status.in_(("pending", "sending")))
        .values(status="sent", sent_at=now, claim_token=None, claimed_until=None,
                last_error=None)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
