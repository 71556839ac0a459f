"""A SQLite connection for SQLAlchemy's aiosqlite dialect that runs each call on the event loop's
own thread, instead of handing it to a thread of its own as aiosqlite does.

Why not aiosqlite itself: it runs every call (cursor, execute, fetchall, close: four per statement)
on the connection's thread and resumes the loop through a queue and a self-pipe, about 60 µs of CPU
per hop; a POST runs a dozen statements, each taking tens of microseconds in SQLite itself. The
calls here are the same `sqlite3` calls, made where the caller is.

What keeps the loop responsive:
- In-process writers queue on an asyncio lock (`SqliteEngine.begin`), and WAL readers never wait
  for a writer, so a statement never waits on a lock held in this process.
- Another process's write lock (a second server or a separately run scheduler on the same file) is
  not waited for inside SQLite (`busy_timeout=0`): SQLITE_BUSY is retried after an `asyncio.sleep`,
  up to the same 30 s a busy timeout would give. A statement that returned SQLITE_BUSY did nothing,
  so it is safe to run again.
Statements are short (indexed reads of one patient's rows, small multi-row inserts); the longest,
reading a 3,000-Observation record, holds the loop about as long as parsing it does.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterable
from typing import Any

_BUSY_WAIT_SECONDS = 30.0


def _busy(error: sqlite3.OperationalError) -> bool:
    return getattr(error, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) \
        or "database is locked" in str(error)


async def _retrying_busy(call: Callable[[], Any]) -> Any:
    """Run `call`; while another process holds the lock, wait without blocking the loop."""
    deadline, pause = time.monotonic() + _BUSY_WAIT_SECONDS, 0.001
    while True:
        try:
            return call()
        except sqlite3.OperationalError as error:
            if not _busy(error) or time.monotonic() > deadline:
                raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.05)


class InlineCursor:
    """The subset of `aiosqlite.Cursor` that SQLAlchemy's adapter uses."""

    __slots__ = ("_cursor",)

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._cursor.close()

    async def execute(self, sql: str, parameters: Iterable[Any] = ()) -> InlineCursor:
        await _retrying_busy(lambda: self._cursor.execute(sql, parameters))
        return self

    async def executemany(self, sql: str, parameters: Iterable[Iterable[Any]]) -> InlineCursor:
        rows = list(parameters)
        await _retrying_busy(lambda: self._cursor.executemany(sql, rows))
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    async def setinputsizes(self, *sizes: Any) -> None:
        return None

    async def nextset(self) -> None:
        return None

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class _Immediate:
    """aiosqlite's internal call queue, which SQLAlchemy uses to set `isolation_level`: here a
    call is made at once and its future resolved."""

    __slots__ = ()

    @staticmethod
    def put_nowait(item: tuple[asyncio.Future[Any], Callable[[], Any]]) -> None:
        future, function = item
        try:
            future.set_result(function())
        except Exception as error:  # noqa: BLE001  (handed to the awaiting caller)
            future.set_exception(error)


class InlineConnection:
    """The subset of `aiosqlite.Connection` that SQLAlchemy's aiosqlite dialect uses."""

    _tx = _Immediate()

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._conn = connection
        self._connection: sqlite3.Connection | None = connection

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    def cursor(self) -> InlineCursor:
        return InlineCursor(self._conn.cursor())

    async def commit(self) -> None:
        await _retrying_busy(self._conn.commit)

    async def rollback(self) -> None:
        self._conn.rollback()

    async def close(self) -> None:
        if self._connection is not None:
            self._connection = None
            self._conn.close()

    def stop(self) -> None:
        if self._connection is not None:
            self._connection = None
            self._conn.close()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)


def inline_creator(path: str) -> Callable[[], Any]:
    """`create_async_engine(..., async_creator=...)` for a SQLite file: no busy timeout inside
    SQLite (see the module docstring), usable from whichever thread the pool closes it on."""

    async def connect() -> InlineConnection:
        connection = sqlite3.connect(path, timeout=0, check_same_thread=False, isolation_level=None)
        return InlineConnection(connection)

    return connect
