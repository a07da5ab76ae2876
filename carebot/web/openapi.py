"""The OpenAPI 3.1 description of /api/v1/, served at /api/v1/openapi.json.

A test compares it with the app's routes, so an endpoint cannot be added without its entry.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from carebot.web.auth import ALL_ROLES, roles
from carebot.web.openapi_stats import SCHEMAS as STATS_SCHEMAS
from carebot.web.openapi_stats import STATS_PATHS

ERROR = {"$ref": "#/components/schemas/Error"}
CONVERSATION = {"$ref": "#/components/schemas/Conversation"}
MESSAGE = {"$ref": "#/components/schemas/Message"}
AGENT = {"$ref": "#/components/schemas/Agent"}
CODE = {"$ref": "#/components/schemas/ResolutionCode"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "invalid input", 401: "missing or bad token", 403: "role or ownership forbids it",
        404: "not found", 409: "conflicts with the conversation's state", 413: "too large",
    }
    return {str(c): _json(ERROR, text[c]) for c in codes}


def _body(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": {
            "type": "object", "properties": properties, "required": required,
        }}},
    }


def _op(summary: str, who: str, ok: dict[str, Any], *errors: int, **extra: Any) -> dict[str, Any]:
    return {
        "summary": summary,
        "description": f"Allowed roles: {who}.",
        "responses": {**ok, **_errors(401, *errors)},
        **extra,
    }


CID = [{"name": "conversation_id", "in": "path", "required": True,
        "schema": {"type": "integer"}}]
SITE_ID = [{"name": "site_id", "in": "path", "required": True, "schema": {"type": "integer"}}]
SITE_KEY = [{"name": "key", "in": "path", "required": True,
             "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,32}$"}}]
SITE_LOOK = {"type": "object", "properties": {
    "title": {"type": "string"}, "greeting": {"type": "string"},
    "colour": {"type": "string", "pattern": "^#[0-9a-f]{6}$"},
    "offline_text": {"type": "string"}, "agents_online": {"type": "boolean"},
    "max_text": {"type": "integer"}}}
SITE_FIELDS: dict[str, Any] = {
    "name": {"type": "string", "maxLength": 100},
    "origins": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 20,
                "description": "page origins allowed to embed the chat, like "
                               "https://shop.example"},
    "title": {"type": "string", "maxLength": 100},
    "greeting": {"type": "string", "maxLength": 1000},
    "colour": {"type": "string", "pattern": "^#[0-9a-fA-F]{6}$"},
    "offline_text": {"type": "string", "maxLength": 500},
}
SITE = {"type": "object", "properties": {
    "id": {"type": "integer"}, "key": {"type": "string"}, **SITE_FIELDS,
    "enabled": {"type": "boolean"}, "snippet": {"type": "string"},
    "secret": {"type": "string", "description": "HMAC-SHA256 key for identity verification"},
    "created_at": {"type": "string"}, "updated_at": {"type": "string"}}}
ANY = "agent (own and queued conversations), manager, admin (all)"

SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "carebot API",
        "version": "1",
        "description": (
            "Inbound channels (no token) and the agent console. Every other endpoint needs "
            "`Authorization: Bearer <token>` (`carebot agents add`). Errors are JSON "
            "`{\"error\": {\"status\", \"message\"}}`."
        ),
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
                "status": {"type": "integer"}, "message": {"type": "string"}}}}},
            "Button": {"type": "object", "properties": {
                "title": {"type": "string"}, "payload": {"type": "string"}}},
            "Reply": {"type": "object", "properties": {
                "text": {"type": "string"},
                "buttons": {"type": "array", "items": {"$ref": "#/components/schemas/Button"}}}},
            "Conversation": {"type": "object", "properties": {
                "id": {"type": "integer"}, "customer_id": {"type": "integer"},
                "channel": {"type": "string"},
                "status": {"enum": ["bot", "queued", "assigned", "resolved"]},
                "assigned_agent_id": {"type": ["integer", "null"]},
                "opened_at": {"type": "string", "format": "date-time"},
                "resolved_by": {"type": ["string", "null"]},
                "resolution_code": {"type": ["string", "null"]},
                "effort_score": {"type": "integer"}, "transfers": {"type": "integer"},
                "handoffs": {"type": "integer"}, "reopen_count": {"type": "integer"},
                "first_bot_response_ms": {"type": ["integer", "null"]},
                "first_human_response_ms": {"type": ["integer", "null"]}}},
            "Message": {"type": "object", "properties": {
                "id": {"type": "integer"}, "direction": {"enum": ["in", "out", "note"]},
                "sender": {"enum": ["customer", "bot", "agent", "system"]},
                "text": {"type": "string"}, "created_at": {"type": "string"}}},
            "ResolutionCode": {"type": "object", "properties": {
                "code": {"type": "string"}, "label": {"type": "string"},
                "survey": {"type": "boolean", "description": "the customer is surveyed"},
                "may_reopen": {"type": "boolean",
                               "description": "a new message reopens the conversation"},
                "enabled": {"type": "boolean"},
            }},
            "Agent": {"type": "object", "properties": {
                "id": {"type": "integer"}, "name": {"type": "string"},
                "role": {"enum": ["agent", "manager", "admin"]},
                "capacity": {"type": "integer"},
                "status": {"enum": ["online", "away", "offline"]},
                "open_conversations": {"type": "integer"}}},
        },
    },
    "security": [{"bearer": []}],
    "paths": {
        "/api/v1/channels/http/messages": {"post": {
            "summary": "Inbound customer message from any bridge (generic HTTP channel)",
            "description": (
                "No bearer token; protected by header X-Carebot-Secret when "
                "CAREBOT_HTTP_CHANNEL_SECRET is set. The same message_id twice returns the "
                "first result with duplicate=true and stores nothing."
            ),
            "security": [],
            "requestBody": _body({
                "user_id": {"type": "string", "maxLength": 128},
                "message_id": {"type": "string", "maxLength": 128},
                "text": {"type": "string", "maxLength": 4096},
                "payload": {"type": "string", "maxLength": 200},
                "name": {"type": "string", "maxLength": 200},
            }, ["user_id", "message_id"]),
            "responses": {
                "200": _json({"type": "object", "properties": {
                    "conversation_id": {"type": "integer"},
                    "status": {"enum": ["bot", "queued", "assigned", "resolved"]},
                    "duplicate": {"type": "boolean"},
                    "replies": {"type": "array",
                                "items": {"$ref": "#/components/schemas/Reply"}}}}),
                **_errors(400, 403, 409, 413),
            },
        }},
        "/api/v1/channels/web/sites/{key}": {
            "get": {
                "summary": "A chat site's look for its widget (CORS: the site's own origins "
                           "only)",
                "description": (
                    "No token. Answers only a request whose Origin is one of the site's "
                    "origins, with Access-Control-Allow-Origin set to it; 403 for any other "
                    "origin, 404 for an unknown or disabled site."
                ),
                "security": [],
                "parameters": SITE_KEY,
                "responses": {
                    "200": _json(SITE_LOOK),
                    **{str(c): _json(ERROR, text) for c, text in
                       ((403, "origin not allowed"), (404, "no such site"))},
                },
            },
            "options": {
                "summary": "CORS preflight for the site's settings",
                "security": [],
                "parameters": SITE_KEY,
                "responses": {
                    "204": {"description": "allowed origin"},
                    **{str(c): _json(ERROR, text) for c, text in
                       ((403, "origin not allowed"), (404, "no such site"))},
                },
            },
        },
        "/api/v1/channels/web/socket": {"get": {
            "summary": "The web chat visitor's WebSocket (frames in docs/web-chat.md)",
            "description": (
                "No token. The Origin header must be one of the site's origins (403 before "
                "the upgrade otherwise); 429 when the network already holds "
                "CAREBOT_WEB_SOCKETS_PER_IP sockets."
            ),
            "security": [],
            "parameters": [{"name": "site", "in": "query", "required": True,
                            "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,32}$"}}],
            "responses": {
                "101": {"description": "switching to WebSocket"},
                **{str(c): _json(ERROR, text) for c, text in
                   ((403, "origin not allowed"), (404, "no such site"),
                    (429, "too many sockets"))},
            },
        }},
        "/api/v1/sites": {
            "get": _op("Web chat sites with their snippets and identity secrets", "admin",
                       {"200": _json({"type": "object", "properties": {
                           "items": {"type": "array", "items": SITE}}})}, 403),
            "post": _op(
                "Add a web chat site; the response has its snippet and secret", "admin",
                {"201": _json(SITE)}, 400, 403, 409, 413,
                requestBody=_body(SITE_FIELDS, ["name", "origins"]),
            ),
        },
        "/api/v1/sites/{site_id}": {"patch": _op(
            "Change a site's origins, look, offline text, or disable it", "admin",
            {"200": _json(SITE)}, 400, 403, 404, 409, 413,
            parameters=SITE_ID, requestBody=_body(
                {**SITE_FIELDS, "enabled": {"type": "boolean"}}, []),
        )},
        "/api/v1/sites/{site_id}/secret": {"post": _op(
            "A new identity-verification secret (signatures made with the old one fail)",
            "admin", {"200": _json(SITE)}, 403, 404, parameters=SITE_ID,
        )},
        "/api/v1/conversations/{conversation_id}/typing": {"post": _op(
            "Show a web chat visitor that you are typing (other channels: sent=false)", ANY,
            {"200": _json({"type": "object", "properties": {"sent": {"type": "boolean"}}})},
            403, 404, parameters=CID,
        )},
        "/api/v1/conversations/{conversation_id}/seen": {"post": _op(
            "You have seen the web chat visitor's messages up to this id (their widget marks "
            "them read)", ANY,
            {"200": _json({"type": "object", "properties": {"moved": {"type": "boolean"}}})},
            400, 403, 404, 413, parameters=CID,
            requestBody=_body({"up_to": {"type": "integer", "minimum": 1}}, ["up_to"]),
        )},
        "/api/v1/me": {"get": _op(
            "The authenticated agent and their load", ANY, {"200": _json(AGENT)},
        )},
        "/api/v1/me/availability": {"put": _op(
            "Go online, away or offline (online pulls waiting conversations)", ANY,
            {"200": _json(AGENT)}, 400, 413,
            requestBody=_body({"status": {"enum": ["online", "away", "offline"]}}, ["status"]),
        )},
        "/api/v1/conversations": {"get": _op(
            "List conversations, newest activity first", ANY,
            {"200": _json({"type": "object", "properties": {
                "items": {"type": "array", "items": CONVERSATION},
                "total": {"type": "integer"}, "limit": {"type": "integer"},
                "offset": {"type": "integer"}}})},
            400,
            parameters=[
                {"name": "status", "in": "query",
                 "schema": {"enum": ["bot", "queued", "assigned", "resolved"]}},
                {"name": "assignee", "in": "query", "schema": {"type": "integer"}},
                {"name": "channel", "in": "query", "schema": {"type": "string"}},
                {"name": "limit", "in": "query",
                 "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}},
                {"name": "offset", "in": "query",
                 "schema": {"type": "integer", "minimum": 0, "default": 0}},
            ],
        )},
        "/api/v1/conversations/{conversation_id}": {"get": _op(
            "One conversation: messages, touchpoint timeline, the customer's other conversations",
            ANY, {"200": _json(CONVERSATION)}, 403, 404, parameters=CID,
        )},
        "/api/v1/conversations/{conversation_id}/reply": {"post": _op(
            "Reply to the customer (delivered through the outbox)", ANY,
            {"201": _json(MESSAGE, "stored and queued for delivery")}, 400, 403, 404, 409, 413,
            parameters=CID, requestBody=_body({"text": {"type": "string"}}, ["text"]),
        )},
        "/api/v1/conversations/{conversation_id}/notes": {"post": _op(
            "Private note, never sent to the customer", ANY,
            {"201": _json(MESSAGE)}, 400, 403, 404, 413,
            parameters=CID, requestBody=_body({"text": {"type": "string"}}, ["text"]),
        )},
        "/api/v1/conversations/{conversation_id}/claim": {"post": _op(
            "Take a queued conversation (within your capacity)", ANY,
            {"200": _json(CONVERSATION)}, 403, 404, 409, parameters=CID,
        )},
        "/api/v1/conversations/{conversation_id}/transfer": {"post": _op(
            "Transfer to another agent (online, enabled, with room: else 409), or to the queue "
            "with agent_id null, where it never goes straight back to you (counts as a "
            "transfer); an optional note is a private note for the next agent",
            ANY, {"200": _json(CONVERSATION)}, 400, 403, 404, 409, 413, parameters=CID,
            requestBody=_body({"agent_id": {"type": ["integer", "null"]},
                               "note": {"type": ["string", "null"]}}, ["agent_id"]),
        )},
        "/api/v1/conversations/{conversation_id}/handback": {"post": _op(
            "Hand the conversation back to the bot", ANY,
            {"200": _json(CONVERSATION)}, 403, 404, 409, parameters=CID,
        )},
        "/api/v1/conversations/{conversation_id}/resolve": {"post": _op(
            "Resolve with a code from the managed list (GET /api/v1/resolution-codes; 400 for "
            "any other); credited to the agent who resolves it", ANY,
            {"200": _json(CONVERSATION)}, 400, 403, 404, 409, parameters=CID,
            requestBody=_body({"code": {"type": "string", "maxLength": 64}}, ["code"]),
        )},
        "/api/v1/agents": {
            "get": _op("Agents with their current load", "manager, admin",
                       {"200": _json({"type": "object", "properties": {
                           "items": {"type": "array", "items": AGENT}}})}, 403),
            "post": _op(
                "Create an agent; the response carries its token, shown only once", "admin",
                {"201": _json(AGENT)}, 400, 403, 409,
                requestBody=_body({
                    "name": {"type": "string"},
                    "role": {"enum": ["agent", "manager", "admin"]},
                    "capacity": {"type": "integer"},
                }, ["name"]),
            ),
        },
        "/api/v1/resolution-codes": {
            "get": _op("The managed list of resolution codes", ANY,
                       {"200": _json({"type": "object", "properties": {
                           "items": {"type": "array", "items": CODE}}})}),
            "post": _op(
                "Add a resolution code", "admin", {"201": _json(CODE)}, 400, 403, 409,
                requestBody=_body({
                    "code": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,63}$"},
                    "label": {"type": "string", "maxLength": 200},
                    "survey": {"type": "boolean", "description": "survey after it (default "
                                                                "true)"},
                    "may_reopen": {"type": "boolean", "description": "a new message reopens "
                                                                     "(default true)"},
                }, ["code", "label"]),
            ),
        },
        "/api/v1/resolution-codes/{code}": {
            "patch": _op(
                "Change a resolution code (disable rather than delete: past conversations "
                "keep it)", "admin", {"200": _json(CODE)}, 400, 403, 404,
                parameters=[{"name": "code", "in": "path", "required": True,
                             "schema": {"type": "string"}}],
                requestBody=_body({
                    "label": {"type": "string", "maxLength": 200},
                    "survey": {"type": "boolean"},
                    "may_reopen": {"type": "boolean"},
                    "enabled": {"type": "boolean"},
                }, []),
            ),
        },
        "/api/v1/events": {"get": _op(
            "WebSocket of live events (message, queued, assigned, unassigned, agent_reply, note, "
            "handback, resolved, availability, sla_breached, typing, customer_read): agents "
            "get their own conversations' and queue events, managers and admins all",
            ANY, {"101": {"description": "switching to WebSocket"}},
        )},
        "/api/v1/openapi.json": {"get": _op(
            "This description", ANY, {"200": _json({"type": "object"})},
        )},
    },
}

# The statistics endpoints and their metric definitions live in their own module.
SPEC["components"]["schemas"].update(STATS_SCHEMAS)
SPEC["paths"].update(STATS_PATHS)


@roles(*ALL_ROLES)
async def openapi_json(request: web.Request) -> web.Response:
    """GET /api/v1/openapi.json."""
    return web.json_response(SPEC)
