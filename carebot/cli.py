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
    from carebot.db.engine import make_engine, make_sessionmaker

    path = Path(args.path) if args.path else settings.knowledge_path
    try:
        loaded = load_knowledge(path)
    except KnowledgeError as exc:
        raise CliError(str(exc)) from None

    async def run() -> int:
        engine = make_engine(settings.database_url)
        try:
            async with make_sessionmaker(engine).begin() as session:
                report = await import_knowledge(session, loaded, system_clock())
        finally:
            await engine.dispose()
        print(f"knowledge base imported from {path}: {report}")
        return 0

    return run_async(run)


if __name__ == "__main__":
    sys.exit(main())
