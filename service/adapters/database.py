"""Async engines for the embedded default (SQLite file) and for PostgreSQL, plus migrations."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from service.adapters.sqlite_inline import inline_creator

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_MIGRATION_LOCK = 7_242_001  # pg advisory lock id: replicas starting together migrate one at a time
_WRITING = "carepath_writing"  # connection execution option set by SqliteEngine.begin()


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


class _Writer:
    """The one in-process path to SQLite's write lock: writers queue here in arrival order (an
    asyncio lock) instead of polling the file lock with the busy handler's growing sleeps."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.holder: asyncio.Task[Any] | None = None


_writers: weakref.WeakKeyDictionary[Engine, _Writer] = weakref.WeakKeyDictionary()


class SqliteEngine(AsyncEngine):
    """SQLite in WAL mode with one writer path and reads that never wait for it.

    `begin()` (every write in this code base) queues for the in-process writer, then starts with
    BEGIN IMMEDIATE, so two writers never race to upgrade a read lock. `connect()` (every read:
    `$apply`, searches, CDS) runs a deferred transaction on a WAL snapshot: it takes no write lock
    and does not wait for a writer, nor a writer for it. Several processes on one file still
    serialise on SQLite's own lock (busy timeout).
    """

    __slots__ = ()

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        writer = _writers.setdefault(self.sync_engine, _Writer())
        task = asyncio.current_task()
        if task is not None and writer.holder is task:
            raise RuntimeError("nested write transaction: this task already holds the writer")
        async with writer.lock:
            writer.holder = task
            try:
                async with self.connect() as conn:
                    await conn.execution_options(**{_WRITING: True})
                    async with conn.begin():
                        yield conn
            finally:
                writer.holder = None


def holds_writer(engine: AsyncEngine) -> bool:
    """Whether the current task is inside a SQLite write transaction of this engine (work it
    hands to another task and awaits would wait for that transaction forever)."""
    writer = _writers.get(engine.sync_engine)
    task = asyncio.current_task()
    return writer is not None and task is not None and writer.holder is task


def create_engine(url: str, **options: Any) -> AsyncEngine:
    """Statement parameters (patient ids, resources) never appear in errors or logs
    (`hide_parameters`). SQLite: WAL, a busy timeout, one writer path and lock-free reads (see
    `SqliteEngine`); PostgreSQL: a connection pool."""
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = SqliteEngine(create_async_engine(url, async_creator=inline_creator(path or ":memory:"),
                                                  hide_parameters=True, **options).sync_engine)

        @event.listens_for(engine.sync_engine, "connect")
        def _connect(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk (fsync of the WAL) before the response says so, also across
            # a power loss; NORMAL would only survive a crash of this process. Its cost (one fsync,
            # ~2.5 ms wall here) is paid once per group commit, not per write.
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _begin(connection: Connection) -> None:
            writing = connection.get_execution_options().get(_WRITING)
            connection.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")

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
    """Transaction-scoped PostgreSQL advisory locks, taken in sorted order (no deadlocks), in one
    statement however many keys there are."""
    if conn.dialect.name == "postgresql" and keys:
        await conn.execute(text(
            "SELECT count(pg_advisory_xact_lock(hashtextextended(k, 0))) FROM "
            "(SELECT DISTINCT unnest(CAST(:keys AS text[])) AS k ORDER BY 1) AS ordered"),
            {"keys": list(keys)})
