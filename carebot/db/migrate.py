"""Apply alembic migrations from code (`carebot db upgrade`, `carebot serve`, tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(database_url: str) -> Config:
    """An alembic Config pointing at migrations/ and the given database."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser treats % as interpolation; URLs may contain it (encoded passwords).
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the schema up to `revision`. Blocking: call it outside the event loop."""
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    """Take the schema down to `revision` (used by migration tests)."""
    command.downgrade(alembic_config(database_url), revision)


def wipe_postgres_schema(database_url: str) -> None:
    """Drop and recreate the `public` schema (tests and benchmarks on a throwaway database)."""
    import asyncio

    from sqlalchemy import text

    from carebot.db.engine import make_engine

    async def run() -> None:
        engine = make_engine(database_url, timeout=None)
        try:
            async with engine.begin() as conn:
                await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
                await conn.execute(text("CREATE SCHEMA public"))
        finally:
            await engine.dispose()

    asyncio.run(run())
