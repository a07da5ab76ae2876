"""Browser sessions: the session cookie, CSRF tokens and Origin checks for the browser pages.

API clients keep sending `Authorization: Bearer …`; browsers get an HttpOnly, SameSite=Strict
cookie (Secure over https) and send the session's CSRF token in `X-CSRF-Token` with every
state change. A request whose Origin is another site is refused whatever it carries.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from aiohttp import web

from carebot.agents.logins import Lifetime, Login
from carebot.db.models import WebSession
from carebot.settings import Settings
from carebot.web.keys import SETTINGS

COOKIE = "carebot_session"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# The browser session a request was authenticated with (absent for bearer tokens).
WEB_SESSION = web.RequestKey("web_session", WebSession)


def lifetime(settings: Settings) -> Lifetime:
    """Session lifetimes from the settings."""
    return Lifetime(idle=timedelta(minutes=settings.session_idle_minutes),
                    absolute=timedelta(hours=settings.session_max_hours))


def origin_allowed(request: web.Request) -> bool:
    """Whether the request's Origin (if any) is this service: its own host or the public URL."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    public = request.app[SETTINGS].public_url
    if public and origin.rstrip("/") == _origin_of(public):
        return True
    parts = urlsplit(origin)
    return parts.scheme in {"http", "https"} and parts.netloc == request.host


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _secure(request: web.Request) -> bool:
    return request.secure or request.app[SETTINGS].public_url.startswith("https://")


def set_cookie(request: web.Request, response: web.Response, login: Login) -> None:
    response.set_cookie(
        COOKIE, login.token, httponly=True, samesite="Strict", secure=_secure(request),
        path="/", max_age=int(request.app[SETTINGS].session_max_hours * 3600),
    )
