"""The OpenAPI description of /api/v1/stats/: parameters, responses and the metric definitions.

Merged into carebot.web.openapi.SPEC. The definitions here are the contract; they say the same
as carebot.stats.metrics and the README's "Statistics" section.
"""

from __future__ import annotations

from typing import Any

from carebot.stats.csv_export import COLUMNS

WHO = "Allowed roles: manager, admin (agents get 403)."
ERROR = {"$ref": "#/components/schemas/Error"}
DIST = {"$ref": "#/components/schemas/Distribution"}
SURVEY = {"$ref": "#/components/schemas/SurveyStats"}

PERIOD_RULES = (
    "**Period.** `from` and `to` are local dates `YYYY-MM-DD` in `tz` (`to` inclusive: the "
    "period runs to the end of that day) or ISO 8601 date-times (`to` exclusive; without an "
    "offset they are read in `tz`). Defaults: `to` today, `from` 30 days before. At most "
    "5 years. `tz` is an IANA name (default UTC); days and weeks (Monday first) are local to it."
    "\n\n**Filters** select conversations, and every metric is computed over the selected "
    "ones: `channel`; `agent` — the conversation's assigned agent (kept after resolution); "
    "`faq` — conversations the bot answered with that FAQ; `tag` — conversations answered "
    "with an FAQ carrying that tag."
)

METRICS = (
    "**Which conversations count.** Each metric is anchored on one timestamp:\n"
    "- *opened cohort* (`opened_at` in the period): `volume.opened`, `unique_customers`, "
    "bot involvement, answered by FAQ, handoff rate, first response times;\n"
    "- *resolved cohort* (the current `resolved_at` in the period; a reopened conversation "
    "counts once, where it was last resolved; one still open is not resolved): "
    "`volume.resolved`, confirmed/assumed bot resolutions, containment, resolution and handle "
    "time, first contact resolution, reopen rate, transfers and effort per conversation, "
    "`agents.resolved`;\n"
    "- *events* (touchpoints in the period): `volume.reopened` (distinct conversations), "
    "handoffs by reason, queue waits, SLA breaches;\n"
    "- *surveys sent in the period*: CSAT and CES.\n\n"
    "**Definitions.**\n"
    "- bot involvement: opened conversations where the bot answered or offered suggestions; "
    "answered by FAQ: where it gave at least one FAQ answer.\n"
    "- confirmed bot resolution: the customer said Yes to \"Did this help?\" "
    "(`resolved_by` bot); assumed: the customer went silent with the bot and the timer "
    "resolved it (`resolved_by` timeout).\n"
    "- handoff rate: opened conversations handed to a person at least once / opened.\n"
    "- containment rate: resolved conversations without any handoff / resolved.\n"
    "- first response, bot: the customer's message to the bot's first answer or suggestion; "
    "human: the handoff to the first agent reply (bot time never counts).\n"
    "- resolution time: opened → resolved (including any reopened stretch).\n"
    "- agent handle time: each assignment runs from `assigned` to the next transfer, "
    "handback, resolution or re-assignment; summed per conversation.\n"
    "- queue wait: entering the queue (handoff, or transfer to the queue) → assignment, for "
    "each assignment from the queue made in the period (direct transfers to a named agent "
    "never wait).\n"
    "- first contact resolution: resolved, never reopened, and the customer opened no other "
    "conversation on any channel after this one opened and within the repeat window "
    "(`CAREBOT_STATS_REPEAT_WINDOW_DAYS`, default 7) after its resolution. Recent "
    "resolutions are provisional until their window has passed.\n"
    "- reopen rate: resolved conversations that had been reopened / resolved.\n"
    "- transfers and effort per conversation: summed over resolved conversations / resolved "
    "(effort: the touchpoints' effort points).\n"
    "- CSAT: of answered CSAT surveys, the share scoring 4–5 and the mean; response rate = "
    "answered / sent (unanswered and expired surveys count as sent). CES: the mean and the "
    "share scoring 5–7, and its response rate.\n"
    "- SLA breaches: queue stays longer than `CAREBOT_QUEUE_SLA_SECONDS`, recorded by the "
    "timer (one per stay).\n"
    "- durations are milliseconds: count, total, mean, median and p90 (linear interpolation "
    "between the nearest ranks, like PostgreSQL's percentile_cont). Rates are fractions "
    "0–1 rounded to 4 places, `null` when the denominator is 0."
)


