"""Resolution codes API: everyone reads the list (the console offers it), admins change it."""

from __future__ import annotations

from aiohttp import web

from carebot.agents import audit
from carebot.agents.codes import CodeError, add_code, change_code, code_dict, list_codes
from carebot.web.auth import ALL_ROLES, current_agent, roles
from carebot.web.errors import ApiError, read_json_object
from carebot.web.keys import CLOCK, SESSIONS

FIELDS = {"code", "label", "survey", "may_reopen", "enabled"}


def _check_fields(body: dict[str, object], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(400, f"unknown field(s): {', '.join(unknown)}; allowed: "
                            f"{', '.join(sorted(allowed))}")


def _flag(body: dict[str, object], name: str, default: bool | None) -> bool | None:
    value = body.get(name, default)
    if value is not None and not isinstance(value, bool):
        raise ApiError(400, f"'{name}' must be true or false")
    return value


@roles(*ALL_ROLES)
async def get_codes(request: web.Request) -> web.Response:
    """GET /api/v1/resolution-codes: the managed list."""
    async with request.app[SESSIONS]() as session:
        rows = await list_codes(session)
    return web.json_response({"items": [code_dict(r) for r in rows]})


@roles("admin")
async def post_code(request: web.Request) -> web.Response:
    """POST /api/v1/resolution-codes {"code", "label", "survey"?, "may_reopen"?} (admins)."""
    body = await read_json_object(request)
    _check_fields(body, FIELDS - {"enabled"})
    code = body.get("code")
    if not isinstance(code, str):
        raise ApiError(400, "'code' is required (a string)")
    survey, reopen = _flag(body, "survey", True), _flag(body, "may_reopen", True)
    try:
        async with request.app[SESSIONS].begin() as session:
            row = await add_code(session, code, body.get("label"), survey=bool(survey),
                                 may_reopen=bool(reopen), now=request.app[CLOCK]())
            data = code_dict(row)
            audit.record(session, current_agent(request), "code.created", "resolution_code",
                         row.code, audit_details(data), at=request.app[CLOCK]())
    except CodeError as exc:
        raise ApiError(exc.status, exc.message) from None
    return web.json_response(data, status=201)


@roles("admin")
async def patch_code(request: web.Request) -> web.Response:
    """PATCH /api/v1/resolution-codes/{code} {"label"?, "survey"?, "may_reopen"?, "enabled"?}."""
    body = await read_json_object(request)
    _check_fields(body, FIELDS - {"code"})
    try:
        async with request.app[SESSIONS].begin() as session:
            row = await change_code(session, request.match_info["code"], **body)
            data = code_dict(row)
            audit.record(session, current_agent(request), "code.changed", "resolution_code",
                         row.code, {k: data[k] for k in body}, at=request.app[CLOCK]())
    except CodeError as exc:
        raise ApiError(exc.status, exc.message) from None
    return web.json_response(data)


def audit_details(code: dict[str, object]) -> dict[str, object]:
    """What the audit log keeps of a code (all of it: it is configuration, not a text)."""
    return {k: v for k, v in code.items() if k != "code"}


def add_routes(app: web.Application) -> None:
    """Register the resolution-code endpoints."""
    app.router.add_get("/api/v1/resolution-codes", get_codes)
    app.router.add_post("/api/v1/resolution-codes", post_code)
    app.router.add_patch("/api/v1/resolution-codes/{code}", patch_code)
