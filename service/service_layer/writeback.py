"""Write-back of CarePlans and ServiceRequests to the EHR's FHIR server, exactly once.

Staging (`WritebackStager`) runs inside the evaluation's transaction: the outputs, their outbox
rows and the audit row commit together. Delivery (`deliver`) is idempotent, so a row delivered by a
worker that died before settling it can be delivered again without a second copy on the server:
- a first write is a conditional create (`If-None-Exist` on our deterministic identifier);
- a revision is a PUT with `If-Match` on the server's ETag; on 412 the server's copy is read, and
  if it already carries our version (or a newer one) the write is done;
- every write stamps `meta.source` with our `Type/id/_history/version`, our recognition mark;
- the Provenance is a conditional create on its target, so it is never written twice either.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from service.adapters import remote_ids
from service.adapters import tables as t
from service.adapters.fhir_client import DeliveryError, FhirReply, HttpxFhirServer
from service.adapters.outbox import OutboxItem
from service.adapters.store import Store
from service.fhir.provenance import provenance
from service.service_layer.evaluate_patient import PatientEvaluated

WRITTEN_TYPES = ("CarePlan", "ServiceRequest")
MARK = "urn:carepath:"
_MARK_RE = re.compile(r"^urn:carepath:(\w+)/([^/]+)/_history/(\d+)$")


def dedupe_key(server: str, resource_type: str, resource_id: str, version: int) -> str:
    return f"fhir:{server}:{resource_type}/{resource_id}/_history/{version}"


class WritebackStager:
    """Evaluation listener: one `kind="fhir"` outbox row per created or revised output."""

    def __init__(self, server: str) -> None:
        self.server = server.rstrip("/")

    async def __call__(self, store: Store, event: PatientEvaluated, now: datetime) -> None:
        pathway = [
            f"{d.evaluation.pathway_id}|{d.evaluation.pathway_version}" for d in event.decisions
        ]
        for change in event.changes:
            kind, rid = change.resource["resourceType"], change.resource["id"]
            if kind not in WRITTEN_TYPES:
                continue
            key = dedupe_key(self.server, kind, rid, change.version_id)
            await _supersede(store, key.rsplit("/", 1)[0] + "/", key)
            await store.enqueue(
                kind="fhir",
                destination=self.server,
                dedupe_key=key,
                now=now,
                payload={
                    "resource": change.resource,
                    "version": change.version_id,
                    "pathway": pathway,
                },
            )


async def _supersede(store: Store, prefix: str, key: str) -> None:
    """A newer version makes older pending rows of the same resource pointless."""
    o = t.outbox
    rows = await store.conn.execute(
        sa.select(o.c.id, o.c.dedupe_key).where(
            o.c.kind == "fhir", o.c.status == "pending", o.c.dedupe_key.like(prefix + "%")
        )
    )
    older = [r.id for r in rows if r.dedupe_key.startswith(prefix) and r.dedupe_key != key]
    if older:
        await store.conn.execute(sa.update(o).where(o.c.id.in_(older)).values(status="superseded"))


def _marked_version(body: dict[str, Any], kind: str, rid: str) -> int:
    match = _MARK_RE.match(str((body.get("meta") or {}).get("source", "")))
    return int(match.group(3)) if match and match.group(1) == kind and match.group(2) == rid else 0


def _remote_id(reply: FhirReply) -> str:
    if reply.body.get("id"):
        return str(reply.body["id"])
    if reply.location:
        parts = reply.location.rstrip("/").split("/")
        return parts[parts.index("_history") - 1] if "_history" in parts else parts[-1]
    raise DeliveryError("the FHIR server returned neither a resource id nor a Location")


def _etag(reply: FhirReply) -> str | None:
    version = (reply.body.get("meta") or {}).get("versionId")
    return reply.etag or (f'W/"{version}"' if version else None)


def _version_of(etag: str | None) -> str | None:
    return etag.removeprefix("W/").strip('"') if etag else None


class Deliverer:
    """Delivers one outbox row to one FHIR server; raises DeliveryError when it could not."""

    def __init__(self, engine: AsyncEngine, server: HttpxFhirServer, clock: Any) -> None:
        self.engine = engine
        self.server = server
        self.clock = clock

    async def __call__(self, item: OutboxItem, known: remote_ids.RemoteId | None) -> int:
        local: dict[str, Any] = item.payload["resource"]
        version: int = item.payload["version"]
        kind, rid = local["resourceType"], local["id"]
        meta = {k: v for k, v in (local.get("meta") or {}).items()
                if k not in ("versionId", "lastUpdated")}
        body = {k: v for k, v in local.items() if k not in ("id", "meta")}
        body["meta"] = {**meta, "source": f"{MARK}{kind}/{rid}/_history/{version}"}
        was = (known.remote_id, known.etag, known.local_version) if known else None
        if was and was[2] >= version:
            remote_id, etag, status = was[0], was[1], 200
        else:  # recorded at once, so a retry after a failed Provenance only writes that
            remote_id, etag, status = await self._write(body, kind, rid, version, was)
            async with self.engine.begin() as conn:
                await remote_ids.record(conn, self.server.base_url, kind, rid,
                                        remote_id=remote_id, remote_version=_version_of(etag),
                                        local_version=version, now=self.clock())
        await self._provenance(kind, remote_id, etag, item, status == 201)
        return status

    async def _write(
        self,
        body: dict[str, Any],
        kind: str,
        rid: str,
        version: int,
        known: tuple[str, str | None, int] | None,
    ) -> tuple[str, str | None, int]:
        if known is None:
            ident = next(
                (i for i in local_identifiers(body) if i.get("system") and i.get("value")), None
            )
            if ident is None:
                raise DeliveryError(f"{kind}/{rid} has no identifier to create on", permanent=True)
            reply = await self.server.create_if_none_exist(body, ident["system"], ident["value"])
            remote_id, etag = _remote_id(reply), _etag(reply)
            if reply.status == 201 or _marked_version(reply.body, kind, rid) >= version:
                return remote_id, etag, reply.status
        else:
            remote_id, etag = known[0], known[1]
        for _ in range(3):
            try:
                reply = await self.server.update({**body, "id": remote_id}, etag)
                return remote_id, _etag(reply), reply.status
            except DeliveryError as exc:
                if exc.status != 412:
                    raise
                current = await self.server.read(kind, remote_id)
                if _marked_version(current.body, kind, rid) >= version:
                    return remote_id, _etag(current), 200
                etag = _etag(current)
        raise DeliveryError(f"{kind}/{remote_id} kept changing under us", status=412)

    async def _provenance(
        self, kind: str, remote_id: str, etag: str | None, item: OutboxItem, created: bool
    ) -> None:
        target = f"{kind}/{remote_id}" + (f"/_history/{_version_of(etag)}" if etag else "")
        body = provenance(target, item.payload.get("pathway", []), created, self.clock())
        await self.server.conditional_create(body, f"target={target}")


def local_identifiers(resource: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for i in resource.get("identifier", []) if isinstance(i, dict)]
