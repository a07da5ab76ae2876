"""The OpenAPI 3.1 description of /api/v1/, served at /api/v1/openapi.json.

A test compares it with the app's routes and the event kinds the code produces, so neither
an endpoint nor an event can be added without its entry. The statistics
(`carebot.web.openapi_stats`) and the live events (`carebot.web.openapi_events`) are
described in modules of their own and merged in below; another part of the API can be added
the same way.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from carebot.web import openapi_privacy
from carebot.web.auth import ALL_ROLES, roles
from carebot.web.openapi_events import SCHEMAS as EVENT_SCHEMAS
from carebot.web.openapi_sessions import PATHS as SESSION_PATHS
from carebot.web.openapi_sessions import SCHEMAS as SESSION_SCHEMAS
from carebot.web.openapi_stats import SCHEMAS as STATS_SCHEMAS
from carebot.web.openapi_stats import STATS_PATHS


def ref(name: str) -> dict[str, str]:
    """A reference to a schema of `components.schemas`."""
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema`, or null."""
    return {"oneOf": [schema, {"type": "null"}]}


ERROR = ref("Error")
INT = {"type": "integer"}
TEXT = {"type": "string"}
TIME = {"type": "string", "format": "date-time"}
MAYBE_TIME = {"type": ["string", "null"], "format": "date-time"}
MAYBE_INT = {"type": ["integer", "null"]}
MAYBE_TEXT = {"type": ["string", "null"]}
STATUS = {"enum": ["bot", "queued", "assigned", "resolved"]}
ROLE = {"enum": ["agent", "manager", "admin"]}


