"""Async engines for the embedded default (SQLite file) and for PostgreSQL, plus migrations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_MIGRATION_LOCK = 7_242_001  # pg advisory lock id: replicas starting together migrate one at a time


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def create_engine(url: str, **options: Any) -> AsyncEngine:
    """Statement parameters (patient ids, resources) never appear in errors or logs
    (`hide_parameters`). SQLite gets WAL, a busy timeout and BEGIN IMMEDIATE (one writer, no
    upgrade deadlocks)."""
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30}, hide_parameters=True,
                                     **options)

        @event.listens_for(engine.sync_engine, "connect")
        def _connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _begin(connection: Connection) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True,
                               hide_parameters=True, **options)


def _upgrade(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to head (alembic), serialised across replicas on PostgreSQL."""
    async with engine.begin() as conn:
        if not is_sqlite(engine):
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
        await conn.run_sync(_upgrade)


async def lock_patient(conn: AsyncConnection, patient_id: str) -> None:
    """Serialise evaluations of one patient across replicas (SQLite's write lock already does)."""
    await lock_keys(conn, [patient_id])


async def lock_keys(conn: AsyncConnection, keys: list[str]) -> None:
    """Transaction-scoped PostgreSQL advisory locks, taken in sorted order (no deadlocks)."""
    if conn.dialect.name == "postgresql":
        for key in sorted(set(keys)):
            await conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:p, 0))"),
                               {"p": key})
