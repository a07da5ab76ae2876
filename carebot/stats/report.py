"""The statistics summary as a plain-text table for the terminal (`carebot stats`)."""

from __future__ import annotations

from typing import Any

LABEL = 34


def duration(ms: float | None) -> str:
    """A duration in milliseconds, readable: 850 ms, 12.5 s, 7m 05s, 2h 03m, 3d 04h."""
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms:.0f} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f}%"


def _line(label: str, value: Any, note: str = "") -> str:
    text = f"{label:<{LABEL}} {value!s:<8}"
    return f"{text} {note}".rstrip() if note else text.rstrip()


def _rate(label: str, rate: float | None, part: int, whole: int, of: str) -> str:
    return _line(label, _pct(rate), f"({part} of {whole} {of})")


def _mean(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render_summary(s: dict[str, Any]) -> str:
    """The summary of carebot.stats.metrics.summary as aligned text."""
    p, v, bot = s["period"], s["volume"], s["bot"]
    filters = ", ".join(f"{k}={val}" for k, val in p["filters"].items()) or "none"
    out = [
        f"carebot stats {p['from']} .. {p['to']} ({p['tz']})",
        f"filters: {filters}",
        "",
        "VOLUME",
        _line("conversations opened", v["opened"]),
        _line("conversations resolved", v["resolved"]),
        _line("conversations reopened", v["reopened"]),
        _line("unique customers", v["unique_customers"]),
        "",
        "BOT",
        _rate("bot involvement", bot["involvement_rate"], bot["involved"], v["opened"],
              "opened"),
        _rate("answered by FAQ", bot["answered_by_faq_rate"], bot["answered_by_faq"],
              v["opened"], "opened"),
        _rate("handoff rate", bot["handoff_rate"], bot["handed_off"], v["opened"], "opened"),
        _line("confirmed bot resolutions", bot["confirmed_resolutions"], "(customer said Yes)"),
        _line("assumed bot resolutions", bot["assumed_resolutions"],
              "(answered, then the customer went silent)"),
        _rate("containment rate", bot["containment_rate"], bot["contained"], v["resolved"],
              "resolved by the bot"),
        _rate("abandonment rate", bot["abandonment_rate"], bot["abandoned"], v["resolved"],
              "timed out without an answer"),
        "",
        f"{'TIMES':<{LABEL}} {'median':<10} {'p90':<10} {'mean':<10} n",
    ]
    for label, d in (
        ("bot first response", s["first_response_ms"]["bot"]),
        ("human first response", s["first_response_ms"]["human"]),
        ("resolution time", s["resolution_time_ms"]),
        ("agent handle time", s["handle_time_ms"]),
        ("queue wait", s["queue_wait_ms"]),
    ):
        out.append(f"{label:<{LABEL}} {duration(d['median']):<10} {duration(d['p90']):<10} "
                   f"{duration(d['mean']):<10} {d['count']}")
    fcr, reopen, csat, ces = (s["first_contact_resolution"], s["reopen"], s["csat"], s["ces"])
    out += [
        "",
        "QUALITY",
        _rate("first contact resolution", fcr["rate"], fcr["count"], v["resolved"],
              f"resolved; repeat window {fcr['repeat_window_days']:g} days"),
        _rate("reopen rate", reopen["rate"], reopen["resolved_after_reopen"], v["resolved"],
              "resolved"),
        _line("transfers per conversation", _mean(s["transfers"]["per_conversation"])),
        _line("effort per conversation", _mean(s["effort"]["per_conversation"])),
        _rate("CSAT satisfied (4-5)", csat["satisfied_rate"], csat["satisfied"],
              csat["answered"], "answered"),
        _line("CSAT mean (1-5)", _mean(csat["mean"])),
        _rate("CSAT response rate", csat["response_rate"], csat["answered"], csat["sent"],
              "sent"),
        _rate("CES easy (5-7)", ces["easy_rate"], ces["easy"], ces["answered"], "answered"),
        _line("CES mean (1-7)", _mean(ces["mean"])),
        _rate("CES response rate", ces["response_rate"], ces["answered"], ces["sent"], "sent"),
        _line("SLA breaches", s["sla"]["breaches"],
              f"(queued longer than {s['sla']['sla_seconds']:g} s)"),
    ]
    return "\n".join(out)