def _obj(required: list[str] | None = None, **properties: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


def _items(schema: dict[str, Any]) -> dict[str, Any]:
    return _obj(["items"], items={"type": "array", "items": schema})


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "invalid input", 401: "missing or bad token", 403: "role or ownership forbids it",
        404: "not found", 409: "conflicts with the current state", 413: "too large",
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


def _path(name: str, description: str, schema: dict[str, Any] | None = None
          ) -> list[dict[str, Any]]:
    return [{"name": name, "in": "path", "required": True, "description": description,
             "schema": schema or INT}]


CID = _path("conversation_id", "a conversation's id")
AGENT_KEY = _path("agent", "an agent's id or name", TEXT)
CANNED_KEY = _path("canned_id", "a canned reply's id (or its shortcut)", TEXT)
# Web chat sites (carebot.web.web_chat, web_chat_admin).
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
READ = ("agent (own and queued conversations, those they replied to, noted, transferred, "
        "handed back or resolved, and every conversation of a customer whose open "
        "conversation they hold), manager, admin (all)")
ADMIN = "admin"
SUPERVISORS = "manager, admin"

SUMMARY_PROPERTIES: dict[str, Any] = {
    "id": INT, "customer_id": INT, "channel": TEXT, "status": STATUS,
    "assigned_agent_id": MAYBE_INT,
    "opened_at": TIME, "updated_at": TIME, "queued_at": MAYBE_TIME, "assigned_at": MAYBE_TIME,
    "resolved_at": MAYBE_TIME, "last_customer_message_at": MAYBE_TIME,
    "last_bot_answer_at": MAYBE_TIME,
    "resolved_by": {"enum": ["bot", "agent", "timeout", None],
                    "description": "the outcome: who resolved it (null while open)"},
    "resolution_code": MAYBE_TEXT,
    "customer_messages": INT, "bot_answers": INT, "agent_messages": INT, "handoffs": INT,
    "transfers": INT, "reopen_count": INT,
    "effort_score": {"type": "integer", "description": "effort points the customer spent"},
    "first_bot_response_ms": MAYBE_INT, "first_human_response_ms": MAYBE_INT,
    "language": {"type": ["string", "null"],
                 "description": "the language the bot speaks in it (docs/languages.md)"},
    "language_override": {"type": ["string", "null"],
                          "description": "the language an agent set by hand; null: detected"},
}
ITEM_PROPERTIES: dict[str, Any] = {
    **SUMMARY_PROPERTIES,
    "customer_name": TEXT,
    "preview": nullable(ref("Preview")),
    "waiting_seconds": {"type": ["integer", "null"],
                        "description": "seconds since it entered the queue (queued only)"},
    "sla": nullable(ref("QueueSla")),
}
AGENT_PROPERTIES: dict[str, Any] = {
    "id": INT, "name": TEXT, "role": ROLE, "capacity": INT,
    "status": {"enum": ["online", "away", "offline"]}, "disabled": {"type": "boolean"},
    "password_set": {"type": "boolean", "description": "can log in to the console"},
    "invite_expires_at": MAYBE_TIME,
    "open_conversations": INT,
}

SCHEMAS: dict[str, Any] = {
    "AgentEntry": _obj(["id", "name", "role", "status", "disabled"], id=INT, name=TEXT,
                       role=ROLE, status={"enum": ["online", "away", "offline"]},
                       disabled={"type": "boolean"}),
    "Error": _obj(["error"], error=_obj(["status", "message"], status=INT, message=TEXT)),
    "Button": _obj(["title", "payload"], title=TEXT, payload=TEXT),
    "Reply": _obj(["text", "buttons"], text=TEXT,
                  buttons={"type": "array", "items": ref("Button")}),
    "Preview": {
        **_obj(["sender", "text", "at"], sender={"enum": ["customer", "bot", "agent", "system"]},
               text={"type": "string", "maxLength": 140}, at=MAYBE_TIME),
        "description": "A conversation's last message (never a private note), cut to 140 "
                       "characters; a button press without text shows its payload in "
                       "brackets.",
    },
    "QueueSla": {
        **_obj(["state", "warning_at", "breach_at"],
               state={"enum": ["ok", "warning", "breached"]}, warning_at=TIME, breach_at=TIME),
        "description": "A queued conversation against CAREBOT_QUEUE_SLA_SECONDS: `warning` "
                       "in its last fifth, `breached` from its end, and when each begins.",
    },
    "ConversationSummary": {**_obj(list(SUMMARY_PROPERTIES), **SUMMARY_PROPERTIES),
                            "description": "A conversation's running summary."},
    "ConversationItem": {**_obj(list(ITEM_PROPERTIES), **ITEM_PROPERTIES),
                         "description": "A conversation in a list: its summary, the "
                                        "customer's name, the last message, and in the "
                                        "queue the wait and SLA standing."},
    "Conversation": {
        "description": "One conversation: the list item's fields, its contact, messages "
                       "(private notes included, `direction` note), touchpoint timeline, the "
                       "customer panel and the customer's other conversations (newest "
                       "first, at most 50). `customer_read_up_to`: on web chat, the last "
                       "message id the visitor's widget showed them (null elsewhere).",
        **_obj(
            [*ITEM_PROPERTIES, "customer_read_up_to", "contact", "customer", "messages",
             "touchpoints", "other_conversations", "languages"],
            **ITEM_PROPERTIES,
            customer_read_up_to=nullable({"type": "integer"}),
            contact=nullable(ref("Contact")),
            customer=ref("Customer"),
            messages={"type": "array", "items": ref("Message")},
            touchpoints={"type": "array", "items": ref("Touchpoint")},
            other_conversations={"type": "array", "items": ref("ConversationSummary")},
            languages={"type": "array", "items": TEXT,
                       "description": "the languages it may be set to (CAREBOT_LANGUAGES)"},
        ),
    },
    "Message": _obj(
        ["id", "direction", "sender", "text", "created_at"],
        id=INT, direction={"enum": ["in", "out", "note"]},
        sender={"enum": ["customer", "bot", "agent", "system"]}, agent_id=MAYBE_INT,
        text=TEXT, payload=MAYBE_TEXT, buttons={"type": "array", "items": ref("Button")},
        created_at=TIME,
    ),
    "Touchpoint": {
        **_obj(["id", "kind", "actor", "effort", "created_at"],
               id=INT, kind=TEXT, actor={"enum": ["customer", "bot", "agent", "system"]},
               agent_id=MAYBE_INT, faq_id=MAYBE_TEXT, score={"type": ["number", "null"]},
               effort={"type": "integer", "description": "points this step cost the customer"},
               wait_ms={"type": ["integer", "null"],
                        "description": "how long the customer waited for this response"},
               outcome=nullable(STATUS), details={"type": ["object", "null"]},
               created_at=TIME),
        "description": "One step of the conversation's event log (kinds in docs/api.md).",
    },
    "Contact": _obj(["channel", "external_id", "display_name", "first_seen_at"],
                    channel=TEXT, external_id=TEXT, display_name=TEXT, first_seen_at=TIME),
    "SurveyAnswer": _obj(
        ["id", "conversation_id", "kind", "scale", "score"],
        id=INT, conversation_id=INT, kind={"enum": ["csat", "ces"]},
        scale={"type": "integer", "description": "5 for CSAT, 7 for CES"}, score=INT,
        comment=MAYBE_TEXT, agent_id={"type": ["integer", "null"],
                                      "description": "who resolved the conversation"},
        sent_at=MAYBE_TIME, answered_at=MAYBE_TIME,
    ),
    "Customer": {
        "description": "The customer panel: who they are and how it went for them, over every "
                       "customer linked with this one (one person on several channels).",
        **_obj(
            ["id", "person_id", "customer_ids", "name", "first_seen_at", "contacts",
             "conversations", "conversations_total", "total_effort", "surveys"],
            id=INT, person_id=INT, customer_ids={"type": "array", "items": INT},
            name=TEXT, first_seen_at=TIME,
            contacts={"type": "array", "items": ref("Contact")},
            conversations={"type": "array", "items": ref("ConversationSummary"),
                           "description": "newest first, at most 100"},
            conversations_total=INT,
            total_effort={"type": "integer",
                          "description": "effort points over all their conversations"},
            surveys={"type": "array", "items": ref("SurveyAnswer"),
                     "description": "answered surveys, newest first"},
        ),
    },
    "ResolutionCode": _obj(
        ["code", "label", "survey", "may_reopen", "enabled"],
        code=TEXT, label=TEXT,
        survey={"type": "boolean", "description": "the customer is surveyed"},
        may_reopen={"type": "boolean", "description": "a new message reopens the conversation"},
        enabled={"type": "boolean"},
    ),
    "Agent": _obj(["id", "name", "role", "capacity", "status", "disabled"],
                  **AGENT_PROPERTIES),
    "Invite": {
        **_obj(["token", "url", "expires_at"], token=TEXT, url=TEXT, expires_at=TIME),
        "description": "A one-time link with which the agent chooses a password (valid 7 "
                       "days); `url` is absolute when CAREBOT_PUBLIC_URL is set.",
    },
    "AgentWithToken": _obj(["id", "name", "token"], **AGENT_PROPERTIES,
                           token={"type": "string", "description": "shown only this once"}),
    "NewAgent": _obj(["id", "name", "token", "invite"], **AGENT_PROPERTIES,
                     token={"type": "string", "description": "shown only this once"},
                     invite=ref("Invite")),
    "AgentWithInvite": _obj(["id", "name", "invite"], **AGENT_PROPERTIES,
                            invite=ref("Invite")),
    "CannedReply": _obj(
        ["id", "shortcut", "title", "text", "created_at", "updated_at"],
        id=INT, shortcut={"type": "string", "pattern": "^[a-z0-9_-]{1,32}$"},
        title={"type": "string", "maxLength": 100}, text=TEXT, created_by=MAYBE_INT,
        created_at=TIME, updated_at=TIME,
    ),
    "AssistAnswer": _obj(["faq_id", "question", "answer", "score"], faq_id=TEXT,
                         question=TEXT, answer=TEXT,
                         score={"type": "number", "description": "the matcher's confidence "
                                                                 "(0-1) that it fits"}),
    "Assist": _obj(
        ["conversation_id", "message", "items"], conversation_id=INT,
        message=nullable(_obj(["id", "text", "created_at"], id=INT, text=TEXT,
                              created_at=TIME)),
        items={"type": "array", "items": ref("AssistAnswer"), "maxItems": 3},
    ),
}

CANNED_BODY = {
    "shortcut": {"type": "string", "pattern": "^[a-z0-9_-]{1,32}$"},
    "title": {"type": "string", "maxLength": 100},
    "text": {"type": "string", "description": "at most CAREBOT_MAX_TEXT_CHARS"},
}

PATHS: dict[str, Any] = {
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
            "200": _json(_obj(["conversation_id", "status", "duplicate", "replies"],
                              conversation_id=INT, status=STATUS,
                              duplicate={"type": "boolean"},
                              replies={"type": "array", "items": ref("Reply")})),
            **_errors(400, 403, 409, 413),
        },
    }},
    "/api/v1/me": {"get": _op(
        "The authenticated agent and their load", ANY, {"200": _json(ref("Agent"))},
    )},
    "/api/v1/me/availability": {"put": _op(
        "Go online, away or offline (online pulls waiting conversations)", ANY,
        {"200": _json(ref("Agent"))}, 400, 413,
        requestBody=_body({"status": {"enum": ["online", "away", "offline"]}}, ["status"]),
    )},
    "/api/v1/conversations": {"get": _op(
        "List conversations: the queue longest waiter first; other listings latest activity "
        "first. Each item has the customer's name, the last message, and in the queue the "
        "wait and SLA standing. Unknown query parameters are refused (400).", ANY,
        {"200": _json(_obj(["items", "total", "limit", "offset"],
                           items={"type": "array", "items": ref("ConversationItem")},
                           total=INT, limit=INT, offset=INT))},
        400,
        parameters=[
            {"name": "status", "in": "query", "schema": STATUS},
            {"name": "assignee", "in": "query", "schema": INT},
            {"name": "channel", "in": "query", "schema": TEXT},
            {"name": "sort", "in": "query", "schema": {"enum": ["oldest", "newest"]},
             "description": "status=queued: by time queued, `oldest` by default (the longest "
                            "waiter first); otherwise by latest activity, `newest` by default"},
            {"name": "limit", "in": "query",
             "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}},
            {"name": "offset", "in": "query",
             "schema": {"type": "integer", "minimum": 0, "default": 0}},
        ],
    )},
    "/api/v1/conversations/{conversation_id}": {"get": _op(
        "One conversation: messages, touchpoint timeline, customer panel, the customer's other "
        "conversations", READ, {"200": _json(ref("Conversation"))}, 403, 404, parameters=CID,
    )},
    "/api/v1/conversations/{conversation_id}/assist": {"get": _op(
        "Agent assist: the matcher's top 3 FAQ answers for the customer's last typed question "
        "in the conversation (commands, requests for a person and button presses are passed "
        "over; none: `message` null, no items)", READ, {"200": _json(ref("Assist"))}, 403, 404,
        parameters=CID,
    )},
    "/api/v1/conversations/{conversation_id}/reply": {"post": _op(
        "Reply to the customer (delivered through the outbox)", ANY,
        {"201": _json(ref("Message"), "stored and queued for delivery")}, 400, 403, 404, 409,
        413, parameters=CID, requestBody=_body({"text": TEXT}, ["text"]),
    )},
    "/api/v1/conversations/{conversation_id}/notes": {"post": _op(
        "Private note, never sent to the customer", ANY,
        {"201": _json(ref("Message"))}, 400, 403, 404, 413,
        parameters=CID, requestBody=_body({"text": TEXT}, ["text"]),
    )},
    "/api/v1/conversations/{conversation_id}/claim": {"post": _op(
        "Take a queued conversation (within your capacity)", ANY,
        {"200": _json(ref("ConversationSummary"))}, 403, 404, 409, parameters=CID,
    )},
    "/api/v1/conversations/{conversation_id}/transfer": {"post": _op(
        "Transfer to another agent (online, enabled, with room: else 409), or to the queue "
        "with agent_id null, where it never goes straight back to you (counts as a "
        "transfer); an optional note is a private note for the next agent",
        ANY, {"200": _json(ref("ConversationSummary"))}, 400, 403, 404, 409, 413,
        parameters=CID,
        requestBody=_body({"agent_id": MAYBE_INT, "note": MAYBE_TEXT}, ["agent_id"]),
    )},
    "/api/v1/conversations/{conversation_id}/handback": {"post": _op(
        "Hand the conversation back to the bot", ANY,
        {"200": _json(ref("ConversationSummary"))}, 403, 404, 409, parameters=CID,
    )},
    "/api/v1/conversations/{conversation_id}/language": {"put": _op(
        "Set the language the bot speaks to this customer (one of CAREBOT_LANGUAGES, else "
        "400); it wins over detection until set to null", ANY,
        {"200": _json(ref("ConversationSummary"))}, 400, 403, 404, parameters=CID,
        requestBody=_body({"language": {"type": ["string", "null"], "maxLength": 16}},
                          ["language"]),
    )},
    "/api/v1/conversations/{conversation_id}/resolve": {"post": _op(
        "Resolve with a code from the managed list (GET /api/v1/resolution-codes; 400 for "
        "any other); credited to the agent who resolves it", ANY,
        {"200": _json(ref("ConversationSummary"))}, 400, 403, 404, 409, parameters=CID,
        requestBody=_body({"code": {"type": "string", "maxLength": 64}}, ["code"]),
    )},
    "/api/v1/customers/{customer_id}": {"get": _op(
        "The customer panel: name, contacts on each channel, first seen, every conversation "
        "with its outcome, survey answers, total effort",
        "agent (when one of the customer's conversations is or was assigned to them, is "
        "queued, or was worked on by them), manager, admin",
        {"200": _json(ref("Customer"))}, 403, 404,
        parameters=_path("customer_id", "a customer's id (conversations carry it)"),
    )},
    "/api/v1/agents": {
        "get": _op("Agents with their current load (managers, admins); agents get the "
                   "directory: id, name, role, status, disabled", ANY,
                   {"200": _json(_items({"oneOf": [ref("Agent"), ref("AgentEntry")]}))}),
        "post": _op(
            "Create an agent; the response carries its bearer token and a password invite, "
            "each shown only once", ADMIN, {"201": _json(ref("NewAgent"))}, 400, 403, 409,
            requestBody=_body({
                "name": {"type": "string", "maxLength": 100},
                "role": ROLE,
                "capacity": {"type": "integer", "minimum": 0, "maximum": 1000, "default": 3},
            }, ["name"]),
        ),
    },
    "/api/v1/agents/{agent}": {"patch": _op(
        "Change an agent's role or capacity, or disable or enable them. Disabling ends their "
        "token's and console sessions' access at once and returns their conversations to "
        "the queue; the last enabled admin cannot be demoted or disabled (409)", ADMIN,
        {"200": _json(ref("Agent"))}, 400, 403, 404, 409, parameters=AGENT_KEY,
        requestBody=_body({
            "role": ROLE,
            "capacity": {"type": "integer", "minimum": 0, "maximum": 1000},
            "disabled": {"type": "boolean"},
        }, []),
    )},
    "/api/v1/agents/{agent}/token": {"post": _op(
        "Give the agent a new bearer token (shown once); the old one stops working", ADMIN,
        {"200": _json(ref("AgentWithToken"))}, 403, 404, parameters=AGENT_KEY,
    )},
    "/api/v1/agents/{agent}/invite": {"post": _op(
        "Reset the agent's password: it is cleared, their console sessions end, and a "
        "one-time invite to choose a new one is returned (409 for a disabled agent)", ADMIN,
        {"200": _json(ref("AgentWithInvite"))}, 403, 404, 409, parameters=AGENT_KEY,
    )},
    "/api/v1/canned-replies": {
        "get": _op("Canned replies, by shortcut (`/shortcut` in the composer)", ANY,
                   {"200": _json(_items(ref("CannedReply")))}),
        "post": _op(
            "Add a canned reply (the title defaults to the shortcut); 409 when the shortcut "
            "is taken", SUPERVISORS, {"201": _json(ref("CannedReply"))}, 400, 403, 409, 413,
            requestBody=_body(CANNED_BODY, ["shortcut", "text"]),
        ),
    },
    "/api/v1/canned-replies/{canned_id}": {
        "patch": _op("Change a canned reply's shortcut, title or text", SUPERVISORS,
                     {"200": _json(ref("CannedReply"))}, 400, 403, 404, 409, 413,
                     parameters=CANNED_KEY, requestBody=_body(CANNED_BODY, [])),
        "delete": _op("Delete a canned reply", SUPERVISORS,
                      {"204": {"description": "deleted"}}, 403, 404, parameters=CANNED_KEY),
    },
    "/api/v1/resolution-codes": {
        "get": _op("The managed list of resolution codes", ANY,
                   {"200": _json(_items(ref("ResolutionCode")))}),
        "post": _op(
            "Add a resolution code", ADMIN, {"201": _json(ref("ResolutionCode"))}, 400, 403,
            409,
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
            "keep it)", ADMIN, {"200": _json(ref("ResolutionCode"))}, 400, 403, 404,
            parameters=_path("code", "the code", TEXT),
            requestBody=_body({
                "label": {"type": "string", "maxLength": 200},
                "survey": {"type": "boolean"},
                "may_reopen": {"type": "boolean"},
                "enabled": {"type": "boolean"},
            }, []),
        ),
    },
    "/api/v1/events": {"get": _op(
        "WebSocket of live events. The first frame is `hello`; then one JSON event per "
        "frame, each described by the `Event` schema (one schema per kind). Agents get their "
        "own conversations' events and the queue's, managers and admins all. What the "
        "client sends is ignored.",
        ANY, {"101": {"description": "switching to WebSocket; every text frame is an Event",
                      "content": {"application/json": {"schema": ref("Event")}}}},
    )},
    "/api/v1/openapi.json": {"get": _op(
        "This description", ANY, {"200": _json({"type": "object"})},
    )},
}

# The web chat channel (no token; CORS and Origin per site), the sites' admin API, and the
# agent's typing and read marks for a web chat visitor.
WEBCHAT_PATHS: dict[str, Any] = {
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
}


SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "carebot API",
        "version": "1",
        "description": (
            "Inbound channels (no token) and the agent console. Every other endpoint needs "
            "`Authorization: Bearer <token>` (`carebot agents add`). Errors are JSON "
            "`{\"error\": {\"status\", \"message\"}}`. Live events: `GET /api/v1/events` "
            "(WebSocket), frames described by the `Event` schema."
        ),
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {**SCHEMAS, **EVENT_SCHEMAS, **STATS_SCHEMAS, **SESSION_SCHEMAS},
    },
    "security": [{"bearer": []}],
    "paths": {**PATHS, **STATS_PATHS, **SESSION_PATHS, **WEBCHAT_PATHS},
}

# Customers' data (look up, link, export, erase) and the audit log.
SPEC["components"]["schemas"].update(openapi_privacy.SCHEMAS)
SPEC["paths"].update(openapi_privacy.PATHS)


@roles(*ALL_ROLES)
async def openapi_json(request: web.Request) -> web.Response:
    """GET /api/v1/openapi.json."""
    return web.json_response(SPEC)
