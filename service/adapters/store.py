"""The resource store and its bookkeeping, all on one connection so a caller's transaction
covers everything it does (inputs, outputs, evaluation record, outbox rows, audit)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from service.adapters import tables as t
from service.fhir.time import format_instant


@dataclass(frozen=True)
class Stored:
    resource: dict[str, Any]
    version_id: int
    created: bool
    changed: bool

    @property
    def etag(self) -> str:
        return f'W/"{self.version_id}"'

    @property
    def location(self) -> str:
        return f"{self.resource['resourceType']}/{self.resource['id']}/_history/{self.version_id}"


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _without_bookkeeping(resource: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in (resource.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    return {**{k: v for k, v in resource.items() if k != "meta"}, "meta": meta}


def _version(stored: dict[str, Any]) -> int:
    """The versionId the store wrote into a stored resource's meta."""
    return int((stored.get("meta") or {}).get("versionId") or 0)


def same_content(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal apart from server-managed metadata (versionId, lastUpdated)."""
    return _without_bookkeeping(a) == _without_bookkeeping(b)


class Store:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    def _insert(self, table: sa.Table) -> Any:
        return (postgresql.insert(table) if self.conn.dialect.name == "postgresql"
                else sqlite.insert(table))

    # --- resources -------------------------------------------------------------------------
    async def get(self, resource_type: str, resource_id: str) -> Stored | None:
        row = (await self.conn.execute(
            sa.select(t.resources.c.content, t.resources.c.version_id).where(
                t.resources.c.resource_type == resource_type, t.resources.c.id == resource_id))).first()
        if row is None:
            return None
        return Stored(orjson.loads(row.content), row.version_id, created=False, changed=False)

    async def put(self, resource: dict[str, Any], *, origin: str, patient_id: str | None,
                  now: datetime) -> Stored:
        """Create or update by (type, id). Identical content is a no-op (idempotent re-posting)."""
        kind, rid = resource["resourceType"], resource["id"]
        existing = await self.get(kind, rid)
        if existing is not None and same_content(existing.resource, resource):
            return existing
        version = existing.version_id + 1 if existing else 1
        meta = dict(resource.get("meta") or {})
        meta.update(versionId=str(version), lastUpdated=format_instant(now))
        stored = {**resource, "meta": meta}
        values = dict(patient_id=patient_id, version_id=version, last_updated=now, origin=origin,
                      content=_dumps(stored))
        if existing is None:
            await self.conn.execute(sa.insert(t.resources).values(resource_type=kind, id=rid, **values))
        else:
            await self.conn.execute(sa.update(t.resources).where(
                t.resources.c.resource_type == kind, t.resources.c.id == rid).values(**values))
        return Stored(stored, version, created=existing is None, changed=True)

    async def put_many(self, items: Sequence[tuple[dict[str, Any], str | None]], *, origin: str,
                       now: datetime, known: Mapping[tuple[str, str], dict[str, Any]] | None = None
                       ) -> list[Stored]:
        """`put` for many (resource, patient id) pairs in a constant number of statements: one
        SELECT of what exists (only of what is not in `known`, the stored contents the caller has
        already read, keyed by (type, id)), one multi-row INSERT, one executemany UPDATE. Items are
        applied in order: a resource given twice gets two versions, as two `put` calls give it."""
        keys = list(dict.fromkeys((r["resourceType"], r["id"]) for r, _ in items))
        current = dict(known or {})
        missing = [key for key in keys if key not in current]
        if missing:
            current.update(await self._contents(missing))
        fresh = {key for key in keys if key not in current}
        results, rows = [], {}
        for resource, patient_id in items:
            key = (resource["resourceType"], resource["id"])
            existing = current.get(key)
            if existing is not None and same_content(existing, resource):
                results.append(Stored(existing, _version(existing), created=False, changed=False))
                continue
            version = _version(existing) + 1 if existing is not None else 1
            meta = dict(resource.get("meta") or {})
            meta.update(versionId=str(version), lastUpdated=format_instant(now))
            stored = current[key] = {**resource, "meta": meta}
            rows[key] = {"patient_id": patient_id, "version_id": version, "last_updated": now,
                         "origin": origin, "content": _dumps(stored)}
            results.append(Stored(stored, version, created=existing is None, changed=True))
        inserts = [{"resource_type": k[0], "id": k[1], **v} for k, v in rows.items() if k in fresh]
        updates = [{"k_type": k[0], "k_id": k[1], **v} for k, v in rows.items() if k not in fresh]
        if inserts:
            await self.conn.execute(sa.insert(t.resources), inserts)
        if updates:
            r = t.resources
            await self.conn.execute(sa.update(r).where(
                r.c.resource_type == sa.bindparam("k_type"), r.c.id == sa.bindparam("k_id")),
                updates)
        return results

    async def _contents(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        r = t.resources
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for start in range(0, len(keys), 500):
            rows = await self.conn.execute(sa.select(r.c.resource_type, r.c.id, r.c.content).where(
                sa.tuple_(r.c.resource_type, r.c.id).in_(keys[start:start + 500])))
            found.update({(row.resource_type, row.id): orjson.loads(row.content) for row in rows})
        return found

    async def for_patient(self, patient_id: str, types: Iterable[str] | None = None) -> list[dict[str, Any]]:
        query = sa.select(t.resources.c.content).where(t.resources.c.patient_id == patient_id)
        if types is not None:
            query = query.where(t.resources.c.resource_type.in_(list(types)))
        rows = await self.conn.execute(query.order_by(t.resources.c.resource_type, t.resources.c.id))
        return [orjson.loads(r.content) for r in rows]

    async def search(self, resource_type: str, patient_id: str | None, limit: int) -> list[dict[str, Any]]:
        query = sa.select(t.resources.c.content).where(t.resources.c.resource_type == resource_type)
        if patient_id is not None:
            query = query.where(t.resources.c.patient_id == patient_id)
        rows = await self.conn.execute(query.order_by(t.resources.c.id).limit(limit))
        return [orjson.loads(r.content) for r in rows]

    async def delete(self, resource_type: str, resource_id: str) -> str | None:
        """Remove an input resource (the sender deleted it); returns its patient id, if any."""
        r = t.resources
        row = (await self.conn.execute(sa.delete(r).where(
            r.c.resource_type == resource_type, r.c.id == resource_id, r.c.origin == "input")
            .returning(r.c.patient_id))).first()
        return row.patient_id if row else None

    # --- idempotent receipt of webhook deliveries ------------------------------------------
    async def first_receipt(self, source: str, resource_type: str, resource_id: str, version_id: str,
                            now: datetime, source_updated: datetime | None = None) -> bool:
        """Record (source, type, id, versionId); False when it was received before."""
        stmt = self._insert(t.receipts).values(source=source, resource_type=resource_type,
                                               resource_id=resource_id, version_id=version_id,
                                               received_at=now, source_updated=source_updated
                                               ).on_conflict_do_nothing()
        return (await self.conn.execute(stmt)).rowcount == 1

    async def receipts_of(self, source: str, resource_type: str, resource_id: str
                          ) -> list[tuple[str, datetime | None]]:
        """Every (versionId, sender's lastUpdated) received for one resource from one source."""
        rc = t.receipts
        rows = await self.conn.execute(sa.select(rc.c.version_id, rc.c.source_updated).where(
            rc.c.source == source, rc.c.resource_type == resource_type,
            rc.c.resource_id == resource_id))
        return [(r.version_id, r.source_updated) for r in rows]

    # --- evaluation bookkeeping ------------------------------------------------------------
    async def mark_pending(self, patient_id: str, now: datetime) -> None:
        stmt = self._insert(t.pending_evaluations).values(patient_id=patient_id, since=now, attempts=0)
        await self.conn.execute(stmt.on_conflict_do_nothing())

    async def clear_pending(self, patient_id: str) -> None:
        await self.conn.execute(sa.delete(t.pending_evaluations).where(
            t.pending_evaluations.c.patient_id == patient_id))

    async def pending(self, limit: int = 50, max_attempts: int = 10) -> list[str]:
        """Patients awaiting evaluation; one that failed `max_attempts` times stays listed for admins."""
        rows = await self.conn.execute(sa.select(t.pending_evaluations.c.patient_id)
                                       .where(t.pending_evaluations.c.attempts < max_attempts)
                                       .order_by(t.pending_evaluations.c.since).limit(limit))
        return [r.patient_id for r in rows]

    async def note_failure(self, patient_id: str, error: str) -> None:
        await self.conn.execute(sa.update(t.pending_evaluations).where(
            t.pending_evaluations.c.patient_id == patient_id).values(
            attempts=t.pending_evaluations.c.attempts + 1, last_error=error[:2000]))

    async def record_evaluation(self, *, patient_id: str, episode_id: str | None, pathway_id: str,
                                pathway_version: str, evaluated_at: datetime, urgency: str | None,
                                summary: Any, changed: bool) -> None:
        await self.conn.execute(sa.insert(t.evaluations).values(
            patient_id=patient_id, episode_id=episode_id, pathway_id=pathway_id,
            pathway_version=pathway_version, evaluated_at=evaluated_at, urgency=urgency,
            summary=_dumps(summary), changed=changed))

    async def evaluations_of(self, patient_id: str) -> list[dict[str, Any]]:
        rows = await self.conn.execute(sa.select(t.evaluations).where(
            t.evaluations.c.patient_id == patient_id).order_by(t.evaluations.c.id))
        return [{**r._mapping, "summary": orjson.loads(r.summary)} for r in rows]

    async def audit(self, *, actor: str, action: str, patient_id: str | None, detail: Any,
                    now: datetime) -> None:
        await self.conn.execute(sa.insert(t.audit_log).values(
            at=now, actor=actor, action=action, patient_id=patient_id, detail=_dumps(detail)))

    # --- outbox ----------------------------------------------------------------------------
    async def enqueue(self, *, kind: str, destination: str, dedupe_key: str, payload: Any,
                      now: datetime) -> bool:
        """Stage a delivery in the caller's transaction; a repeated dedupe key is ignored."""
        stmt = self._insert(t.outbox).values(
            kind=kind, destination=destination, dedupe_key=dedupe_key, payload=_dumps(payload),
            status="pending", attempts=0, next_attempt_at=now, created_at=now).on_conflict_do_nothing()
        return (await self.conn.execute(stmt)).rowcount == 1
