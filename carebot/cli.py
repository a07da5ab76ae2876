"""The `carebot` command line: serve, db, kb, agents, codes, sites, telegram, stats."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from carebot.matching.embedding_model import EmbeddingModelError
from carebot.settings import Settings, SettingsError

if TYPE_CHECKING:
    from carebot.web.serving import ConnectionLimit

log = logging.getLogger("carebot")


class CliError(Exception):
    """A problem to report to the user as one readable line, exit status 2."""


@contextmanager
def _input_errors(*kinds: type[Exception]) -> Iterator[None]:
    """Report bad input files (`kinds`, or unreadable/unwritable paths) as one CLI line."""
    try:
        yield
    except kinds as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"{exc.filename}: {exc.strerror}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `carebot` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        settings = Settings.from_env()
        logging.basicConfig(
            level=settings.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        # Alembic narrates every plugin at INFO; its migrations still print at WARNING.
        logging.getLogger("alembic").setLevel(max(logging.WARNING, log.getEffectiveLevel()))
        result: int = args.func(settings, args)
        return result
    except (CliError, SettingsError, EmbeddingModelError) as exc:
        print(f"carebot: error: {exc}", file=sys.stderr)
        return 2
    except DBAPIError as exc:
        print(
            f"carebot: database error: {exc.orig}\n"
            "Is CAREBOT_DATABASE_URL right and the schema current (`carebot db upgrade`)?",
            file=sys.stderr,
        )
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="carebot", description=__doc__)
    sub = parser.add_subparsers(metavar="COMMAND")

    serve = sub.add_parser("serve", help="apply migrations and run the service")
    serve.add_argument("--host", help="listen address (default CAREBOT_HOST)")
    serve.add_argument("--port", type=int, help="listen port (default CAREBOT_PORT)")
    serve.add_argument("--no-migrate", action="store_true",
                       help="do not apply migrations on start")
    serve.add_argument("--workers", type=int, default=1,
                       help="processes sharing the port (PostgreSQL only; default 1)")
    serve.set_defaults(func=_serve)

    db = sub.add_parser("db", help="database schema").add_subparsers(metavar="ACTION")
    up = db.add_parser("upgrade", help="apply alembic migrations up to head")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(func=_db_upgrade)

    kb = sub.add_parser("kb", help="knowledge base").add_subparsers(metavar="ACTION")
    imp = kb.add_parser("import", help="validate and load knowledge/*.yaml into the database")
    imp.add_argument("path", nargs="?", help="file or directory (default CAREBOT_KNOWLEDGE_DIR)")
    imp.set_defaults(func=_kb_import)
    ev = kb.add_parser("eval", help="measure the FAQ matcher on labelled questions")
    ev.add_argument("--kb", metavar="DIR_OR_FILE",
                    help="knowledge YAML (default CAREBOT_KNOWLEDGE_DIR)")
    ev.add_argument("--queries", required=True, metavar="FILE.csv",
                    help="CSV with columns text,expected (empty expected: should hand off)")
    ev.add_argument("--language", metavar="CODE",
                    help="the queries' language (e.g. de): the report is labelled with it and "
                         "says how many the language rule would answer in it")
    ev.add_argument("--answer-threshold", type=float,
                    help="default CAREBOT_ANSWER_THRESHOLD")
    ev.add_argument("--suggest-threshold", type=float,
                    help="default CAREBOT_SUGGEST_THRESHOLD")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.set_defaults(func=_kb_eval)
    conv = kb.add_parser("from-csv", help="turn a text,category CSV into a knowledge file")
    conv.add_argument("csv", metavar="FILE.csv")
    conv.add_argument("out", metavar="OUT.yaml")
    conv.add_argument("--per-faq", type=int, metavar="N",
                      help="keep the first N texts of each category (default all)")
    conv.set_defaults(func=_kb_from_csv)

    agents = sub.add_parser("agents", help="support agents").add_subparsers(metavar="ACTION")
    add = agents.add_parser("add", help="create an agent; print its token and a password "
                                        "invite link (each shown once)")
    add.add_argument("name")
    add.add_argument("--role", choices=["agent", "manager", "admin"], default="agent")
    add.add_argument("--capacity", type=int, default=3,
                     help="open conversations at once (default 3)")
    add.set_defaults(func=_agents_add)
    agents.add_parser("list", help="list agents").set_defaults(func=_agents_list)
    dis = agents.add_parser("disable", help="disable an agent: their token and console "
                                            "sessions stop working, their conversations go "
                                            "back to the queue")
    dis.add_argument("name", help="agent name or id")
    dis.set_defaults(func=_agents_disable)
    ena = agents.add_parser("enable", help="let a disabled agent in again")
    ena.add_argument("name", help="agent name or id")
    ena.set_defaults(func=_agents_enable)
    change = agents.add_parser("set", help="change an agent's role or capacity")
    change.add_argument("name", help="agent name or id")
    change.add_argument("--role", choices=["agent", "manager", "admin"])
    change.add_argument("--capacity", type=int, help="open conversations at once")
    change.set_defaults(func=_agents_set)
    rot = agents.add_parser("rotate-token", help="give an agent a new bearer token (shown "
                                                 "once); the old one stops working")
    rot.add_argument("name", help="agent name or id")
    rot.set_defaults(func=_agents_rotate_token)
    pw = agents.add_parser("set-password", help="set an agent's console password (asked "
                                                "for; their console sessions end)")
    pw.add_argument("name", help="agent name or id")
    pw.add_argument("--password-stdin", action="store_true",
                    help="read the password from the first line of standard input")
    pw.set_defaults(func=_agents_set_password)
    inv = agents.add_parser("invite", help="reset an agent's password: print a one-time "
                                           "link with which they choose a new one")
    inv.add_argument("name", help="agent name or id")
    inv.set_defaults(func=_agents_invite)

    canned = sub.add_parser(
        "canned", help="canned replies agents insert with /shortcut"
    ).add_subparsers(metavar="ACTION")
    canned.add_parser("list", help="every canned reply").set_defaults(func=_canned_list)
    can_add = canned.add_parser("add", help="add a canned reply")
    can_add.add_argument("shortcut", help="1-32 of a-z 0-9 _ - (typed as /shortcut)")
    can_add.add_argument("--text", required=True, help="what is inserted")
    can_add.add_argument("--title", help="what the picker shows (default: the shortcut)")
    can_add.set_defaults(func=_canned_add)
    can_rm = canned.add_parser("remove", help="delete a canned reply")
    can_rm.add_argument("shortcut", help="its shortcut or id")
    can_rm.set_defaults(func=_canned_remove)

    codes = sub.add_parser(
        "codes", help="resolution codes agents close conversations with"
    ).add_subparsers(metavar="ACTION")
    codes.add_parser("list", help="the managed list").set_defaults(func=_codes_list)
    new = codes.add_parser("add", help="add a code")
    new.add_argument("code")
    new.add_argument("--label", required=True)
    new.add_argument("--no-survey", action="store_true", help="no survey after it")
    new.add_argument("--no-reopen", action="store_true",
                     help="a new message starts a new conversation instead (like spam)")
    new.set_defaults(func=_codes_add)
    change = codes.add_parser("set", help="change a code")
    change.add_argument("code")
    change.add_argument("--label")
    for flag, what in (("survey", "survey after it"), ("reopen", "a new message reopens"),
                       ("enabled", "agents may use it")):
        change.add_argument(f"--{flag}", choices=("yes", "no"), help=what)
    change.set_defaults(func=_codes_set)

    cust = sub.add_parser(
        "customers", help="customers' data: show, export, erase, link"
    ).add_subparsers(metavar="ACTION")
    ref_help = "a customer id, or CHANNEL:USER_ID (e.g. telegram:123456789)"
    show = cust.add_parser("show", help="the person: linked customers, contacts, conversations")
    show.add_argument("customer", help=ref_help)
    show.set_defaults(func=_customers_show)
    exp = cust.add_parser("export", help="everything stored about the person, as JSON")
    exp.add_argument("customer", help=ref_help)
    exp.add_argument("--output", "-o", metavar="FILE", help="write to FILE (default: stdout)")
    exp.set_defaults(func=_customers_export)
    era = cust.add_parser("erase", help="erase the person's texts and identifiers (the "
                                        "anonymous counts stay); cannot be undone")
    era.add_argument("customer", help=ref_help)
    era.add_argument("--yes", action="store_true", help="really erase (else: say what would be)")
    era.set_defaults(func=_customers_erase)
    lnk = cust.add_parser("link", help="CUSTOMER and OTHER are the same person")
    lnk.add_argument("customer", help=ref_help)
    lnk.add_argument("other", help=ref_help)
    lnk.set_defaults(func=_customers_link)
    unl = cust.add_parser("unlink", help="the customer is a person of their own again")
    unl.add_argument("customer", help=ref_help)
    unl.set_defaults(func=_customers_unlink)
    sites = sub.add_parser(
        "sites", help="websites whose chat widget is a channel"
    ).add_subparsers(metavar="ACTION")
    site_add = sites.add_parser(
        "add", help="add a site; prints the snippet for its pages and its identity secret")
    site_add.add_argument("name")
    site_add.add_argument("--origin", action="append", required=True, metavar="URL",
                          help="a page origin allowed to embed the chat, e.g. "
                               "https://shop.example (repeat for more)")
    _site_look_flags(site_add)
    site_add.set_defaults(func=_sites_add)
    sites.add_parser("list", help="the sites, their origins and snippets").set_defaults(
        func=_sites_list)
    site_set = sites.add_parser("set", help="change a site's origins, look or offline text")
    site_set.add_argument("site", help="site name or id")
    site_set.add_argument("--origin", action="append", metavar="URL",
                          help="replace the allowed origins (repeat for more)")
    site_set.add_argument("--enabled", choices=("yes", "no"), help="the chat is on")
    _site_look_flags(site_set)
    site_set.set_defaults(func=_sites_set)
    rotate = sites.add_parser(
        "rotate-secret", help="a new identity secret; signatures made with the old one fail")
    rotate.add_argument("site", help="site name or id")
    rotate.set_defaults(func=_sites_rotate)

    worker = sub.add_parser(
        "worker", help="deliver the outbox (and poll Telegram in polling mode) without the "
                       "web server"
    )
    worker.set_defaults(func=_worker)

    tg = sub.add_parser("telegram", help="the Telegram bot").add_subparsers(metavar="ACTION")
    hook = tg.add_parser("set-webhook", help="have Telegram post updates to URL, with "
                                             "CAREBOT_TELEGRAM_WEBHOOK_SECRET as secret token")
    hook.add_argument("url", help="https://your.host/telegram/webhook")
    hook.add_argument("--drop-pending-updates", action="store_true",
                      help="discard updates Telegram has queued so far")
    hook.set_defaults(func=_telegram_set_webhook)
    tg.add_parser("delete-webhook", help="remove the webhook (for polling mode)").set_defaults(
        func=_telegram_delete_webhook
    )
    tg.add_parser("info", help="the bot's name and webhook state").set_defaults(
        func=_telegram_info
    )

    st = sub.add_parser("stats", help="resolution statistics for a period, as a table")
    st.add_argument("--from", dest="start", metavar="DATE",
                    help="first local day YYYY-MM-DD or an ISO date-time (default: 30 days ago)")
    st.add_argument("--to", dest="end", metavar="DATE",
                    help="last local day, inclusive, or an ISO date-time (default: today)")
    st.add_argument("--tz", default="UTC", help="IANA time zone for days (default UTC)")
    st.add_argument("--channel", help="only this channel")
    st.add_argument("--agent", metavar="NAME_OR_ID", help="only this assigned agent")
    st.add_argument("--faq", metavar="ID", help="only conversations answered with this FAQ")
    st.add_argument("--tag", help="only conversations answered with an FAQ with this tag")
    st.add_argument("--json", action="store_true", help="print the summary as JSON")
    st.set_defaults(func=_stats)
    return parser


def _site_look_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--title", help="the chat window's title (default: the name)")
    parser.add_argument("--greeting", help="the first thing the chat says")
    parser.add_argument("--colour", help="the widget's colour, like #2563eb")
    parser.add_argument("--offline-text", help="shown while no agent is online, e.g. "
                                               "\"We reply within a day.\"")


def run_async(factory: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run one coroutine to completion for a CLI command."""
    return asyncio.run(factory())


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from carebot.db.migrate import upgrade
    from carebot.routing.policy import Policy
    from carebot.web.app import create_app
    from carebot.web.serving import run

    Policy.from_settings(settings)  # a schedule that does not parse stops here, in one line
    if args.workers < 1:
        raise CliError("--workers must be at least 1")
    if args.workers > 1 and settings.is_sqlite:
        raise CliError(
            "--workers > 1 needs PostgreSQL: SQLite allows one writer, so carebot on SQLite "
            "runs as one process (set CAREBOT_DATABASE_URL=postgresql+asyncpg://…)"
        )
    if not args.no_migrate:
        upgrade(settings.database_url)
    host = args.host or settings.host
    port = args.port or settings.port
    raise_file_limit()
    log.info("carebot listening on http://%s:%d (%d process(es))", host, port, args.workers)
    if args.workers == 1:
        run(create_app(settings), host, port, connection_limit(settings),
            loop=_new_event_loop())
        return 0
    return _serve_workers(settings, host, port, args.workers)


