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
    "ones: `channel`; `agent` — conversations whose current (or, once resolved, last) "
    "holder is the agent: `assigned_agent_id`, kept after resolution; a transferred "
    "conversation belongs to the agent it was transferred to, one closed from the queue to "
    "nobody; it is not 'conversations the agent touched' (see /stats/agents for that); "
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
    "handoffs by reason, queue waits; SLA breaches when they happened (queue entry + SLA);\n"
    "- *surveys sent in the period*: CSAT and CES.\n\n"
    "**Definitions.**\n"
    "- bot involvement: opened conversations where the bot answered or offered suggestions; "
    "answered by FAQ: where it gave at least one FAQ answer.\n"
    "- confirmed bot resolution: the customer said Yes to \"Did this help?\" "
    "(`resolved_by` bot); assumed: the bot answered and the customer went silent (the timer "
    "closed it and the last step before was an FAQ answer). A timeout without any answer "
    "(/start, a greeting or suggestions only) is *abandoned* (`bot.abandoned`), any other "
    "timeout neither; `outcomes` has all five.\n"
    "- handoff rate: opened conversations handed to a person at least once / opened.\n"
    "- containment rate: resolved by the bot (confirmed + assumed) / resolved. Closures by a "
    "person (from the queue, as spam, ...), abandoned conversations and other timeouts are "
    "not contained; abandonment rate = abandoned / resolved.\n"
    "- first response, bot: the customer's message reaching carebot → the end of the "
    "transaction that writes the bot's first reply (matching, deciding and writing; only "
    "the commit itself is left out), measured in microseconds and reported in ms with 3 "
    "decimals (conversations from before migration 0010 have none); human: the first "
    "handoff → the first agent reply, whoever sends it (transfers and requeues do not "
    "restart it; bot time never counts).\n"
    "- resolution time: opened → resolved (including any reopened stretch); for a timeout, "
    "opened → when the customer went silent (the later of the bot's last answer and the "
    "customer's last message), not when the timer fired.\n"
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
    "- SLA breaches: queue stays longer than `CAREBOT_QUEUE_SLA_SECONDS`, computed from the "
    "touchpoints' timestamps: every stay (a handoff, a transfer or requeue back to the "
    "queue) counts, a stay still open counts once it is longer than the SLA at the "
    "request's now, and a breach belongs to the period containing queue entry + SLA. The "
    "timer only sends the alert; when it runs changes nothing here. Wall-clock time.\n"
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


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


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
             containment_rate=RATE, abandoned=INT, abandonment_rate=RATE),
    outcomes=_obj(bot_confirmed=INT, bot_assumed=INT, agent=INT, timeout=INT, abandoned=INT),
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

AGENT_ROW = _obj(
    agent_id={"type": ["integer", "null"]}, name={"type": "string"},
    unassigned={"type": "boolean"}, resolved=INT, first_response_ms=DIST,
    handle_time_ms=DIST, csat=SURVEY, handled=INT, resolution_time_ms=DIST, transfers=INT,
    reopen=_obj(resolutions=INT, reopened=INT, rate=RATE))
CONFUSION_RULES = (
    "- confusions: the (at most 3) other FAQs this one was most confused with, most signals "
    "first: `shown_together` — offered in the same list of suggestions in the period (the "
    "first 10 of a list); `answered_after` — after an answer with this FAQ in the period, "
    "the bot's next FAQ answer in the conversation was the other one; `total` = both."
)
FAQ_ROW = _obj(
    faq_id={"type": "string"}, question={"type": ["string", "null"]},
    tags={"type": "array", "items": {"type": "string"}}, answered=INT, helpful=INT,
    not_helpful=INT, followed_by_handoff=INT, helpful_rate=RATE, handoff_rate=RATE,
    csat_after=SURVEY, confusions={"type": "array", "items": _obj(
        faq_id={"type": "string"}, shown_together=INT, answered_after=INT, total=INT)})

GAP_PARAMETERS = [
    _q("similarity", {"type": "integer", "minimum": 50, "maximum": 100, "default": 80},
       "how alike two questions must be to share a group"),
    _q("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
       "groups to return"),
    _q("sort", {"enum": ["count", "newest"], "default": "count"},
       "largest group first, or the most recently asked first"),
    _q("status", {"enum": ["all", "open", "done"], "default": "all"},
       "only the groups still open, or only those marked done"),
]
GAP_DONE_RULES = (
    "**Marking a group done** (`POST /api/v1/stats/knowledge-gaps/done` with the group's "
    "`question`) remembers its questions asked up to that moment as handled. A group is "
    "`done` while nothing was asked in it after its mark, `open` otherwise; "
    "`new_since_done` counts the questions after the mark. A mark belongs to a group when "
    "it names one of the group's wordings (normalised) or is as alike the group's question "
    "as `similarity` asks of two questions in one group."
)
STRINGS = {"type": "array", "items": {"type": "string"}}
DONE_MARK = _obj(id=INT, question={"type": "string"}, note={"type": ["string", "null"]},
                 done_by={"type": ["integer", "null"]}, done_at={"type": "string"})