def _q(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": schema, "description": description}


PARAMETERS = [
    _q("from", {"type": "string"}, "first local day (YYYY-MM-DD) or an ISO date-time"),
    _q("to", {"type": "string"}, "last local day, inclusive, or an ISO date-time (exclusive)"),
    _q("tz", {"type": "string", "default": "UTC"}, "IANA time zone, e.g. Europe/Berlin"),
    _q("channel", {"type": "string"}, "only conversations on this channel"),
    _q("agent", {"type": "integer"}, "only conversations assigned to this agent"),
    _q("faq", {"type": "string"}, "only conversations the bot answered with this FAQ id"),
    _q("tag", {"type": "string"}, "only conversations answered with an FAQ with this tag"),
]


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": "OK", "content": {"application/json": {"schema": schema}}}


def _get(
    summary: str, description: str, ok: dict[str, Any], extra: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    errors = {"400": "bad period, time zone or filter", "401": "missing or bad token",
              "403": "not a manager or admin"}
    return {"get": {
        "summary": summary,
        "description": f"{WHO}\n\n{description}\n\n{PERIOD_RULES}",
        "parameters": PARAMETERS + (extra or []),
        "responses": {
            "200": ok,
            **{code: {"description": text, "content": {"application/json": {"schema": ERROR}}}
               for code, text in errors.items()},
        },
    }}


def _obj(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties}


INT = {"type": "integer"}
RATE = {"type": ["number", "null"]}
PERIOD = _obj(**{"from": {"type": "string"}, "to": {"type": "string"},
                 "tz": {"type": "string"}, "filters": {"type": "object"}})

SCHEMAS: dict[str, Any] = {
    "Distribution": _obj(count=INT, total=INT, mean=RATE, median=RATE, p90=RATE),
    "SurveyStats": _obj(sent=INT, answered=INT, response_rate=RATE, satisfied=INT,
                        satisfied_rate=RATE, mean=RATE),
}

SUMMARY = _obj(
    period=PERIOD,
    volume=_obj(opened=INT, resolved=INT, reopened=INT, unique_customers=INT),
    bot=_obj(involved=INT, involvement_rate=RATE, answered_by_faq=INT,
             answered_by_faq_rate=RATE, handed_off=INT, handoff_rate=RATE,
             handoffs_by_reason={"type": "object", "additionalProperties": INT},
             confirmed_resolutions=INT, assumed_resolutions=INT, contained=INT,
             containment_rate=RATE),
    agents=_obj(resolved=INT),
    first_response_ms=_obj(bot=DIST, human=DIST),
    resolution_time_ms=DIST,
    handle_time_ms=DIST,
    queue_wait_ms=DIST,
    first_contact_resolution=_obj(count=INT, rate=RATE, repeat_window_days={"type": "number"}),
    reopen=_obj(resolved_after_reopen=INT, rate=RATE),
    transfers=_obj(total=INT, per_conversation=RATE),
    effort=_obj(total=INT, per_conversation=RATE),
    csat=SURVEY,
    ces=_obj(sent=INT, answered=INT, response_rate=RATE, easy=INT, easy_rate=RATE, mean=RATE),
    sla=_obj(breaches=INT, sla_seconds={"type": "number"}),
)

STATS_PATHS: dict[str, Any] = {
    "/api/v1/stats/summary": _get(
        "Headline resolution metrics for a period", METRICS, _json(SUMMARY),
    ),
    "/api/v1/stats/timeseries": _get(
        "The main counts and rates per local day or week",
        "One entry per bucket (zeros included), each clipped to the period: opened, "
        "handed_off and bot_involved (opened cohort), resolved, confirmed/assumed bot "
        "resolutions, contained and fcr (resolved cohort), reopened and sla_breaches (events), "
        "CSAT (sent in the bucket), and the medians of first response and resolution time. "
        "Definitions as for /api/v1/stats/summary.",
        _json(_obj(period=PERIOD, bucket={"enum": ["day", "week"]},
                   series={"type": "array", "items": {"type": "object"}})),
        [_q("bucket", {"enum": ["day", "week"], "default": "day"}, "bucket size")],
    ),
    "/api/v1/stats/agents": _get(
        "Per agent: resolved, human first response, handle time, CSAT",
        "- resolved: conversations of the resolved cohort whose assigned agent at resolution "
        "is the agent;\n- first_response_ms: conversations of the opened cohort whose first "
        "agent reply was the agent's (handoff → that reply);\n- handle_time_ms: the agent's own "
        "assignments in conversations of the resolved cohort, summed per conversation (a "
        "transferred conversation counts for each agent who held it);\n- csat: CSAT surveys sent "
        "in the period that recorded the agent as the resolver.",
        _json(_obj(period=PERIOD, items={"type": "array", "items": _obj(
            agent_id=INT, name={"type": "string"}, resolved=INT, first_response_ms=DIST,
            handle_time_ms=DIST, csat=SURVEY)})),
    ),
    "/api/v1/stats/faqs": _get(
        "Per FAQ: answered, confirmed helpful, followed by a handoff, CSAT after",
        "- answered: FAQ answers given in the period;\n- helpful / not_helpful: Yes / No to "
        "\"Did this help?\" in the period (helpful_rate = helpful / both);\n"
        "- followed_by_handoff: answers after which the bot's next step in the conversation was "
        "a handoff — a weak answer (handoff_rate = followed_by_handoff / answered);\n"
        "- csat_after: CSAT surveys sent in the period on conversations that got this answer "
        "before the survey.",
        _json(_obj(period=PERIOD, items={"type": "array", "items": _obj(
            faq_id={"type": "string"}, question={"type": ["string", "null"]},
            tags={"type": "array", "items": {"type": "string"}}, answered=INT, helpful=INT,
            not_helpful=INT, followed_by_handoff=INT, helpful_rate=RATE, handoff_rate=RATE,
            csat_after=SURVEY)})),
    ),
    "/api/v1/stats/knowledge-gaps": _get(
        "Questions that ended in a handoff for lack of an answer, grouped by similarity",
        "The customer texts of handoffs with reason `no_match` or `failed_turns` in the period "
        "(the latest 5,000; `truncated` says when there were more) are normalised like the "
        "matcher's input and clustered greedily, most frequent wording first: a question joins "
        "the first group whose representative scores at least `similarity` (rapidfuzz "
        "token_set_ratio, 0–100, default 80) or starts a new group. Groups come largest "
        "first, with up to 5 example wordings and the FAQs the matcher found nearest.",
        _json(_obj(period=PERIOD, questions=INT, truncated={"type": "boolean"},
                   similarity_threshold={"type": "number"},
                   clusters={"type": "array", "items": _obj(
                       question={"type": "string"}, count=INT,
                       examples={"type": "array", "items": {"type": "string"}},
                       last_seen={"type": "string"}, reasons={"type": "object"},
                       nearest_faqs={"type": "array", "items": {"type": "string"}})})),
        [_q("similarity", {"type": "integer", "minimum": 50, "maximum": 100, "default": 80},
            "how alike two questions must be to share a group"),
         _q("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
            "groups to return")],
    ),
    "/api/v1/stats/conversations.csv": _get(
        "One CSV row per conversation opened or resolved in the period, streamed",
        "For spreadsheets and BI tools: every per-conversation field the summary uses, so both "
        "cohorts can be recomputed (filter on `opened_in_period` / `resolved_in_period`). "
        "Times are ISO 8601 in `tz`; durations in ms; flags 1/0, empty where they do not apply "
        "(e.g. `fcr` of an open conversation). Columns:\n"
        + "\n".join(f"- `{name}`: {meaning}" for name, meaning in COLUMNS),
        {"description": "CSV (header row first)",
         "content": {"text/csv": {"schema": {"type": "string"}}}},
    ),
}