def raise_file_limit() -> int:
    """Raise this process's open-file limit to its hard limit; return the new soft limit.

    Every connection is a file descriptor; at the common soft limit of 1,024 a few thousand
    idle clients would make every other client's connection fail. The connection caps
    (`connection_limit`) stay below it.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d: %s", soft, exc)
    log.info("open-file limit: %d", soft)
    return soft


def connection_limit(settings: Settings) -> ConnectionLimit:
    """This process's caps on open connections: the configured ones, the total kept below
    the open-file limit."""
    import resource

    from carebot.web.serving import ConnectionLimit, effective_total

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    file_limit = soft if soft != resource.RLIM_INFINITY else 1 << 20
    total = effective_total(settings.max_connections, file_limit)
    if total < settings.max_connections:
        log.warning("CAREBOT_MAX_CONNECTIONS=%d is more than the open-file limit (%d) "
                    "allows; holding at most %d connections", settings.max_connections,
                    file_limit, total)
    return ConnectionLimit(total, settings.max_connections_per_ip)


def _new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (markedly less overhead per request), else asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def _serve_worker(settings: Settings, host: str, port: int) -> None:
    from carebot.web.app import create_app
    from carebot.web.serving import run

    # A spawned worker starts with a fresh interpreter: set its logging up like main() does.
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # SO_REUSEPORT: the kernel spreads incoming connections over the worker processes.
    run(create_app(settings), host, port, connection_limit(settings), reuse_port=True,
        loop=_new_event_loop())


def _serve_workers(settings: Settings, host: str, port: int, workers: int) -> int:
    """Run `workers` copies of the service on one port; stop them all on SIGINT/SIGTERM."""
    import multiprocessing
    import signal

    ctx = multiprocessing.get_context("spawn")  # a clean interpreter per worker
    # Only the first process runs the outbox worker and Telegram polling (one getUpdates
    # consumer per bot token); every process serves HTTP.
    procs = [
        ctx.Process(
            target=_serve_worker,
            args=(settings if n == 0 else dataclasses.replace(settings, run_worker=False),
                  host, port),
            name=f"carebot-{n}",
        )
        for n in range(workers)
    ]
    for proc in procs:
        proc.start()

    def forward(signum: int, _frame: object) -> None:
        for proc in procs:
            if proc.pid is not None and proc.is_alive():
                os.kill(proc.pid, signal.SIGINT)  # aiohttp shuts down gracefully on SIGINT

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    for proc in procs:
        proc.join()
    failed = [p.exitcode for p in procs if p.exitcode not in (0, -signal.SIGINT)]
    return 1 if failed else 0


def _db_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    from carebot.db.migrate import upgrade

    upgrade(settings.database_url, args.revision)
    print(f"database at revision {args.revision}")
    return 0


def _kb_eval(settings: Settings, args: argparse.Namespace) -> int:
    import json
    import math

    from carebot.matching.embedding_model import load_encoder, load_multilingual_encoder
    from carebot.matching.kb_eval import METRIC_KEYS, evaluate, format_report, read_queries
    from carebot.matching.knowledge import KnowledgeError, load_knowledge
    from carebot.matching.matcher import build_matcher

    answer = settings.answer_threshold if args.answer_threshold is None else args.answer_threshold
    suggest = (
        settings.suggest_threshold if args.suggest_threshold is None else args.suggest_threshold
    )
    if not 0.0 <= suggest <= answer <= 1.0:
        raise CliError(f"need 0 <= suggest threshold ({suggest}) <= answer threshold ({answer})"
                       " <= 1")
    with _input_errors(KnowledgeError, ValueError):
        docs = [loaded.doc for loaded in load_knowledge(Path(args.kb or settings.knowledge_dir))]
        queries = read_queries(args.queries)
    if not queries:
        raise CliError(f"{args.queries}: no queries")
    known = {d.id for d in docs}
    unknown = sorted({e for _, e in queries if e is not None and e not in known})
    if unknown:
        raise CliError(f"{args.queries}: expected ids not in the knowledge base: "
                       f"{', '.join(unknown[:10])}")
    encoder = load_encoder(
        settings.embedding_model, settings.embedding_precision, settings.embedding_threads
    )
    multilingual = load_multilingual_encoder(settings.multilingual_encoder)
    matcher = build_matcher(docs, encoder=encoder, multilingual=multilingual)
    metrics = evaluate(matcher, queries, answer, suggest)
    label = ""
    if args.language:
        metrics["language_detected"] = _language_detected(settings, args.language, queries)
        label = f", language {args.language}"
    if args.json:
        # JSON has no NaN: a metric without data (e.g. no out-of-scope queries) is null.
        out: dict[str, object] = {
            k: None if math.isnan(metrics[k]) else metrics[k]
            for k in (*METRIC_KEYS, "language_detected") if k in metrics}
        if args.language:
            out["language"] = args.language
        print(json.dumps(out))
    else:
        print(format_report(metrics, f"FAQ matcher on {args.queries} "
                                     f"(answer >= {answer}, hand off < {suggest}{label})"))
    return 0


def _language_detected(
    settings: Settings, language: str, queries: list[tuple[str, str | None]]
) -> float:
    """The share of the queries the language rule would answer in `language` for a customer
    about whom nothing else is known (detection only: no hint, nothing remembered)."""
    from carebot.domain.language import LanguagePolicy, choose
    from carebot.matching.language_detect import LanguageDetector

    policy = LanguagePolicy(settings.default_language, settings.language_list,
                            settings.language_min_confidence, settings.language_min_chars)
    if policy.normalise(language) is None:
        raise CliError(f"--language {language}: not one of CAREBOT_LANGUAGES "
                       f"({', '.join(policy.supported)})")
    detect = LanguageDetector(policy.supported)
    hits = sum(choose(policy, text=t, detected=detect(t)).language == policy.normalise(language)
               for t, _ in queries)
    return hits / len(queries)


def _kb_from_csv(settings: Settings, args: argparse.Namespace) -> int:
    from carebot.matching.kb_eval import csv_to_knowledge
    from carebot.matching.knowledge import MAX_TEXT

    if args.per_faq is not None and args.per_faq < 1:
        raise CliError("--per-faq must be at least 1")
    with _input_errors(ValueError):
        done = csv_to_knowledge(args.csv, args.out, args.per_faq)
    print(f"wrote {done.entries} entries to {args.out}")
    # The loader refuses longer texts; say what was left out so nobody wonders where it went.
    if done.skipped:
        print(f"warning: left out {done.skipped} texts over {MAX_TEXT} characters "
              "(the knowledge base's limit)")
    if done.truncated:
        print(f"warning: cut {done.truncated} texts or category names to {MAX_TEXT} "
              "characters")
    return 0


def _kb_import(settings: Settings, args: argparse.Namespace) -> int:
    from carebot.domain.clock import system_clock
    from carebot.matching.knowledge import KnowledgeError, import_knowledge, load_knowledge

    path = Path(args.path) if args.path else settings.knowledge_path
    try:
        loaded = load_knowledge(path)
    except KnowledgeError as exc:
        raise CliError(str(exc)) from None

    async def work(session: AsyncSession) -> int:
        from carebot.agents import audit

        now = system_clock()
        report = await import_knowledge(session, loaded, now)
        if report.added or report.updated or report.disabled:
            audit.record(session, audit.cli_actor(), "knowledge.imported", None, None, {
                "source": str(path)[:200], "added": report.added, "updated": report.updated,
                "disabled": report.disabled}, at=now)
        print(f"knowledge base imported from {path}: {report}")
        return 0

    return _with_session(settings, work)


def _with_session(
    settings: Settings, work: Callable[[AsyncSession], Coroutine[Any, Any, int]]
) -> int:
    from carebot.db.engine import make_engine, make_sessionmaker

    async def run() -> int:
        engine = make_engine(
            settings.database_url, sqlite_synchronous=settings.sqlite_synchronous
        )
        try:
            async with make_sessionmaker(engine).begin() as session:
                return await work(session)
        finally:
            await engine.dispose()

    return run_async(run)


def _agents_add(settings: Settings, args: argparse.Namespace) -> int:
    from carebot.agents import audit
    from carebot.agents.accounts import AgentError, create_agent
    from carebot.agents.passwords import create_invite
    from carebot.domain.clock import system_clock

    async def work(session: AsyncSession) -> int:
        now = system_clock()
        try:
            agent, token = await create_agent(
                session, args.name, args.role, args.capacity, now
            )
        except AgentError as exc:
            raise CliError(str(exc)) from None
        invite = create_invite(agent, now)
        audit.record(session, audit.cli_actor(), "agent.created", "agent", agent.id,
                     {"name": agent.name, "role": agent.role, "capacity": agent.capacity},
                     at=now)
        print(f"agent {agent.name} (id {agent.id}, role {agent.role}, capacity {agent.capacity})")
        print(f"token: {token}")
        _print_invite(settings, agent, invite)
        print("Store the token now: it is not shown again (only its hash is kept).")
        return 0

    return _with_session(settings, work)


def _print_invite(settings: Settings, agent: Any, invite: str) -> None:
    from carebot.agents.passwords import invite_link

    until = agent.invite_expires_at
    print(f"invite: {invite_link(invite, settings.public_url)}")
    print(f"Send {agent.name} the invite link to choose a console password (valid until "
          f"{until:%Y-%m-%d %H:%M} UTC, once).")


async def _find_agent(session: AsyncSession, name: str) -> Any:
    from carebot.agents.accounts import find_agent

    agent = await find_agent(session, name)
    if agent is None:
        raise CliError(f"no agent named {name!r} (nor with that id); see `carebot agents "
                       "list`")
    return agent


def _agents_list(settings: Settings, args: argparse.Namespace) -> int:
    from carebot.agents.accounts import list_agents
    from carebot.routing.agent_facts import agent_load

    async def work(session: AsyncSession) -> int:
        rows = await list_agents(session)
        if not rows:
            print("no agents yet: carebot agents add NAME --role agent")
            return 0
        print(f"{'id':>4}  {'name':<20} {'role':<8} {'status':<8} {'load':>9}  disabled")
        for a in rows:
            load = f"{await agent_load(session, a.id)}/{a.capacity}"
            print(f"{a.id:>4}  {a.name:<20} {a.role:<8} {a.status:<8} {load:>9}  "
                  f"{'yes' if a.disabled else 'no'}")
        return 0

    return _with_session(settings, work)


def _agents_disable(settings: Settings, args: argparse.Namespace) -> int:
    return _agents_update(settings, args.name, disabled=True)


def _agents_enable(settings: Settings, args: argparse.Namespace) -> int:
    return _agents_update(settings, args.name, disabled=False)


def _agents_set(settings: Settings, args: argparse.Namespace) -> int:
    if args.role is None and args.capacity is None:
        raise CliError("nothing to change: give --role and/or --capacity")
    return _agents_update(settings, args.name, role=args.role, capacity=args.capacity)


def _agents_update(settings: Settings, name: str, **changes: Any) -> int:
    """Change an agent through the same action as the API (disabling requeues their
    conversations; more capacity pulls waiting ones)."""
    from carebot.agents import audit
    from carebot.domain.clock import system_clock
    from carebot.domain.events import Effects
    from carebot.routing.actions import ConsoleError, update_agent
    from carebot.routing.agent_facts import agent_load
    from carebot.routing.policy import Policy

    async def work(session: AsyncSession, effects: Effects) -> int:
        agent = await _find_agent(session, name)
        was_disabled, before = agent.disabled, await agent_load(session, agent.id)
        state, now = audit.agent_state(agent), system_clock()
        try:
            agent = await update_agent(session, agent.id, now, effects,
                                       Policy.from_settings(settings), **changes)
        except ConsoleError as exc:
            raise CliError(exc.message) from None
        audit.record_agent_changes(session, audit.cli_actor(), agent, state, now)
        if changes.get("disabled") is True:
            moved = before if not was_disabled else 0
            print(f"agent {agent.name} disabled; {moved} conversation(s) back to the queue")
        elif changes.get("disabled") is False:
            print(f"agent {agent.name} enabled (offline until they go online)")
        else:
            print(f"agent {agent.name}: role {agent.role}, capacity {agent.capacity}")
        return 0

    return _with_write_session(settings, work)


def _agents_rotate_token(settings: Settings, args: argparse.Namespace) -> int:
    from carebot.agents.accounts import rotate_token

    async def work(session: AsyncSession, _effects: Any) -> int:
        agent = await _find_agent(session, args.name)
        token = rotate_token(agent)
        await session.flush()
        print(f"token: {token}")
        print(f"The old token of {agent.name} no longer works. Store this one now: it is not "
              "shown again.")
        return 0

    return _with_write_session(settings, work)


def _agents_set_password(settings: Settings, args: argparse.Namespace) -> int:
    from carebot.agents.accounts import AgentError
    from carebot.agents.passwords import change_password, check_password_rules

    password = _read_password(args.password_stdin)
    try:
        check_password_rules(password)
    except AgentError as exc:
        raise CliError(str(exc)) from None

    async def work(session: AsyncSession, _effects: Any) -> int:
        agent = await _find_agent(session, args.name)
        await change_password(session, agent, password)
        print(f"password of {agent.name} set; their console sessions were ended")
        return 0

    return _with_write_session(settings, work)


def _read_password(from_stdin: bool) -> str:
    """The new password: the first line of standard input, or typed twice at a prompt
    (never echoed, never an argument that `ps` would show)."""
    import getpass

    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise CliError("no terminal to ask for the password: use --password-stdin")
    first = getpass.getpass("New password: ")
    if getpass.getpass("Again: ") != first:
        raise CliError("the two passwords differ; nothing was changed")
    return first


def _agents_invite(settings: Settings, args: argparse.Namespace) -> int:
    from carebot.agents.passwords import reset_with_invite
    from carebot.domain.clock import system_clock

    async def work(session: AsyncSession, _effects: Any) -> int:
        agent = await _find_agent(session, args.name)
        if agent.disabled:
            raise CliError(f"{agent.name} is disabled; `carebot agents enable` them first")
        invite = await reset_with_invite(session, agent, system_clock())
        await session.flush()
        print(f"password of {agent.name} cleared and their console sessions ended")
        _print_invite(settings, agent, invite)
        return 0

    return _with_write_session(settings, work)


def _canned_list(settings: Settings, args: argparse.Namespace) -> int:
    from carebot.agents.canned import list_canned

    async def work(session: AsyncSession) -> int:
        rows = await list_canned(session)
        if not rows:
            print("no canned replies yet: carebot canned add SHORTCUT --text TEXT")
            return 0
        for row in rows:
            text = " ".join(row.text.split())
            print(f"/{row.shortcut:<20} {row.title[:30]:<30} "
                  f"{text[:60] + ('…' if len(text) > 60 else '')}")
        return 0

    return _with_session(settings, work)


def _canned_add(settings: Settings, args: argparse.Namespace) -> int:
    from carebot.agents.canned import CannedError, add_canned
    from carebot.domain.clock import system_clock

    async def work(session: AsyncSession, _effects: Any) -> int:
        try:
            row = await add_canned(session, args.shortcut, args.title, args.text,
                                   max_text=settings.max_text_chars, created_by=None,
                                   now=system_clock())
        except CannedError as exc:
            raise CliError(exc.message) from None
        print(f"added /{row.shortcut} ({row.title})")
        return 0

    return _with_write_session(settings, work)


def _canned_remove(settings: Settings, args: argparse.Namespace) -> int:
    from carebot.agents.canned import CannedError, find_canned, remove_canned

    async def work(session: AsyncSession, _effects: Any) -> int:
        try:
            row = await find_canned(session, args.shortcut)
        except CannedError as exc:
            raise CliError(exc.message) from None
        await remove_canned(session, row)
        print(f"removed /{row.shortcut}")
        return 0

    return _with_write_session(settings, work)


def _with_write_session(
    settings: Settings, work: Callable[[AsyncSession, Any], Coroutine[Any, Any, int]],
    after: Callable[[Any], Coroutine[Any, Any, Any]] | None = None,
) -> int:
    """Run `work` in a writing transaction; then tell running services what it did (on
    PostgreSQL through NOTIFY, so consoles of a disabled agent close at once; a SQLite
    service notices within seconds by itself), and run `after(engine)`."""
    from carebot.db.engine import make_engine, make_write_sessionmaker
    from carebot.domain.events import Effects
    from carebot.web.fanout import PgNotifyHub, asyncpg_dsn

    async def run() -> int:
        engine = make_engine(
            settings.database_url, sqlite_synchronous=settings.sqlite_synchronous
        )
        effects = Effects()
        try:
            async with make_write_sessionmaker(engine).begin() as session:
                result = await work(session, effects)
            if effects.events and not settings.is_sqlite:
                await PgNotifyHub(engine, asyncpg_dsn(settings.database_url)).publish(
                    effects.events)
            if after is not None:
                await after(engine)
            return result
        finally:
            await engine.dispose()

    return run_async(run)


def _codes_list(settings: Settings, args: argparse.Namespace) -> int:
    from carebot.agents.codes import list_codes

    async def work(session: AsyncSession) -> int:
        print(f"{'code':<20} {'survey':<7} {'reopen':<7} {'enabled':<8} label")
        for c in await list_codes(session):
            print(f"{c.code:<20} {_yes(c.survey):<7} {_yes(c.may_reopen):<7} "
                  f"{_yes(c.enabled):<8} {c.label}")
        return 0

    return _with_session(settings, work)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _codes_add(settings: Settings, args: argparse.Namespace) -> int:
    from carebot.agents import audit
    from carebot.agents.codes import CodeError, add_code, code_dict
    from carebot.domain.clock import system_clock

    async def work(session: AsyncSession) -> int:
        now = system_clock()
        try:
            row = await add_code(session, args.code, args.label, survey=not args.no_survey,
                                 may_reopen=not args.no_reopen, now=now)
        except CodeError as exc:
            raise CliError(exc.message) from None
        audit.record(session, audit.cli_actor(), "code.created", "resolution_code", row.code,
                     {k: v for k, v in code_dict(row).items() if k != "code"}, at=now)
        print(f"added {code_dict(row)}")
        return 0

    return _with_session(settings, work)


def _codes_set(settings: Settings, args: argparse.Namespace) -> int:
    from carebot.agents import audit
    from carebot.agents.codes import CodeError, change_code, code_dict
    from carebot.domain.clock import system_clock

    def flag(value: str | None) -> bool | None:
        return None if value is None else value == "yes"

    async def work(session: AsyncSession) -> int:
        changes = {"label": args.label, "survey": flag(args.survey),
                   "may_reopen": flag(args.reopen), "enabled": flag(args.enabled)}
        try:
            row = await change_code(session, args.code, **changes)
        except CodeError as exc:
            raise CliError(exc.message) from None
        data = code_dict(row)
        audit.record(session, audit.cli_actor(), "code.changed", "resolution_code", row.code,
                     {k: data[k] for k, v in changes.items() if v is not None},
                     at=system_clock())
        print(f"changed {code_dict(row)}")
        return 0

    return _with_session(settings, work)


@contextmanager
def _customer_errors() -> Iterator[None]:
    """An unknown or malformed customer reference as one CLI line."""
    from carebot.routing.actions import ConsoleError

    try:
        yield
    except ConsoleError as exc:
        raise CliError(exc.message) from None


def _customers_show(settings: Settings, args: argparse.Namespace) -> int:
    import json

    from carebot.routing import people

    async def work(session: AsyncSession) -> int:
        with _customer_errors():
            customer_id = await people.find_customer(session, args.customer)
            view = await people.person_view(session, customer_id)
        print(json.dumps(view, indent=2, ensure_ascii=False))
        return 0

    return _with_session(settings, work)


def _site_base(settings: Settings) -> str:
    if settings.public_url:
        return settings.public_url.rstrip("/")
    return f"http://{settings.host}:{settings.port}"


def _print_site(settings: Settings, site: Any, *, secret: bool) -> None:
    from carebot.channels import web

    print(f"site {site.name} (id {site.id}, key {site.key}, "
          f"{'enabled' if site.enabled else 'disabled'})")
    print(f"origins: {' '.join(site.origins)}")
    print(f"snippet: {web.snippet(_site_base(settings), site.key)}")
    if secret:
        print(f"secret:  {site.secret}")


def _site_changes(args: argparse.Namespace) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for flag in ("title", "greeting", "colour", "offline_text"):
        if getattr(args, flag, None) is not None:
            changes[flag] = getattr(args, flag)
    return changes


def _sites_add(settings: Settings, args: argparse.Namespace) -> int:
    from carebot.channels import web_store
    from carebot.domain.clock import system_clock

    async def work(session: AsyncSession) -> int:
        try:
            site = await web_store.create_site(session, args.name, args.origin, system_clock(),
                                               **_site_changes(args))
        except web_store.SiteError as exc:
            raise CliError(exc.message) from None
        _print_site(settings, site, secret=True)
        print("Put the snippet on the site's pages. Keep the secret on the site's server: "
              "it signs logged-in users' ids (docs/web-chat.md).")
        if not settings.public_url:
            print("CAREBOT_PUBLIC_URL is not set: the snippet uses this machine's address; "
                  "set it to where sites reach carebot.")
        return 0

    return _with_session(settings, work)


def _customers_export(settings: Settings, args: argparse.Namespace) -> int:
    import json

    from carebot.agents import audit
    from carebot.domain.clock import system_clock
    from carebot.routing import people

    async def work(session: AsyncSession, _effects: Any) -> int:
        now = system_clock()
        with _customer_errors():
            customer_id = await people.find_customer(session, args.customer)
            document = await people.export(session, customer_id, now)
        text = json.dumps(document, indent=1, ensure_ascii=False)
        if args.output:
            with _input_errors():
                await asyncio.to_thread(Path(args.output).write_text, text + "\n", "utf-8")
            print(f"customer {customer_id}: {len(document['conversations'])} conversation(s) "
                  f"written to {args.output}", file=sys.stderr)
        else:
            print(text)
        audit.record(session, audit.cli_actor(), "customer.exported", "customer", customer_id,
                     {"customer_ids": document["customer_ids"],
                      "conversations": len(document["conversations"])}, at=now)
        return 0

    return _with_write_session(settings, work)


def _customers_erase(settings: Settings, args: argparse.Namespace) -> int:
    from carebot.agents import audit
    from carebot.db.checkpoint import truncate_wal
    from carebot.domain.clock import system_clock
    from carebot.routing import erasure, people
    from carebot.routing.linked import group_ids
    from carebot.routing.policy import Policy

    async def work(session: AsyncSession, effects: Any) -> int:
        with _customer_errors():
            customer_id = await people.find_customer(session, args.customer)
        if not args.yes:
            ids = await group_ids(session, customer_id)
            view = await people.person_view(session, customer_id)
            raise CliError(
                f"this erases customer {customer_id} (as one person: customers "
                f"{', '.join(map(str, ids))}; {len(view['contacts'])} contact(s), "
                f"{len(view['conversations'])} conversation(s)) and cannot be undone; "
                "run again with --yes")
        report = await erasure.erase(session, customer_id, system_clock(), audit.cli_actor(),
                                     effects, Policy.from_settings(settings))
        if report.already_erased:
            print(f"customer {customer_id} was erased already; nothing changed")
        else:
            print(f"customer {customer_id} erased (customers "
                  f"{', '.join(map(str, report.customer_ids))}): {report.conversations} "
                  f"conversation(s) ({report.closed} closed), {report.messages} message(s), "
                  f"{report.touchpoints} touchpoint(s), {report.surveys} survey comment(s), "
                  f"{report.outbox} outbox row(s), {report.contacts} contact(s)")
        return 0

    return _with_write_session(settings, work, after=truncate_wal)


def _customers_link(settings: Settings, args: argparse.Namespace) -> int:
    from carebot.agents import audit
    from carebot.domain.clock import system_clock
    from carebot.routing import people

    async def work(session: AsyncSession, _effects: Any) -> int:
        with _customer_errors():
            first = await people.find_customer(session, args.customer)
            other = await people.find_customer(session, args.other)
            ids = await people.link(session, first, other, audit.cli_actor(), system_clock())
        print(f"customers {', '.join(map(str, ids))} are one person now")
        return 0

    return _with_write_session(settings, work)


def _customers_unlink(settings: Settings, args: argparse.Namespace) -> int:
    from carebot.agents import audit
    from carebot.domain.clock import system_clock
    from carebot.routing import people

    async def work(session: AsyncSession, _effects: Any) -> int:
        with _customer_errors():
            customer_id = await people.find_customer(session, args.customer)
            await people.unlink(session, customer_id, audit.cli_actor(), system_clock())
        print(f"customer {customer_id} is a person of their own again")
        return 0

    return _with_write_session(settings, work)


def _sites_list(settings: Settings, args: argparse.Namespace) -> int:
    from carebot.channels import web_store

    async def work(session: AsyncSession) -> int:
        sites = await web_store.list_sites(session)
        if not sites:
            print("no sites yet: carebot sites add NAME --origin https://shop.example")
        for site in sites:
            _print_site(settings, site, secret=False)
        return 0

    return _with_session(settings, work)


def _sites_set(settings: Settings, args: argparse.Namespace) -> int:
    from carebot.channels import web_store
    from carebot.domain.clock import system_clock

    async def work(session: AsyncSession) -> int:
        site = await web_store.find_site(session, args.site)
        if site is None:
            raise CliError(f"no site named {args.site!r}")
        changes = _site_changes(args)
        if args.origin:
            changes["origins"] = args.origin
        if args.enabled is not None:
            changes["enabled"] = args.enabled == "yes"
        try:
            site = await web_store.update_site(session, site.id, changes, system_clock())
        except web_store.SiteError as exc:
            raise CliError(exc.message) from None
        _print_site(settings, site, secret=False)
        return 0

    return _with_session(settings, work)


def _sites_rotate(settings: Settings, args: argparse.Namespace) -> int:
    from carebot.channels import web_store
    from carebot.domain.clock import system_clock

    async def work(session: AsyncSession) -> int:
        site = await web_store.find_site(session, args.site)
        if site is None:
            raise CliError(f"no site named {args.site!r}")
        site = await web_store.rotate_secret(session, site.id, system_clock())
        _print_site(settings, site, secret=True)
        return 0

    return _with_session(settings, work)


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    import signal

    from carebot.web.heap import frozen_heap
    from carebot.web.keys import SETTINGS
    from carebot.web.worker_app import create_worker_app, running
    from carebot.web.workers import polls_telegram

    async def run() -> int:
        # Delivery only (no HTTP listener): see carebot.web.worker_app for what it starts.
        async with running(create_worker_app(settings)) as app:
            # As `carebot serve` does (carebot.web.heap): a worker that polls Telegram holds
            # the encoder and the FAQ index too, and full collections would walk them.
            async with frozen_heap():
                stop = asyncio.Event()
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.add_signal_handler(sig, stop.set)
                log.info("carebot worker running: outbox delivery%s", " and Telegram polling"
                         if polls_telegram(app[SETTINGS]) else "")
                try:
                    await stop.wait()
                finally:
                    log.info("carebot worker stopping")
        return 0

    return run_async(run)


def _telegram_admin(
    settings: Settings, action: Callable[[Settings], Coroutine[Any, Any, str]]
) -> int:
    from carebot.channels.telegram import TelegramSetupError

    async def run() -> int:
        try:
            print(await action(settings))
        except TelegramSetupError as exc:
            raise CliError(str(exc)) from None
        return 0

    return run_async(run)


def _telegram_set_webhook(settings: Settings, args: argparse.Namespace) -> int:
    from carebot.channels.telegram import set_webhook

    return _telegram_admin(
        settings, lambda s: set_webhook(s, args.url, drop_pending=args.drop_pending_updates)
    )


def _telegram_delete_webhook(settings: Settings, args: argparse.Namespace) -> int:
    from carebot.channels.telegram import delete_webhook

    return _telegram_admin(settings, delete_webhook)


def _telegram_info(settings: Settings, args: argparse.Namespace) -> int:
    from carebot.channels.telegram import webhook_info

    return _telegram_admin(settings, webhook_info)


def _stats(settings: Settings, args: argparse.Namespace) -> int:
    import json
    from datetime import timedelta

    from carebot.domain.clock import system_clock
    from carebot.stats import metrics as stats
    from carebot.stats.period import StatsInputError, parse_period
    from carebot.stats.report import render_summary
    from carebot.stats.scope import Filters, StatsQuery

    try:
        period = parse_period(args.start, args.end, args.tz, system_clock())
    except StatsInputError as exc:
        raise CliError(str(exc)) from None
    agent_id = _agent_id(settings, args.agent) if args.agent is not None else None
    query = StatsQuery(
        period,
        Filters(channel=args.channel, agent_id=agent_id, faq_id=args.faq, tag=args.tag),
        repeat_window=timedelta(days=settings.stats_repeat_window_days),
        sla_seconds=settings.queue_sla_seconds,
    )

    async def work(session: AsyncSession) -> int:
        summary = await stats.summary(session, query)
        print(json.dumps(summary, indent=2) if args.json else render_summary(summary))
        return 0

    return _with_session(settings, work)


def _agent_id(settings: Settings, name_or_id: str) -> int:
    """An agent's id from their name or id (CliError when there is none)."""

    async def work(session: AsyncSession) -> int:
        return int((await _find_agent(session, name_or_id)).id)

    return _with_session(settings, work)


if __name__ == "__main__":
    sys.exit(main())
