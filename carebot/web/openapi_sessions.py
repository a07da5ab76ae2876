"""OpenAPI entries for people's logins (/api/v1/session): merged into the spec."""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/schemas/Error"}
_SESSION = {"$ref": "#/components/schemas/Session"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(**codes: str) -> dict[str, Any]:
    return {code.lstrip("_"): _json(_ERROR, text) for code, text in codes.items()}


def _body(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "properties": properties, "required": required}}}}


SCHEMAS: dict[str, Any] = {
    "Session": {
        "type": "object",
        "required": ["agent", "csrf_token"],
        "properties": {
            "agent": {"$ref": "#/components/schemas/Agent"},
            "csrf_token": {"type": "string", "description":
                           "send it back in X-CSRF-Token with every state change"},
        },
    },
}

COOKIE_NOTE = (
    "Sets the session cookie `carebot_session` (HttpOnly, SameSite=Strict, Secure over "
    "https). Requests with the cookie need `X-CSRF-Token` for POST, PUT, PATCH and DELETE; "
    "a foreign Origin is refused (403)."
)

PATHS: dict[str, Any] = {
    "/api/v1/session": {
        "post": {
            "summary": "Log in with an agent name and password",
            "description": COOKIE_NOTE + " Failed logins are limited per name and address "
                           "(429 with the seconds to wait).",
            "security": [],
            "requestBody": _body({"name": {"type": "string", "maxLength": 100},
                                  "password": {"type": "string", "maxLength": 256}},
                                 ["name", "password"]),
            "responses": {"201": _json(_SESSION, "logged in"), **_errors(
                _400="invalid input", _401="wrong name or password",
                _403="cross-site login", _429="too many failed logins")},
        },
        "get": {
            "summary": "The logged-in person and the CSRF token (session cookie only)",
            "description": "Allowed roles: agent, manager, admin (with a session cookie).",
            "responses": {"200": _json(_SESSION, "OK"), **_errors(
                _401="not logged in with a session cookie")},
        },
        "delete": {
            "summary": "Log out: the session ends and the cookie is cleared",
            "description": "Allowed roles: agent, manager, admin.",
            "responses": {"200": _json({"type": "object"}, "logged out"), **_errors(
                _401="not logged in", _403="missing CSRF token or foreign Origin")},
        },
    },
    "/api/v1/session/invite": {"post": {
        "summary": "Choose a password with a one-time invite, and log in",
        "description": COOKIE_NOTE,
        "security": [],
        "requestBody": _body({"token": {"type": "string", "maxLength": 200},
                              "password": {"type": "string", "minLength": 10,
                                           "maxLength": 256}}, ["token", "password"]),
        "responses": {"201": _json(_SESSION, "password set, logged in"), **_errors(
            _400="invite not valid or expired, or password too short",
            _403="cross-site request", _429="too many failed attempts")},
    }},
}
