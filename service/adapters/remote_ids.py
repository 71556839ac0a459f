"""The server's ids for our resources, per FHIR server (table remote_ids)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from service.adapters import tables as t

r = t.remote_ids


@dataclass(frozen=True)
class RemoteId:
    remote_id: str
    etag: str | None
    local_version: int


def _key(server: str, kind: str, rid: str) -> list[sa.ColumnElement[bool]]:
    return [r.c.server == server, r.c.resource_type == kind, r.c.resource_id == rid]


async def known(engine: AsyncEngine, server: str, kind: str, rid: str) -> RemoteId | None:
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(r).where(*_key(server, kind, rid)))).first()
    if row is None:
        return None
    etag = f'W/"{row.remote_version}"' if row.remote_version else None
    return RemoteId(row.remote_id, etag, row.local_version)


async def record(engine: AsyncEngine, server: str, kind: str, rid: str, *, remote_id: str,
                 remote_version: str | None, local_version: int, now: datetime) -> None:
    """Remember the server's id and version; an older local version never overwrites a newer."""
    values = {"remote_id": remote_id, "remote_version": remote_version,
              "local_version": local_version, "updated_at": now}
    async with engine.begin() as conn:
        done = await conn.execute(sa.update(r).where(
            *_key(server, kind, rid), r.c.local_version <= local_version).values(**values))
        query = sa.select(r.c.remote_id).where(*_key(server, kind, rid))
        exists = (await conn.execute(query)).first()
        if done.rowcount == 0 and exists is None:
            await conn.execute(sa.insert(r).values(server=server, resource_type=kind,
                                                   resource_id=rid, **values))
