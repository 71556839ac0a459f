"""The record of JWT ids already used, kept in the database so that a CDS Hooks JWT replayed to
any replica within its lifetime is refused.

Calls that arrive while a write is under way are recorded together by the next one: one
transaction, one multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING, one commit. Concurrent CDS
calls then share a write instead of queueing for the SQLite writer one by one (and a PostgreSQL
connection each), and a lone call is written at once, as before. Each caller learns whether its
own jti was new; the same jti twice in one batch is a replay too.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from service.adapters.store import insert_for, prebuilt
from service.adapters.tables import jwt_replay

_PURGE_EVERY = 60.0  # seconds between deletions of expired rows (not one per call)
_MOST_PER_WRITE = 500  # rows in one INSERT (3 parameters each, far below either database's limit)


@dataclass(frozen=True)
class _Use:
    digest: str
    issuer: str
    expires_at: datetime
    first: asyncio.Future[bool]


class JtiLedger:
    """One per app (and so per process); the database makes it shared across replicas."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._waiting: list[_Use] = []
        self._writer: asyncio.Task[None] | None = None
        self._purge_after = 0.0

    async def first_use(self, issuer: str, jti: str, expires_at: datetime) -> bool:
        """Record the jti; False when it was recorded before (a replay)."""
        use = _Use(hashlib.sha256(f"{issuer}\n{jti}".encode()).hexdigest(), issuer[:500], expires_at,
                   asyncio.get_running_loop().create_future())
        self._waiting.append(use)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_waiting())
        return await use.first

    async def _write_waiting(self) -> None:
        batch: list[_Use] = []
        try:
            while self._waiting:
                batch = self._waiting[:_MOST_PER_WRITE]
                del self._waiting[:_MOST_PER_WRITE]
                try:
                    new = await self._insert(batch)
                except Exception as exc:  # noqa: BLE001  (each waiting caller gets the error)
                    for use in batch:
                        if not use.first.done():
                            use.first.set_exception(exc)
                    continue
                for use in batch:
                    if not use.first.done():
                        use.first.set_result(use.digest in new)
                    new.discard(use.digest)  # the same jti again in this batch: a replay
        finally:  # cancelled (shutdown): nobody is left waiting for an answer that cannot come
            for use in [*batch, *self._waiting]:
                if not use.first.done():
                    use.first.cancel()
            self._waiting.clear()

    async def _insert(self, batch: list[_Use]) -> set[str]:
        """The digests of the batch that were not recorded before."""
        rows = list({u.digest: {"jti": u.digest, "issuer": u.issuer, "expires_at": u.expires_at}
                     for u in reversed(batch)}.values())
        async with self.engine.begin() as conn:
            # built once per dialect (`prebuilt`); the second runs as one multi-row INSERT
            record = prebuilt(conn, "jti-record", lambda d: insert_for(d, jwt_replay).on_conflict_do_nothing())
            record_all = prebuilt(conn, "jti-record-all", lambda d: insert_for(d, jwt_replay)
                                  .on_conflict_do_nothing().returning(jwt_replay.c.jti))
            if time.monotonic() >= self._purge_after:
                await conn.execute(sa.delete(jwt_replay).where(jwt_replay.c.expires_at < datetime.now(UTC)))
                self._purge_after = time.monotonic() + _PURGE_EVERY
            if len(rows) == 1:  # a lone call: the row count says it (RETURNING costs a fetch more)
                return {rows[0]["jti"]} if (await conn.execute(record, rows[0])).rowcount else set()
            return set((await conn.execute(record_all, rows)).scalars())
