"""The patient schedule (spec 2a.1): when each patient's decision may next change with no new data.

An evaluation writes its patient's next instant in its own transaction (`set_next`), so the
schedule is exactly as durable as the decision. Schedulers claim due rows under a lease, like the
outbox: PostgreSQL with `FOR UPDATE SKIP LOCKED` (replicas never take the same patient), SQLite
under its BEGIN IMMEDIATE write lock. The evaluation that follows rewrites the row and so releases
it; a scheduler killed mid-way only delays its patients until the lease runs out.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.adapters import tables as t
from service.adapters.store import insert_for, prebuilt

s = t.patient_schedule


async def set_next(conn: AsyncConnection, patient_id: str, due_at: datetime | None, reason: str,
                   now: datetime) -> None:
    """Record when to re-evaluate a patient (None: nothing can change with time alone)."""
    if due_at is None:
        await conn.execute(prebuilt(conn, "unschedule", lambda _: sa.delete(s).where(
            s.c.patient_id == sa.bindparam("patient"))), {"patient": patient_id})
        return
    await conn.execute(prebuilt(conn, "schedule", _upsert), {
        "patient_id": patient_id, "due_at": due_at, "reason": reason[:500], "computed_at": now,
        "attempts": 0, "last_error": None, "locked_by": None, "locked_until": None})


def _upsert(dialect: str) -> Any:
    """INSERT, or on a known patient UPDATE with the row that was to be inserted (`excluded`)."""
    insert = insert_for(dialect, s)
    columns = ("due_at", "reason", "computed_at", "attempts", "last_error", "locked_by", "locked_until")
    return insert.on_conflict_do_update(index_elements=[s.c.patient_id],
                                        set_={c: insert.excluded[c] for c in columns})


def _due(now: datetime) -> Any:
    return sa.and_(s.c.due_at <= now, sa.or_(s.c.locked_until.is_(None), s.c.locked_until < now))


async def claim_due(engine: AsyncEngine, *, worker: str, now: datetime, lease: float,
                    limit: int) -> list[str]:
    """Take up to `limit` due patients (longest overdue first) for `lease` seconds."""
    due = (sa.select(s.c.patient_id).where(_due(now))
           .order_by(s.c.due_at, s.c.patient_id).limit(limit))
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True)
        patients = [r.patient_id for r in await conn.execute(due)]
        if patients:
            await conn.execute(sa.update(s).where(s.c.patient_id.in_(patients)).values(
                locked_by=worker, locked_until=now + timedelta(seconds=lease)))
    return patients


async def failed(engine: AsyncEngine, patient_id: str, worker: str, now: datetime,
                 base_seconds: float, error: str, max_seconds: float = 3600.0) -> None:
    """The evaluation failed: keep the patient due (visible as overdue) and retry it later, after
    `base_seconds` doubled per earlier failure (at most `max_seconds`)."""
    async with engine.begin() as conn:
        attempts = (await conn.execute(sa.select(s.c.attempts).where(
            s.c.patient_id == patient_id, s.c.locked_by == worker))).scalar()
        if attempts is None:  # re-evaluated meanwhile (new data), or the lease was taken over
            return
        delay = min(max_seconds, base_seconds * 2 ** attempts)
        await conn.execute(sa.update(s).where(s.c.patient_id == patient_id, s.c.locked_by == worker)
                           .values(attempts=attempts + 1, last_error=error[:2000],
                                   locked_until=now + timedelta(seconds=delay)))


async def backlog(conn: AsyncConnection, now: datetime) -> tuple[int, datetime | None]:
    """(patients due now, the oldest due instant among them)."""
    row = (await conn.execute(sa.select(sa.func.count(), sa.func.min(s.c.due_at))
                              .where(s.c.due_at <= now))).one()
    oldest = row[1]
    if isinstance(oldest, str):  # SQLite aggregates lose the column type
        oldest = datetime.fromisoformat(oldest)
    return int(row[0]), t.Instant.process_result_value(oldest, conn.dialect) if oldest else None


async def report(engine: AsyncEngine, now: datetime, limit: int = 100) -> dict[str, Any]:
    """For operators: how many patients are due, the oldest due instant, failures, next items."""
    async with engine.connect() as conn:
        due, oldest = await backlog(conn, now)
        scheduled = (await conn.execute(sa.select(sa.func.count()).select_from(s))).scalar_one()
        failing = (await conn.execute(
            sa.select(sa.func.count()).where(s.c.attempts > 0))).scalar_one()
        rows = await conn.execute(sa.select(s).order_by(s.c.due_at, s.c.patient_id).limit(limit))
        items = [{"patient": r.patient_id, "dueAt": r.due_at.isoformat(), "reason": r.reason,
                  "computedAt": r.computed_at.isoformat(), "attempts": r.attempts,
                  "lastError": r.last_error, "lockedBy": r.locked_by,
                  "lockedUntil": r.locked_until.isoformat() if r.locked_until else None}
                 for r in rows]
    return {"now": now.isoformat(), "scheduled": scheduled, "dueNow": due,
            "oldestDueAt": oldest.isoformat() if oldest else None,
            "oldestDueAgeSeconds": max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
            "failing": failing, "items": items}
