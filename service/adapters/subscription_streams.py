"""Event-number bookkeeping per (source, Subscription): where each stream is, and which event
numbers went missing. Backport 1.1 delivery may lose or repeat notifications; numbers are how a
subscriber notices (heartbeats carry `events-since-subscription-start` too).

A stream first seen through an event (no handshake) starts at that event: what the subscription
sent before we knew it is not counted as lost. A late event inside a recorded gap shrinks the gap;
a gap whose every number has arrived is marked recovered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from service.adapters import tables as t
from service.adapters.database import lock_keys

s, g = t.subscription_streams, t.subscription_gaps


@dataclass(frozen=True)
class Gap:
    id: int
    source: str
    subscription: str
    first_missing: int
    last_missing: int


async def observe(conn: AsyncConnection, source: str, subscription: str, *, status: str,
                  numbers: list[int], since_start: int | None, handshake: bool, now: datetime
                  ) -> list[Gap]:
    """Record a notification's event numbers; returns the gaps it revealed."""
    await lock_keys(conn, [f"stream|{source}|{subscription}"])
    key = (s.c.source == source, s.c.subscription == subscription)
    row = (await conn.execute(sa.select(s.c.last_event_number).where(*key))).first()
    known = row is not None
    last = row.last_event_number if row else None
    if last is None:
        if handshake or (not numbers and since_start is not None):
            last = since_start or 0
        elif numbers:
            last = numbers[0] - 1
    found: list[tuple[int, int]] = []
    late: list[int] = []
    for number in numbers:
        if last is not None and number > last + 1:
            found.append((last + 1, number - 1))
        if last is None or number > last:
            last = number
        else:
            late.append(number)
    if late:
        await _fill(conn, source, subscription, late, now)
    if since_start is not None and last is not None and since_start > last:
        found.append((last + 1, since_start))
        last = since_start
    values: dict[str, Any] = {"last_event_number": last, "status": status, "updated_at": now}
    if known:
        await conn.execute(sa.update(s).where(*key).values(**values))
    else:
        await conn.execute(sa.insert(s).values(source=source, subscription=subscription, **values))
    gaps = []
    for first, last_missing in found:
        result = await conn.execute(sa.insert(g).values(
            source=source, subscription=subscription, first_missing=first,
            last_missing=last_missing, detected_at=now).returning(g.c.id))
        gaps.append(Gap(result.scalar_one(), source, subscription, first, last_missing))
    return gaps


def remaining(first: int, last: int, arrived: list[int]) -> list[tuple[int, int]]:
    """What is still missing of first..last once the `arrived` numbers (sorted) are in."""
    left, start = [], first
    for number in arrived:
        if number < start or number > last:
            continue
        if number > start:
            left.append((start, number - 1))
        start = number + 1
    if start <= last:
        left.append((start, last))
    return left


async def _fill(conn: AsyncConnection, source: str, subscription: str, late: list[int],
                now: datetime) -> None:
    """Late events arrived (or were recovered): take their numbers out of the open gaps. A gap
    wholly filled keeps its range and gets `recovered_at`; a partly filled one shrinks or splits."""
    rows = await conn.execute(sa.select(g).where(
        g.c.source == source, g.c.subscription == subscription, g.c.recovered_at.is_(None),
        g.c.first_missing <= max(late), g.c.last_missing >= min(late)))
    for row in list(rows):
        left = remaining(row.first_missing, row.last_missing, sorted(late))
        if not left:
            await conn.execute(sa.update(g).where(g.c.id == row.id).values(recovered_at=now))
            continue
        (first, last), *more = left
        await conn.execute(sa.update(g).where(g.c.id == row.id).values(
            first_missing=first, last_missing=last))
        for first, last in more:
            await conn.execute(sa.insert(g).values(
                source=source, subscription=subscription, first_missing=first,
                last_missing=last, detected_at=row.detected_at))


async def open_gaps(conn: AsyncConnection, source: str | None = None) -> list[Gap]:
    query = sa.select(g).where(g.c.recovered_at.is_(None))
    if source is not None:
        query = query.where(g.c.source == source)
    rows = await conn.execute(query.order_by(g.c.id))
    return [Gap(r.id, r.source, r.subscription, r.first_missing, r.last_missing) for r in rows]


async def report(conn: AsyncConnection) -> dict[str, Any]:
    """Streams and gaps, for operators."""
    streams = [{"source": r.source, "subscription": r.subscription,
                "lastEventNumber": r.last_event_number, "status": r.status,
                "updatedAt": r.updated_at.isoformat()}
               for r in await conn.execute(sa.select(s).order_by(s.c.source, s.c.subscription))]
    gaps = [{"id": r.id, "source": r.source, "subscription": r.subscription,
             "firstMissing": r.first_missing, "lastMissing": r.last_missing,
             "detectedAt": r.detected_at.isoformat(),
             "recoveredAt": r.recovered_at.isoformat() if r.recovered_at else None}
            for r in await conn.execute(sa.select(g).order_by(g.c.id.desc()).limit(500))]
    return {"streams": streams, "gaps": gaps}
