"""The `carebot` command line: serve, db, kb, agents, telegram, stats."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from carebot.settings import Settings, SettingsError

log = logging.getLogger("carebot")


class CliError(Exception):
    """A problem to report to the user as one readable line, exit status 2."""


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
    except (CliError, SettingsError) as exc:
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
    serve.set_defaults(func=_serve)

    db = sub.add_parser("db", help="database schema").add_subparsers(metavar="ACTION")
    up = db.add_parser("upgrade", help="apply alembic migrations up to head")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(func=_db_upgrade)

    kb = sub.add_parser("kb", help="knowledge base").add_subparsers(metavar="ACTION")
    imp = kb.add_parser("import", help="validate and load knowledge/*.yaml into the database")
    imp.add_argument("path", nargs="?", help="file or directory (default CAREBOT_KNOWLEDGE_DIR)")
    imp.set_defaults(func=_kb_import)

    agents = sub.add_parser("agents", help="support agents").add_subparsers(metavar="ACTION")
    add = agents.add_parser("add", help="create an agent and print its token (shown once)")
    add.add_argument("name")
    add.add_argument("--role", choices=["agent", "manager", "admin"], default="agent")
    add.add_argument("--capacity", type=int, default=3,
                     help="open conversations at once (default 3)")
    add.set_defaults(func=_agents_add)
    agents.add_parser("list", help="list agents").set_defaults(func=_agents_list)
    dis = agents.add_parser("disable", help="disable an agent; their token stops working")
    dis.add_argument("name", help="agent name or id")
    dis.set_defaults(func=_agents_disable)
    return parser


def run_async(factory: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run one coroutine to completion for a CLI command."""
    return asyncio.run(factory())


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from aiohttp import web

    from carebot.db.migrate import upgrade
    from carebot.web.app import create_app

    if not args.no_migrate:
        upgrade(settings.database_url)
    host = args.host or settings.host
    port = args.port or settings.port
    log.info("carebot listening on http://%s:%d", host, port)
    web.run_app(create_app(settings), host=host, port=port, print=None)
    return 0


def _db_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    from carebot.db.migrate import upgrade

    upgrade(settings.database_url, args.revision)
    print(f"database at revision {args.revision}")
    return 0


def _kb_import(settings: Settings, args: argparse.Namespace) -> int:
    from carebot.care.clock import system_clock
    from carebot.care.knowledge import KnowledgeError, import_knowledge, load_knowledge

    path = Path(args.path) if args.path else settings.knowledge_path
    try:
        loaded = load_knowledge(path)
    except KnowledgeError as exc:
        raise CliError(str(exc)) from None

    async def work(session: AsyncSession) -> int:
        report = await import_knowledge(session, loaded, system_clock())
        print(f"knowledge base imported from {path}: {report}")
        return 0

    return _with_session(settings, work)


def _with_session(
    settings: Settings, work: Callable[[AsyncSession], Coroutine[Any, Any, int]]
) -> int:
    from carebot.db.engine import make_engine, make_sessionmaker

    async def run() -> int:
        engine = make_engine(settings.database_url)
        try:
            async with make_sessionmaker(engine).begin() as session:
                return await work(session)
        finally:
            await engine.dispose()

    return run_async(run)


def _agents_add(settings: Settings, args: argparse.Namespace) -> int:
    from carebot.care.agents import AgentError, create_agent
    from carebot.care.clock import system_clock

    async def work(session: AsyncSession) -> int:
        try:
            agent, token = await create_agent(
                session, args.name, args.role, args.capacity, system_clock()
            )
        except AgentError as exc:
            raise CliError(str(exc)) from None
        print(f"agent {agent.name} (id {agent.id}, role {agent.role}, capacity {agent.capacity})")
        print(f"token: {token}")
        print("Store the token now: it is not shown again (only its hash is kept).")
        return 0

    return _with_session(settings, work)


def _agents_list(settings: Settings, args: argparse.Namespace) -> int:
    from carebot.care.agents import list_agents
    from carebot.care.assignment import agent_load

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
    from carebot.care.agents import find_agent

    async def work(session: AsyncSession) -> int:
        agent = await find_agent(session, args.name)
        if agent is None:
            raise CliError(f"no agent named {args.name!r}")
        agent.disabled = True
        agent.status = "offline"
        print(f"agent {agent.name} disabled")
        return 0

    return _with_session(settings, work)


if __name__ == "__main__":
    sys.exit(main())
