"""Subscribers to our outbound webhooks: from configuration (synced at start-up) or the admin
API."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from service.adapters.tables import webhook_subscribers as w
from service.config import WebhookSubscriberConfig


@dataclass(frozen=True)
class Subscriber:
    id: str
    url: str
    secret: str
    events: tuple[str, ...]
    enabled: bool
    disabled_reason: str | None
    origin: str
    created_at: datetime

    def public(self) -> dict[str, Any]:
        """What the admin API shows: everything but the secret."""
        return {"id": self.id, "url": self.url, "events": list(self.events),
                "enabled": self.enabled, "disabledReason": self.disabled_reason,
                "origin": self.origin, "createdAt": self.created_at.isoformat()}


def _subscriber(row: Any) -> Subscriber:
    return Subscriber(row.id, row.url, row.secret, tuple(orjson.loads(row.event_types)),
                      row.enabled, row.disabled_reason, row.origin, row.created_at)


def config_id(url: str) -> str:
    return "cfg-" + hashlib.sha256(url.encode()).hexdigest()[:16]


async def sync_configured(conn: AsyncConnection, configured: list[WebhookSubscriberConfig],
                          now: datetime) -> None:
    """Make the table hold the configured subscribers: new ones added, changed ones updated
    (an endpoint disabled by a 410 stays disabled until an operator enables it), removed ones
    deleted."""
    wanted = {config_id(c.url): c for c in configured}
    existing = {r.id for r in await conn.execute(sa.select(w.c.id).where(w.c.origin == "config"))}
    for sid in existing - wanted.keys():
        await conn.execute(sa.delete(w).where(w.c.id == sid))
    for sid, c in wanted.items():
        values = {"url": c.url, "secret": c.secret, "event_types": orjson.dumps(c.events).decode()}
        if sid in existing:
            await conn.execute(sa.update(w).where(w.c.id == sid).values(**values))
        else:
            await conn.execute(sa.insert(w).values(id=sid, enabled=True, created_at=now,
                                                   origin="config", **values))


async def add(conn: AsyncConnection, *, url: str, secret: str, events: list[str],
              now: datetime) -> Subscriber:
    added = Subscriber(id="sub-" + uuid.uuid4().hex[:16], url=url, secret=secret,
                       events=tuple(events), enabled=True, disabled_reason=None, origin="api",
                       created_at=now)
    await conn.execute(sa.insert(w).values(id=added.id, url=url, secret=secret, enabled=True,
                                           event_types=orjson.dumps(events).decode(),
                                           created_at=now, origin="api"))
    return added


async def get(conn: AsyncConnection, sid: str) -> Subscriber | None:
    row = (await conn.execute(sa.select(w).where(w.c.id == sid))).first()
    return _subscriber(row) if row else None


async def listing(conn: AsyncConnection) -> list[Subscriber]:
    query = sa.select(w).order_by(w.c.created_at, w.c.id)
    return [_subscriber(r) for r in await conn.execute(query)]


async def remove(conn: AsyncConnection, sid: str) -> bool:
    return (await conn.execute(sa.delete(w).where(w.c.id == sid, w.c.origin == "api"))
            ).rowcount == 1


async def set_enabled(conn: AsyncConnection, sid: str, enabled: bool,
                      reason: str | None = None) -> bool:
    return (await conn.execute(sa.update(w).where(w.c.id == sid).values(
        enabled=enabled, disabled_reason=None if enabled else reason))).rowcount == 1
