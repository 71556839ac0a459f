"""The server's ids for our resources, per FHIR server (table remote_ids)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

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


async def known_many(engine: AsyncEngine, server: str,
                     keys: list[tuple[str, str]]) -> dict[tuple[str, str], RemoteId]:
    """What we know for several resources at once (one query per claimed batch)."""
    if not keys:
        return {}
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(r).where(
            r.c.server == server, sa.tuple_(r.c.resource_type, r.c.resource_id).in_(keys)))
        return {(row.resource_type, row.resource_id): RemoteId(
            row.remote_id, f'W/"{row.remote_version}"' if row.remote_version else None,
            row.local_version) for row in rows}


async def record(conn: AsyncConnection, server: str, kind: str, rid: str, *, remote_id: str,
                 remote_version: str | None, local_version: int, now: datetime) -> None:
    """Remember the server's id and version; an older local version never overwrites a newer.
    One statement (insert, or update on conflict), so concurrent workers cannot collide."""
    values = {"remote_id": remote_id, "remote_version": remote_version,
              "local_version": local_version, "updated_at": now}
    insert = postgresql.insert(r) if conn.dialect.name == "postgresql" else sqlite.insert(r)
    stmt = insert.values(server=server, resource_type=kind, resource_id=rid, **values)
    await conn.execute(stmt.on_conflict_do_update(
        index_elements=[r.c.server, r.c.resource_type, r.c.resource_id],
        set_={k: stmt.excluded[k] for k in values},
        where=r.c.local_version <= stmt.excluded.local_version))


async def refresh(conn: AsyncConnection, server: str, kind: str, rid: str, *,
                  remote_version: str | None) -> None:
    """Keep the server version last read (after a 412), so no later write sends an older ETag."""
    if remote_version:
        await conn.execute(sa.update(r).where(*_key(server, kind, rid))
                           .values(remote_version=remote_version))
