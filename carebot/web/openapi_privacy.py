"""The OpenAPI description of the data-protection endpoints: customers (look up, link, export,
erase) and the audit log. Merged into carebot.web.openapi.SPEC."""

from __future__ import annotations

from typing import Any

ERROR = {"$ref": "#/components/schemas/Error"}
PERSON = {"$ref": "#/components/schemas/Person"}
AUDIT_ENTRY = {"$ref": "#/components/schemas/AuditEntry"}
TEXTS = {401: "missing or bad token", 400: "invalid input", 403: "role forbids it",
         404: "not found", 409: "not possible in the current state"}
CUSTOMER_ID = [{"name": "customer_id", "in": "path", "required": True,
                "schema": {"type": "integer", "minimum": 1}}]


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _op(summary: str, who: str, ok: dict[str, Any], *errors: int, description: str = "",
        **extra: Any) -> dict[str, Any]:
    return {
        "summary": summary,
        "description": f"Allowed roles: {who}.{' ' + description if description else ''}",
        "responses": {**ok, **{str(c): _json(ERROR, TEXTS[c]) for c in (401, *errors)}},
        **extra,
    }


def _body(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "properties": properties, "required": required}}}}


_TIME = {"type": ["string", "null"], "format": "date-time"}

SCHEMAS: dict[str, Any] = {
    "Person": {"type": "object", "description": (
        "The customers linked as one person, with the contacts, conversations (newest first, "
        "at most 200) and answered surveys of all of them."), "properties": {
        "id": {"type": "integer"}, "person_id": {"type": "integer",
                                                 "description": "the group's first customer"},
        "customer_ids": {"type": "array", "items": {"type": "integer"}},
        "customers": {"type": "array", "items": {"type": "object", "properties": {
            "id": {"type": "integer"}, "display_name": {"type": "string"},
            "language": {"type": ["string", "null"]},
            "created_at": _TIME, "linked_to": {"type": ["integer", "null"]},
            "linked_at": _TIME, "erased_at": _TIME}}},
        "contacts": {"type": "array", "items": {"type": "object", "properties": {
            "id": {"type": "integer"}, "customer_id": {"type": "integer"},
            "channel": {"type": "string"}, "external_id": {"type": "string"},
            "display_name": {"type": "string"}, "created_at": _TIME}}},
        "conversations": {"type": "array",
                          "items": {"$ref": "#/components/schemas/Conversation"}},
        "surveys": {"type": "array", "items": {"type": "object"}},
    }},
    "ErasureReport": {"type": "object", "properties": {
        "customer_id": {"type": "integer"},
        "customer_ids": {"type": "array", "items": {"type": "integer"}},
        "already_erased": {"type": "boolean",
                           "description": "erased before: nothing changed this time"},
        "conversations": {"type": "integer"},
        "closed": {"type": "integer", "description": "open conversations resolved by the "
                                                     "system (code erased)"},
        "messages": {"type": "integer"}, "touchpoints": {"type": "integer"},
        "surveys": {"type": "integer"}, "outbox": {"type": "integer"},
        "contacts": {"type": "integer"}, "receipts": {"type": "integer"}}},
    "AuditEntry": {"type": "object", "properties": {
        "id": {"type": "integer"}, "at": {"type": "string", "format": "date-time"},
        "actor": {"type": "object", "properties": {
            "type": {"enum": ["agent", "cli", "system", "anonymous"]},
            "id": {"type": ["integer", "null"]}, "name": {"type": "string"}}},
        "action": {"type": "string", "examples": ["customer.erased", "session.login"]},
        "object_type": {"type": ["string", "null"]},
        "object_id": {"type": ["string", "null"]},
        "details": {"type": "object", "description": "ids and small facts; never texts or "
                                                     "secrets"}}},
}

AUDIT_FILTERS = [
    {"name": "from", "in": "query", "schema": {"type": "string"},
     "description": "a local day YYYY-MM-DD in tz, or an ISO date-time"},
    {"name": "to", "in": "query", "schema": {"type": "string"},
     "description": "a local day (inclusive) or an ISO date-time (exclusive)"},
    {"name": "tz", "in": "query", "schema": {"type": "string", "default": "UTC"}},
    {"name": "actor", "in": "query", "schema": {"type": "integer", "minimum": 1},
     "description": "the acting agent's id"},
    {"name": "actor_type", "in": "query",
     "schema": {"enum": ["agent", "cli", "system", "anonymous"]}},
    {"name": "action", "in": "query", "schema": {"type": "string", "maxLength": 64},
     "description": "an action (customer.erased) or all of an object's (customer)"},
    {"name": "object_type", "in": "query", "schema": {"type": "string", "maxLength": 32}},
    {"name": "object_id", "in": "query", "schema": {"type": "string", "maxLength": 64}},
]

