"""The browser pages (console, dashboard) and the headers every response carries."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).parent / "static"
# Scripts and styles only from carebot itself, no inline code, nothing framed; the console's
# WebSocket is same-origin ('self' covers ws: and wss: on this host).
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Headers on every response: CSP, no sniffing, no framing, no referrer leaks."""
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    if request.path.startswith("/api/"):
        response.headers.setdefault("Cache-Control", "no-store")


def _page(name: str) -> web.FileResponse:
    response = web.FileResponse(STATIC / name)
    # The shell is tiny and changes with releases; scripts it loads are revalidated too.
    response.headers["Cache-Control"] = "no-cache"
    return response


async def root(_request: web.Request) -> web.StreamResponse:
    """GET /: people land on the console."""
    raise web.HTTPFound("/console")


async def console_page(_request: web.Request) -> web.StreamResponse:
    """GET /console (and /console/invite): the agents' single-page console."""
    return _page("console/index.html")


async def dashboard_page(_request: web.Request) -> web.StreamResponse:
    """GET /dashboard: the managers' dashboard (its data calls need the manager or admin role)."""
    return _page("dashboard/index.html")


def add_routes(app: web.Application) -> None:
    """Register the pages and their static files."""
    app.router.add_get("/", root)
    app.router.add_get("/console", console_page)
    app.router.add_get("/console/invite", console_page)
    app.router.add_get("/dashboard", dashboard_page)
    app.router.add_static("/static/", STATIC)
    app.on_response_prepare.append(security_headers)