GAPS = _obj(period=PERIOD, questions=INT, truncated={"type": "boolean"},
            similarity_threshold={"type": "number"},
            clusters={"type": "array", "items": _obj(
                question={"type": "string"}, count=INT, examples=STRINGS,
                first_seen={"type": "string"}, last_seen={"type": "string"},
                reasons={"type": "object"}, nearest_faqs=STRINGS,
                status={"enum": ["open", "done"]},
                done={"type": ["object", "null"]},
                new_since_done={"type": ["integer", "null"]})})

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
        "- resolved: conversations of the resolved cohort the agent resolved (also straight "
        "from the queue); those with no resolver on record are in a "
        "last row with `agent_id` null, `name` \"unassigned\", `unassigned` true, so the "
        "column adds up to the summary's `agents.resolved`;\n- first_response_ms: "
        "conversations of the opened cohort whose first agent reply was the agent's, from the "
        "agent's own (latest) assignment to that reply (a conversation transferred to them "
        "unanswered counts from when they got it; one they replied to without holding it, "
        "from the handoff);\n- handle_time_ms: the agent's own "
        "assignments in conversations of the resolved cohort, summed per conversation (a "
        "transferred conversation counts for each agent who held it);\n- csat: CSAT surveys sent "
        "in the period that recorded the agent as the resolver;\n- handled: conversations of "
        "the resolved cohort the agent held at least once (what handle_time_ms counts);\n"
        "- resolution_time_ms: opened → resolved of the conversations of the resolved cohort "
        "the agent resolved;\n- transfers: transfers the agent made in the period (to another "
        "agent or back to the queue);\n- reopen: the agent's resolutions in the period "
        "(`resolutions`) and how many of them the customer reopened afterwards (`reopened`, "
        "as of now; `rate` = reopened / resolutions).",
        _json(_obj(period=PERIOD, items={"type": "array", "items": AGENT_ROW})),
    ),
    "/api/v1/stats/faqs": _get(
        "Per FAQ: answered, confirmed helpful, followed by a handoff, CSAT after",
        "- answered: FAQ answers given in the period;\n- helpful / not_helpful: Yes / No to "
        "\"Did this help?\" in the period (helpful_rate = helpful / both);\n"
        "- followed_by_handoff: answers after which the bot's next step in the conversation was "
        "a handoff — a weak answer (handoff_rate = followed_by_handoff / answered);\n"
        "- csat_after: CSAT surveys sent in the period on conversations that got this answer "
        "before the survey;\n" + CONFUSION_RULES,
        _json(_obj(period=PERIOD, items={"type": "array", "items": FAQ_ROW})),
    ),
    "/api/v1/stats/knowledge-gaps": _get(
        "Questions that ended in a handoff for lack of an answer, grouped by similarity",
        "The customer texts of handoffs with reason `no_match` or `failed_turns` in the period "
        "(the latest 5,000; `truncated` says when there were more) are normalised like the "
        "matcher's input and clustered greedily, most frequent wording first: a question joins "
        "the first group whose representative scores at least `similarity` (rapidfuzz "
        "token_set_ratio, 0–100, default 80) or starts a new group. Groups come largest "
        "first (`sort=newest`: the most recently asked first), with up to 5 example wordings "
        "and the FAQs the matcher found nearest.\n\n" + GAP_DONE_RULES,
        _json(GAPS),
        GAP_PARAMETERS,
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


# --- the managers' dashboard ----------------------------------------------------------------

OUTCOME_RULES = (
    "**Outcomes.** Every resolved conversation has one: `bot_confirmed` — the customer said "
    "Yes to \"Did this help?\"; `bot_assumed` — the timer closed it and the last step before "
    "was an FAQ answer (the bot answered, the customer went silent); `agent` — a person "
    "closed it (agent, manager or admin, from any status, spam too); `abandoned` — the timer "
    "closed it and the customer never got an answer (no FAQ answer, no agent reply: a "
    "greeting, suggestions or small talk only); `timeout` — any other timeout (the last step "
    "before the silence was not an FAQ answer, e.g. an agent handed it back). "
    "`bot_assumed` = the summary's `assumed_resolutions`, `abandoned` its `bot.abandoned`, "
    "`bot_confirmed + bot_assumed` its `contained`."
)
TILE_RULES = (
    "Each tile is read from `/api/v1/stats/summary` for the same filters, for the period and "
    "for the previous period of equal length (the same number of local days before a period "
    "of whole days, else the same duration before). `value` and `previous` as the summary "
    "gives them; `delta` = value − previous; `change` = delta / previous (null when previous "
    "is 0 or null); `n` / `previous_n`: what the value was computed from (resolved "
    "conversations for resolved-cohort rates, opened for the handoff rate, answered surveys "
    "for CSAT and CES, the number of values for durations; null for counts); `unit`: count, "
    "rate (0–1), ms or score; `better`: higher, lower or null. Tiles: conversations (opened), "
    "containment (containment_rate), bot_confirmed / bot_assumed / abandoned (outcome / "
    "resolved), handoff_rate, first_contact_resolution, first_response_median / _p90 (human), "
    "resolution_time_median, csat (share of 4–5), ces (mean), effort (per resolved "
    "conversation), sla_breaches."
)
TRENDS_RULES = (
    "Columnar series for charts: every array is aligned with `labels` (one entry per local "
    "bucket of the period, zeros included; `from`/`to` its clipped bounds). `bucket`: `auto` "
    "(default: hours for periods of at most 2 days, days beyond), `hour` (periods of at most "
    "31 days; labels carry the UTC offset, so the two 02:00 hours of an autumn clock change "
    "are apart), `day`, `week` (Monday first).\n"
    "- opened (opened cohort, by opened_at); resolved and `outcomes.*` (resolved cohort, by "
    "resolved_at; the outcomes add up to resolved);\n"
    "- csat / ces: surveys sent in the bucket — sent, answered, satisfied_rate (4–5) / "
    "easy_rate (5–7) of answered, mean of answered (null without answers);\n"
    "- first_response_ms (human: handoff → first agent reply, by opened_at) and "
    "resolution_time_ms (opened → resolved, by resolved_at): p50, p90 (linear interpolation) "
    "and count.\n\n" + OUTCOME_RULES
)
JOURNEY_RULES = (
    "How far the conversations opened in the period got, followed to the present (from the "
    "touchpoint log). Steps, by `stage`: 1 first_message; 2 bot_answered / bot_suggested — "
    "the bot's first reply before any handoff was an FAQ answer / suggestions (handed off "
    "before any reply: straight to queued); 3 helpful_yes / helpful_no — the first answer to "
    "\"Did this help?\" before any handoff; 4 queued — the first handoff; 5 assigned — the "
    "first assignment; 6 resolved — resolved now (its last resolution); 7 surveyed — a CSAT "
    "question was sent; 8 satisfied — a CSAT answer of 4–5.\n"
    "Per step: `count` (conversations that reached it), `share_of_first` (count / "
    "first_message), `ended_here` (its furthest step), `wait_ms` — median and p90 of the time "
    "from the conversation's latest earlier step (in the log's order) to this one, `effort` — "
    "mean of the effort points summed from the first message to this step. `flows`: "
    "conversations going from one step to the next step they reached (a Sankey diagram's "
    "links; the steps in stage order make it acyclic). List a step's conversations with "
    "`/api/v1/stats/journey/conversations?step=`."
)
LIVE_RULES = (
    "As of now (no period; `from`/`to` are refused): `queue.length`, "
    "`queue.longest_wait_seconds` (now − when the longest-waiting conversation last entered "
    "the queue: its handoff or a transfer back to the queue), `queue.over_sla` (waiting "
    "longer than `CAREBOT_QUEUE_SLA_SECONDS` now), `open` conversations by status, the agents "
    "online or away (not disabled) with `load` (open conversations assigned to them, any "
    "channel) and `capacity`, and `sla_breaches_today`: SLA breaches since local midnight in "
    "`tz`, as the summary counts them (a conversation still waiting past the SLA "
    "included). Filters select conversations as elsewhere; `agent` also narrows "
    "the agents listed. Poll it, or refresh it on the live events `queued`, `assigned`, "
    "`unassigned`, `resolved`, `availability` and `sla_breached` (`GET /api/v1/events`)."
)
CSV_RULES = (
    "The same rows as the JSON endpoint, as CSV with a header: nested objects become dotted "
    "columns (`csat.satisfied_rate`), lists of values are joined with \"; \", lists of "
    "objects are JSON; empty cells for null."
)

OUTCOME_COUNTS = _obj(**{name: INT for name in (
    "bot_confirmed", "bot_assumed", "agent", "timeout", "abandoned")})
NUMBER_OR_NULL = {"type": ["number", "null"]}
TILE = _obj(key={"type": "string"}, label={"type": "string"},
            unit={"enum": ["count", "rate", "ms", "score"]},
            better={"enum": ["higher", "lower", None]}, value=NUMBER_OR_NULL,
            previous=NUMBER_OR_NULL, delta=NUMBER_OR_NULL, change=NUMBER_OR_NULL,
            n={"type": ["integer", "null"]}, previous_n={"type": ["integer", "null"]})
INTS = {"type": "array", "items": INT}
NUMBERS = {"type": "array", "items": NUMBER_OR_NULL}
GRID = {"type": "array", "items": INTS}
PERCENTILES = _obj(p50=NUMBERS, p90=NUMBERS, count=INTS)
JOURNEY_STEPS = ["first_message", "bot_answered", "bot_suggested", "helpful_yes", "helpful_no",
                 "queued", "assigned", "resolved", "surveyed", "satisfied"]
STEP_ITEM = _obj(conversation_id=INT, customer_id=INT, channel={"type": "string"},
                 status={"type": "string"}, opened_at={"type": "string"},
                 reached_at={"type": "string"}, wait_ms={"type": ["integer", "null"]},
                 effort=INT)
STEP_PARAM = _q("step", {"enum": JOURNEY_STEPS}, "the journey step (required)")
CSV_OK = {"description": "CSV (header row first)",
          "content": {"text/csv": {"schema": {"type": "string"}}}}


def _supervisor_op(summary: str, description: str, responses: dict[str, Any],
                   **extra: Any) -> dict[str, Any]:
    errors = {"400": "invalid input", "401": "missing or bad token",
              "403": "not a manager or admin", "404": "not found"}
    codes = {c: {"description": t, "content": {"application/json": {"schema": ERROR}}}
             for c, t in errors.items()}
    return {"summary": summary, "description": f"{WHO}\n\n{description}",
            "responses": {**responses, **codes}, **extra}


DASHBOARD_PATHS: dict[str, Any] = {
    "/api/v1/stats/tiles": _get(
        "Headline tiles: the period against the previous one", TILE_RULES + "\n\n" + METRICS,
        _json(_obj(period=PERIOD,
                   previous_period=_obj(**{"from": {"type": "string"},
                                           "to": {"type": "string"}}),
                   tiles={"type": "array", "items": TILE},
                   outcomes=_obj(current=OUTCOME_COUNTS, previous=OUTCOME_COUNTS))),
    ),
    "/api/v1/stats/trends": _get(
        "Chart series per local hour, day or week: outcomes, CSAT, CES, percentiles",
        TRENDS_RULES,
        _json(_obj(period=PERIOD, bucket={"enum": ["hour", "day", "week"]}, labels=STRINGS,
                   **{"from": STRINGS, "to": STRINGS}, opened=INTS, resolved=INTS,
                   outcomes=_obj(**{k: INTS for k in OUTCOME_COUNTS["properties"]}),
                   csat=_obj(sent=INTS, answered=INTS, satisfied_rate=NUMBERS, mean=NUMBERS),
                   ces=_obj(sent=INTS, answered=INTS, easy_rate=NUMBERS, mean=NUMBERS),
                   first_response_ms=PERCENTILES, resolution_time_ms=PERCENTILES)),
        [_q("bucket", {"enum": ["auto", "hour", "day", "week"], "default": "auto"},
            "bucket size")],
    ),
    "/api/v1/stats/trends.csv": _get(
        "The chart series as CSV, one row per bucket", f"{CSV_RULES}\n\n{TRENDS_RULES}",
        CSV_OK,
        [_q("bucket", {"enum": ["auto", "hour", "day", "week"], "default": "auto"},
            "bucket size")],
    ),
    "/api/v1/stats/heatmap": _get(
        "Volume by local weekday and hour (7 × 24), for staffing",
        "`opened[d][h]`: conversations opened (opened cohort) on local weekday `d` (0 Monday "
        "… 6 Sunday) in local hour `h` of `tz`; `handoffs[d][h]`: handoffs in the period "
        "(events), i.e. the conversations people had to take.",
        _json(_obj(period=PERIOD, days=STRINGS, hours=INTS, opened=GRID, handoffs=GRID,
                   totals=_obj(opened=INT, handoffs=INT))),
    ),
    "/api/v1/stats/journey": _get(
        "The customer journey: steps with counts, waits and effort, and the flows between",
        JOURNEY_RULES,
        _json(_obj(period=PERIOD, conversations=INT,
                   steps={"type": "array", "items": _obj(
                       key={"enum": JOURNEY_STEPS}, label={"type": "string"}, stage=INT,
                       count=INT, share_of_first=RATE, ended_here=INT,
                       wait_ms=_obj(median=NUMBER_OR_NULL, p90=NUMBER_OR_NULL, count=INT),
                       effort=_obj(mean=NUMBER_OR_NULL, count=INT))},
                   flows={"type": "array", "items": _obj(
                       **{"from": {"type": "string"}, "to": {"type": "string"}},
                       count=INT)})),
    ),
    "/api/v1/stats/journey/conversations": _get(
        "The conversations at one journey step, the latest to reach it first",
        "Same cohort and step definitions as `/api/v1/stats/journey`: each item with when it "
        "reached the step (`reached_at`, in `tz`), the wait before it and the effort so far. "
        "`total` counts them all; page with `limit` (1–200, default 50) and `offset`.",
        _json(_obj(period=PERIOD, step={"type": "string"}, total=INT, limit=INT, offset=INT,
                   items={"type": "array", "items": STEP_ITEM})),
        [STEP_PARAM,
         _q("limit", {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
            "items per page"),
         _q("offset", {"type": "integer", "minimum": 0, "maximum": 10_000_000, "default": 0},
            "items to skip")],
    ),
    "/api/v1/stats/journey/conversations.csv": _get(
        "Every conversation at one journey step, as CSV, streamed",
        "The items of `/api/v1/stats/journey/conversations` without paging; columns "
        "conversation_id, customer_id, channel, status, opened_at, reached_at, wait_ms, "
        "effort.",
        CSV_OK, [STEP_PARAM],
    ),
    "/api/v1/stats/agents.csv": _get(
        "The per-agent table as CSV", f"{CSV_RULES} Rows and definitions as "
        "`/api/v1/stats/agents`.", CSV_OK,
    ),
    "/api/v1/stats/faqs.csv": _get(
        "The per-FAQ table as CSV", f"{CSV_RULES} Rows and definitions as "
        "`/api/v1/stats/faqs`.", CSV_OK,
    ),
    "/api/v1/stats/knowledge-gaps.csv": _get(
        "The knowledge-gap groups as CSV", f"{CSV_RULES} Rows and definitions as "
        "`/api/v1/stats/knowledge-gaps`.", CSV_OK, GAP_PARAMETERS,
    ),
    "/api/v1/stats/live": {"get": _supervisor_op(
        "The live panel: queue, agents on duty, today's SLA breaches", LIVE_RULES,
        {"200": _json(_obj(
            now={"type": "string"}, tz={"type": "string"},
            today=_obj(**{"from": {"type": "string"}, "to": {"type": "string"}}),
            filters={"type": "object"},
            queue=_obj(length=INT, longest_wait_seconds=NUMBER_OR_NULL, over_sla=INT,
                       sla_seconds={"type": "number"}),
            open=_obj(bot=INT, queued=INT, assigned=INT),
            agents=_obj(online=INT, away=INT, items={"type": "array", "items": _obj(
                id=INT, name={"type": "string"}, role={"type": "string"},
                status={"enum": ["online", "away"]}, load=INT, capacity=INT)}),
            sla_breaches_today=INT))},
        parameters=[p for p in PARAMETERS if p["name"] not in ("from", "to")],
    )},
    "/api/v1/stats/knowledge-gaps/done": {
        "get": _supervisor_op(
            "Knowledge-gap groups marked done, the latest first", GAP_DONE_RULES,
            {"200": _json(_obj(items={"type": "array", "items": DONE_MARK}))},
        ),
        "post": _supervisor_op(
            "Mark a knowledge-gap group done",
            f"{GAP_DONE_RULES} Send the group's `question` (any wording of it; it is stored "
            "normalised) and an optional `note`. `201` with a new mark; `200` when the "
            "question was marked before (its `done_at` moves to now).",
            {"201": _json(DONE_MARK, "created"), "200": _json(DONE_MARK, "marked again")},
            requestBody={"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["question"],
                "properties": {"question": {"type": "string", "maxLength": 4096},
                               "note": {"type": ["string", "null"], "maxLength": 1000}},
            }}}},
        ),
    },
    "/api/v1/stats/knowledge-gaps/done/{mark_id}": {"delete": _supervisor_op(
        "Remove a done mark: its group shows as open again", GAP_DONE_RULES,
        {"204": {"description": "removed"}},
        parameters=[{"name": "mark_id", "in": "path", "required": True,
                     "schema": {"type": "integer"}}],
    )},
}
STATS_PATHS.update(DASHBOARD_PATHS)