PATHS: dict[str, Any] = {
    "/api/v1/customers": {"get": _op(
        "The person with this user id on a channel", "manager, admin",
        {"200": _json(PERSON)}, 400, 403, 404,
        parameters=[
            {"name": "channel", "in": "query", "required": True,
             "schema": {"type": "string", "maxLength": 32}},
            {"name": "user_id", "in": "query", "required": True,
             "schema": {"type": "string", "maxLength": 128}},
        ],
    )},
    # GET /api/v1/customers/{customer_id} (the customer panel) is in carebot.web.openapi.
    "/api/v1/customers/{customer_id}/export": {"get": _op(
        "Everything stored about the person, as one JSON document", "admin",
        {"200": _json({"type": "object", "properties": {
            "format": {"const": "carebot-customer-export/1"},
            "customer_ids": {"type": "array", "items": {"type": "integer"}},
            "customers": {"type": "array"}, "contacts": {"type": "array"},
            "conversations": {"type": "array", "description": (
                "each with its messages, touchpoints, surveys and outbox rows")},
            "touchpoints_outside_conversations": {"type": "array"},
            "messages_outside_conversations": {"type": "array"}}})},
        403, 404, parameters=CUSTOMER_ID,
        description="Covers every customer linked with this one. On record in the audit log.",
    )},
    "/api/v1/customers/{customer_id}/erase": {"post": _op(
        "Erase the person's texts and identifiers; the anonymous counts the statistics need "
        "stay", "admin", {"200": _json({"$ref": "#/components/schemas/ErasureReport"})},
        400, 403, 404, parameters=CUSTOMER_ID,
        requestBody=_body({"confirm": {"const": True}}, ["confirm"]),
        description=("One transaction; erasing again changes nothing (already_erased). Open "
                     "conversations are resolved by the system with code `erased`, unsent "
                     "outbox rows cancelled. Covers every linked customer. On record in the "
                     "audit log."),
    )},
    "/api/v1/customers/{customer_id}/link": {"post": _op(
        "Link another customer (and the customers linked with it) to this one's person",
        "manager, admin", {"200": _json(PERSON)}, 400, 403, 404, 409, parameters=CUSTOMER_ID,
        requestBody=_body({"customer_id": {"type": "integer", "minimum": 1}}, ["customer_id"]),
        description="409 when they are one person already, or one of them was erased.",
    )},
    "/api/v1/customers/{customer_id}/unlink": {"post": _op(
        "Undo a link: this customer is a person of their own again", "manager, admin",
        {"200": _json(PERSON)}, 403, 404, 409, parameters=CUSTOMER_ID,
        description="409 for a customer not linked, or the first of a group (unlink the "
                    "others).",
    )},
    "/api/v1/audit": {"get": _op(
        "The audit log, newest first", "admin",
        {"200": _json({"type": "object", "properties": {
            "items": {"type": "array", "items": AUDIT_ENTRY}, "total": {"type": "integer"},
            "limit": {"type": "integer"}, "offset": {"type": "integer"}}})}, 400, 403,
        parameters=[*AUDIT_FILTERS,
                    {"name": "limit", "in": "query",
                     "schema": {"type": "integer", "minimum": 1, "maximum": 500,
                                "default": 100}},
                    {"name": "offset", "in": "query",
                     "schema": {"type": "integer", "minimum": 0, "default": 0}}],
    )},
    "/api/v1/audit.csv": {"get": _op(
        "The audit log as CSV (every matching entry, streamed)", "admin",
        {"200": {"description": "text/csv: id, at, actor_type, actor_id, actor_name, action, "
                                "object_type, object_id, details (JSON)",
                 "content": {"text/csv": {"schema": {"type": "string"}}}}},
        400, 403, parameters=AUDIT_FILTERS,
    )},
}
