"""The OpenAPI description of the live events (`GET /api/v1/events`): one schema per kind.

Merged into carebot.web.openapi.SPEC. A test collects every event kind the code produces and
checks it is described here, and that nothing here is produced nowhere.
"""

from __future__ import annotations

from typing import Any

INT = {"type": "integer"}
NULLABLE_INT = {"type": ["integer", "null"]}
TEXT = {"type": "string"}
STATUS = {"enum": ["bot", "queued", "assigned", "resolved"]}
TRUNCATED = {"type": "boolean",
             "description": "present and true when `text` was cut (PostgreSQL fan-out)"}

# kind: (when it is sent and to whom, its `data` properties, the required ones)
KINDS: dict[str, tuple[str, dict[str, Any], list[str]]] = {
    "queued": (
        "A conversation entered the queue; sent to every agent.",
        {"reason": {"type": "string", "description": (
            "why: `requested`, `not_helpful`, `no_match`, `failed_turns` (handoffs), "
            "`transfer` (an agent put it back), `agent_disabled` (its agent was disabled), "
            "`unanswered` (its agent was absent and the customer waited)")}},
        ["reason"],
    ),
    "assigned": ("An agent got a conversation; sent to that agent, and to every agent when it "
                 "left the queue.",
                 {"agent_id": INT}, ["agent_id"]),
    "unassigned": (
        "A conversation left an agent (transfer, or requeued); sent to that agent.",
        {"reason": {"type": "string", "description": "set when requeued: `agent_disabled`, "
                                                     "`unanswered`"},
         "agent_status": {"type": "string", "description": "`unanswered`: the absent agent's "
                                                           "status"},
         "waited_ms": {"type": "integer", "description": "`unanswered`: how long the "
                                                         "customer waited"}},
        [],
    ),
    "message": (
        "The customer wrote to a conversation with a person (also an edited message); sent "
        "to its agent, or to every agent while it is queued.",
        {"text": TEXT, "payload": {"type": ["string", "null"]}, "status": STATUS,
         "edited": {"type": "boolean", "description": "true for an edited message"},
         "message_id": {"type": "string", "description": "an edited message's channel id"},
         "truncated": TRUNCATED},
        ["text", "status"],
    ),
    "agent_reply": ("An agent replied; sent to the conversation's agent.",
                    {"text": TEXT, "agent_id": INT, "status": STATUS, "truncated": TRUNCATED},
                    ["text", "agent_id", "status"]),
    "note": ("A private note was added; sent to the conversation's agent.",
             {"text": TEXT, "agent_id": INT, "status": STATUS, "truncated": TRUNCATED},
             ["text", "agent_id", "status"]),
    "handback": ("The conversation went back to the bot; sent to the agent who had it.",
                 {"agent_id": INT, "status": STATUS}, ["agent_id", "status"]),
    "language": ("An agent set (or cleared) the conversation's language; sent to its agent "
                 "and, while it waits, to the queue.",
                 {"language": {"type": ["string", "null"]},
                  "override": {"type": ["string", "null"]}, "agent_id": INT},
                 ["language", "override", "agent_id"]),
    "resolved": (
        "The conversation was resolved; sent to its agent and to the agent who resolved it.",
        {"resolved_by": {"enum": ["bot", "agent", "timeout"]}, "status": STATUS,
         "agent_id": INT, "code": TEXT},
        ["resolved_by", "status"],
    ),
    "availability": (
        "An agent went online, away or offline (`conversation_id` is null); sent to that "
        "agent.",
        {"agent_id": INT, "status": {"enum": ["online", "away", "offline"]}},
        ["agent_id", "status"],
    ),
    "agent_status": (
        "Presence changed an agent's status (`conversation_id` is null): `away` when no "
        "console was connected for `CAREBOT_PRESENCE_GRACE_SECONDS`, `online` again when one "
        "connects; sent to the agent and to managers.",
        {"agent_id": INT, "status": {"enum": ["online", "away", "offline"]},
         "previous": {"enum": ["online", "away", "offline"]}, "auto": {"const": True},
         "reason": {"enum": ["no_console", "console_connected"]}},
        ["agent_id", "status", "previous", "auto", "reason"],
    ),
    "assigned_sla_breached": (
        "The customer of an assigned conversation waited longer than "
        "`CAREBOT_ASSIGNED_SLA_SECONDS` for an answer (once per assignment); sent to the agent "
        "and to managers.",
        {"agent_id": INT, "waited_ms": INT}, ["agent_id", "waited_ms"],
    ),
    "sla_breached": (
        "A queue stay outlasted `CAREBOT_QUEUE_SLA_SECONDS`; managers and admins only.",
        {"waited_ms": INT}, ["waited_ms"],
    ),
    "survey_answered": ("The customer scored a survey; sent to the agent who resolved it.",
                        {"kind": {"enum": ["csat", "ces"]}, "score": INT}, ["kind", "score"]),
    "delivery_failed": (
        "A message could not be delivered for good; sent to the conversation's agent.",
        {"reason": TEXT, "message_id": NULLABLE_INT}, ["reason"],
    ),
    "typing": (
        "A web chat visitor is typing while a person has the conversation (at most every "
        "2 s); sent to the assigned agent, or to every agent while it is queued.",
        {"by": {"const": "customer"}}, ["by"],
    ),
    "customer_read": (
        "A web chat visitor has seen the messages up to `up_to`; sent to the assigned agent.",
        {"up_to": INT}, ["up_to"],
    ),
    "agent_disabled": (
        "An agent was disabled (`conversation_id` is null); their own feed then closes with "
        "code 1008.",
        {"agent_id": INT}, ["agent_id"],
    ),
}

