"""The outbox queue: claim due rows under a lease, then settle them (fenced by the lease holder).

PostgreSQL claims with `FOR UPDATE SKIP LOCKED`, so replicas never take the same row; SQLite's
BEGIN IMMEDIATE (see database.create_engine) already serialises the claim. Either way the claim
writes `locked_by`/`locked_until`, so a worker killed mid-delivery only delays its rows until the
lease runs out, after which another worker takes them over.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.adapters import tables as t

o = t.outbox
STATUSES = ("pending", "delivered", "failed", "superseded")


@dataclass(frozen=True)
class OutboxItem:
    id: int
    kind: str
    destination: str
    dedupe_key: str
    payload: dict[str, Any]
    attempts: int
    created_at: datetime


async def claim(
    engine: AsyncEngine, *, kind: str, worker: str, now: datetime, lease: float, limit: int = 20
) -> list[OutboxItem]:
    """Take up to `limit` due rows for `lease` seconds; returns them with their payloads."""
    due = (
        sa.select(o.c.id)
        .where(
            o.c.kind == kind,
            o.c.status == "pending",
            o.c.next_attempt_at <= now,
            sa.or_(o.c.locked_until.is_(None), o.c.locked_until < now),
        )
        .order_by(o.c.next_attempt_at, o.c.id)
        .limit(limit)
    )
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True)
        ids = [r.id for r in await conn.execute(due)]
        if not ids:
            return []
        await conn.execute(
            sa.update(o)
            .where(o.c.id.in_(ids))
            .values(locked_by=worker, locked_until=now + timedelta(seconds=lease))
        )
        rows = await conn.execute(sa.select(o).where(o.c.id.in_(ids)).order_by(o.c.id))
        return [
            OutboxItem(r.id, r.kind, r.destination, r.dedupe_key, orjson.loads(r.payload),
                       r.attempts, r.created_at)
            for r in rows
        ]


async def _settle(engine: AsyncEngine, item_id: int, worker: str, **values: Any) -> bool:
    async with engine.begin() as conn:
        result = await conn.execute(
            sa.update(o)
            .where(o.c.id == item_id, o.c.locked_by == worker, o.c.status == "pending")
            .values(locked_by=None, locked_until=None, **values)
        )
        return result.rowcount == 1


async def delivered(engine: AsyncEngine, worker: str, now: datetime,
                    results: list[tuple[int, int | None]]) -> int:
    """Settle (item id, HTTP status) pairs as delivered, in one transaction; returns how many
    were still held by this worker."""
    by_status: dict[int | None, list[int]] = {}
    for item_id, status in results:
        by_status.setdefault(status, []).append(item_id)
    settled = 0
    async with engine.begin() as conn:
        for status, ids in by_status.items():  # one UPDATE per distinct status (usually one)
            result = await conn.execute(
                sa.update(o)
                .where(o.c.id.in_(ids), o.c.locked_by == worker, o.c.status == "pending")
                .values(locked_by=None, locked_until=None, status="delivered", delivered_at=now,
                        attempts=o.c.attempts + 1, last_status=status, last_error=None)
            )
            settled += result.rowcount
    return settled


async def retry_later(
    engine: AsyncEngine, item_id: int, worker: str, at: datetime, status: int | None, error: str
) -> bool:
    return await _settle(
        engine,
        item_id,
        worker,
        next_attempt_at=at,
        attempts=o.c.attempts + 1,
        last_status=status,
        last_error=error[:2000],
    )


async def failed(
    engine: AsyncEngine, item_id: int, worker: str, status: int | None, error: str
) -> bool:
    return await _settle(
        engine,
        item_id,
        worker,
        status="failed",
        attempts=o.c.attempts + 1,
        last_status=status,
        last_error=error[:2000],
    )


async def requeue(engine: AsyncEngine, item_id: int, now: datetime) -> bool:
    """Admin retry: a failed row becomes pending again, due now, with its attempt count and its
    retry budget (which runs from `created_at`, on the wall clock) reset."""
    async with engine.begin() as conn:
        result = await conn.execute(
            sa.update(o)
            .where(o.c.id == item_id, o.c.status == "failed")
            .values(
                status="pending", next_attempt_at=now, attempts=0, locked_by=None,
                locked_until=None, created_at=datetime.now(UTC),
            )
        )
        return result.rowcount == 1


async def requeue_destination(engine: AsyncEngine, kind: str, destination: str,
                              now: datetime) -> int:
    """Every failed row for one destination becomes pending again (e.g. an endpoint re-enabled)."""
    async with engine.begin() as conn:
        result = await conn.execute(
            sa.update(o)
            .where(o.c.kind == kind, o.c.destination == destination, o.c.status == "failed")
            .values(
                status="pending", next_attempt_at=now, attempts=0, locked_by=None, locked_until=None
            )
        )
        return int(result.rowcount)


async def oldest_pending(conn: AsyncConnection, now: datetime) -> dict[str, float]:
    """Per kind, how long the oldest undelivered row has waited (seconds): what to alert on."""
    query = sa.select(o.c.kind, sa.func.min(o.c.created_at)).where(
        o.c.status == "pending").group_by(o.c.kind)
    return {kind: max(0.0, (now - _aware(at)).total_seconds())
            for kind, at in await conn.execute(query) if at is not None}


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


async def summary(
    engine: AsyncEngine, *, kind: str | None = None, status: str | None = None, limit: int = 100,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Counts per status, the age of the oldest undelivered row, and the most recent items
    (payloads left out)."""
    where = [o.c.kind == kind] if kind else []
    async with engine.connect() as conn:
        counts = dict.fromkeys(STATUSES, 0)
        for row in await conn.execute(
            sa.select(o.c.status, sa.func.count()).where(*where).group_by(o.c.status)
        ):
            counts[row[0]] = row[1]
        ages = await oldest_pending(conn, now or datetime.now(UTC))
        oldest = ages.get(kind) if kind else max(ages.values(), default=None)
        query = sa.select(o).where(*where, *([o.c.status == status] if status else []))
        rows = await conn.execute(query.order_by(o.c.id.desc()).limit(limit))
        items = [
            {
                "id": r.id,
                "kind": r.kind,
                "destination": r.destination,
                "key": r.dedupe_key,
                "status": r.status,
                "attempts": r.attempts,
                "lastStatus": r.last_status,
                "lastError": r.last_error,
                "nextAttemptAt": _iso(r.next_attempt_at),
                "lockedBy": r.locked_by,
                "createdAt": _iso(r.created_at),
                "deliveredAt": _iso(r.delivered_at),
            }
            for r in rows
        ]
    return {"counts": counts, "oldestPendingAgeSeconds": oldest, "items": items}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