ENVELOPE: dict[str, Any] = {
    "type": "object",
    "description": (
        "Every event but `hello`. `agent_ids`: the agents it concerns (managers and admins "
        "get every event); `queue`: sent to every agent. Events about a conversation carry "
        "`customer_name` and `preview`, what a person (customer or agent) last said in it "
        "(never the bot, never a note) after the step."
    ),
    "properties": {
        "kind": TEXT,
        "conversation_id": NULLABLE_INT,
        "agent_ids": {"type": "array", "items": INT},
        "queue": {"type": "boolean"},
        "customer_name": {"type": ["string", "null"]},
        "preview": {"oneOf": [{"$ref": "#/components/schemas/Preview"}, {"type": "null"}]},
        "data": {"type": "object"},
    },
    "required": ["kind", "conversation_id", "agent_ids", "queue", "data"],
}

HELLO: dict[str, Any] = {
    "type": "object",
    "description": "The first message on every connection: who the feed is for.",
    "properties": {"kind": {"const": "hello"}, "agent_id": INT,
                   "role": {"enum": ["agent", "manager", "admin"]}},
    "required": ["kind", "agent_id", "role"],
}


def _schema_name(kind: str) -> str:
    return "Event" + "".join(part.capitalize() for part in kind.split("_"))


def _event(kind: str) -> dict[str, Any]:
    when, data, required = KINDS[kind]
    return {
        "description": when,
        "allOf": [
            {"$ref": "#/components/schemas/EventEnvelope"},
            {"type": "object", "properties": {
                "kind": {"const": kind},
                "data": {"type": "object", "properties": data, "required": required},
            }},
        ],
    }


EVENT_KINDS = ("hello", *KINDS)
SCHEMAS: dict[str, Any] = {
    "EventEnvelope": ENVELOPE,
    _schema_name("hello"): HELLO,
    **{_schema_name(k): _event(k) for k in KINDS},
    "Event": {
        "description": "One WebSocket text frame of `GET /api/v1/events`, by `kind`.",
        "oneOf": [{"$ref": f"#/components/schemas/{_schema_name(k)}"} for k in EVENT_KINDS],
        "discriminator": {
            "propertyName": "kind",
            "mapping": {k: f"#/components/schemas/{_schema_name(k)}" for k in EVENT_KINDS},
        },
    },
}
