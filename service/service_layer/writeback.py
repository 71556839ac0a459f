"""Write-back of a patient's CarePlans, ServiceRequests and Tasks (and the Carepath Device they
name) to the EHR's FHIR server, so that every reference in them resolves there.

Staging (`WritebackStager`) runs inside the evaluation's transaction: one outbox row per decision
holding the patient's current outputs. A newer decision supersedes (coalesces) older undelivered
rows of the same patient: only the newest version of each resource is guaranteed to reach the
server; intermediate revisions may be skipped.

Delivery (`Deliverer`) is idempotent, so a row delivered by a worker that died, or whose answer was
lost, can be delivered again without a second copy or a wrong Provenance:
- the server's ids are recorded per resource (`remote_ids`); what is recorded at this version or
  newer is not written again;
- a resource without a record is first looked up by its deterministic identifier; if the server
  already holds our version (meta.source carries our `Type/id/_history/version` mark) it was
  applied by an attempt whose answer was lost, and whether that was a creation is read from the
  server's history;
- where the server offers `transaction` (CapabilityStatement), one transaction Bundle writes the
  Device (conditional create), the ServiceRequests, Tasks and CarePlans (conditional update by
  identifier, or `If-Match` update of a known id) with `urn:uuid:` references between them;
  otherwise each resource is written in dependency order with references rewritten to the
  server's ids;
- after a 412 the resource is read and the write re-applied against that fresh ETag (which is also
  recorded, so no later attempt reuses an older one);
- Provenance (one per server version written, CREATE or UPDATE as the server did it, naming the
  versioned id) is staged as its own outbox row with the recorded ids, and written by conditional
  create on that versioned target, so never twice.
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from service.adapters import remote_ids
from service.adapters import tables as t
from service.adapters.fhir_client import DeliveryError, FhirReply, HttpxFhirServer
from service.adapters.outbox import OutboxItem
from service.adapters.store import Store
from service.fhir.device import DEVICE_ID, carepath_device
from service.fhir.provenance import provenance
from service.fhir.references import rewrite_references
from service.service_layer.clock import Clock, system_clock
from service.service_layer.evaluate_patient import PatientEvaluated

log = logging.getLogger("carepath.writeback")
WRITTEN_TYPES = ("CarePlan", "ServiceRequest", "Task")
DEVICE = ("Device", DEVICE_ID)
_ORDER = {"Device": 0, "ServiceRequest": 1, "Task": 2, "CarePlan": 3}  # referenced first
MARK = "urn:carepath:"
_MARK_RE = re.compile(r"^urn:carepath:(\w+)/([^/]+)/_history/(\d+)$")
_RETRIES_412 = 3


def decision_prefix(server: str, patient_id: str) -> str:
    """Outbox key prefix of one patient's decisions (hashed: keys appear in logs)."""
    return f"fhir:{server}:decision:{hashlib.sha256(patient_id.encode()).hexdigest()[:16]}/"


class WritebackStager:
    """Evaluation listener: one `kind="fhir"` outbox row per decision that changed an output.
    The row is stamped with the wall clock (the delivery worker's), not the evaluation clock,
    which may be fixed for replays: its retry budget runs from then."""

    def __init__(self, server: str, clock: Clock = system_clock) -> None:
        self.server = server.rstrip("/")
        self.clock = clock

    async def __call__(self, store: Store, event: PatientEvaluated, _: datetime) -> None:
        if not any(c.resource["resourceType"] in WRITTEN_TYPES for c in event.changes):
            return
        outputs = await _current_outputs(store, event.patient_id)
        state = "|".join(sorted(f"{r['resourceType']}/{r['id']}/{r['meta']['versionId']}"
                                for r in outputs))
        prefix = decision_prefix(self.server, event.patient_id)
        key = prefix + hashlib.sha256(state.encode()).hexdigest()[:16]
        await _supersede(store, prefix, key)
        await store.enqueue(kind="fhir", destination=self.server, dedupe_key=key, now=self.clock(),
                            payload={
            "resources": outputs,
            "pathway": [f"{d.evaluation.pathway_id}|{d.evaluation.pathway_version}"
                        for d in event.decisions]})


async def _current_outputs(store: Store, patient_id: str) -> list[dict[str, Any]]:
    r = t.resources
    rows = await store.conn.execute(sa.select(r.c.content).where(
        r.c.patient_id == patient_id, r.c.origin == "output", r.c.resource_type.in_(WRITTEN_TYPES))
        .order_by(r.c.resource_type, r.c.id))
    return [orjson.loads(row.content) for row in rows]


async def _supersede(store: Store, prefix: str, key: str) -> None:
    """A newer decision carries everything an older one did: the older undelivered rows go."""
    o = t.outbox
    rows = await store.conn.execute(sa.select(o.c.id, o.c.dedupe_key).where(
        o.c.kind == "fhir", o.c.status.in_(("pending", "failed")),
        o.c.dedupe_key.like(prefix + "%")))
    older = [r.id for r in rows if r.dedupe_key.startswith(prefix) and r.dedupe_key != key]
    if older:
        await store.conn.execute(sa.update(o).where(o.c.id.in_(older)).values(
            status="superseded", locked_by=None, locked_until=None))


def _marked_version(body: dict[str, Any], key: tuple[str, str]) -> int:
    match = _MARK_RE.match(str((body.get("meta") or {}).get("source", "")))
    return int(match.group(3)) if match and (match.group(1), match.group(2)) == key else 0


def _version(body: dict[str, Any], etag: str | None = None, location: str | None = None
             ) -> str | None:
    if (body.get("meta") or {}).get("versionId"):
        return str(body["meta"]["versionId"])
    if etag:
        return etag.removeprefix("W/").strip('"')
    if location and "/_history/" in location:
        return location.rstrip("/").rsplit("/", 1)[-1]
    return None


def _remote_id(body: dict[str, Any], location: str | None) -> str:
    if body.get("id"):
        return str(body["id"])
    if location:
        parts = location.split("?")[0].rstrip("/").split("/")
        return parts[parts.index("_history") - 1] if "_history" in parts else parts[-1]
    raise DeliveryError("the FHIR server returned neither a resource id nor a Location")


def _identifier(resource: dict[str, Any]) -> tuple[str, str]:
    for i in resource.get("identifier", []):
        if isinstance(i, dict) and i.get("system") and i.get("value"):
            return str(i["system"]), str(i["value"])
    kind = resource["resourceType"]
    raise DeliveryError(f"{kind}/{resource['id']} has no identifier to write by", permanent=True)


def _token(system: str, value: str) -> str:
    return f"{quote(system, safe=':')}|{quote(value, safe=':')}"


@dataclass
class Target:
    """One of our resources to put on the server, and what became of it there."""

    key: tuple[str, str]
    version: int
    local: dict[str, Any]
    remote_id: str | None = None
    etag: str | None = None
    recorded: bool = False  # the server id was on record before this delivery
    done: bool = False
    created: bool = False
    remote_version: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.key[0]}/{self.key[1]}"

    def server_ref(self) -> str:
        return f"{self.key[0]}/{self.remote_id}"

    def applied(self, body: dict[str, Any], etag: str | None, created: bool) -> None:
        self.remote_id = self.remote_id or str(body.get("id"))
        self.remote_version = _version(body, etag)
        self.created, self.done = created, True


class Deliverer:
    """Delivers one outbox row (a decision, or the Provenance of one) to one FHIR server."""

    def __init__(self, engine: AsyncEngine, server: HttpxFhirServer, clock: Any,
                 mode: str = "auto") -> None:
        self.engine = engine
        self.server = server
        self.clock = clock
        self.mode = mode
        self._transaction: bool | None = None if mode == "auto" else mode == "transaction"

    async def use_transaction(self) -> bool:
        if self._transaction is None:  # asked once per process
            self._transaction = await self.server.supports_transaction()
        return self._transaction

    async def __call__(self, item: OutboxItem) -> int:
        if "provenance" in item.payload:
            return await self._provenance(item)
        return await self._decision(item)

    # --- a decision: Device, ServiceRequests, Tasks, CarePlans ----------------------------
    async def _decision(self, item: OutboxItem) -> int:
        local = {DEVICE: (carepath_device(), 1)}
        for resource in item.payload["resources"]:
            local[(resource["resourceType"], resource["id"])] = (
                resource, int(resource["meta"]["versionId"]))
        base = self.server.base_url
        known = await remote_ids.known_many(self.engine, base, list(local))
        targets = [
            Target(key, version, resource, known[key].remote_id if key in known else None,
                   known[key].etag if key in known else None, recorded=key in known)
            for key, (resource, version) in sorted(local.items(), key=lambda kv: _ORDER[kv[0][0]])
            if key not in known or known[key].local_version < version]
        if not targets:
            return 200
        refs = {f"{k}/{i}": f"{k}/{r.remote_id}" for (k, i), r in known.items()}
        transaction = await self.use_transaction()
        if transaction:
            try:
                await self._find([x for x in targets if not x.recorded], transaction=True)
                refs |= {x.ref: x.server_ref() for x in targets if x.remote_id}
                await self._write_transaction([x for x in targets if not x.done], refs, item)
            except DeliveryError as exc:
                if not exc.permanent:
                    raise
                log.warning("transaction refused (%s): writing %s resource by resource",
                            exc.status, item.dedupe_key)
                transaction = False
        if not transaction:
            await self._find([x for x in targets if not x.recorded and not x.remote_id],
                             transaction=False)
            refs |= {x.ref: x.server_ref() for x in targets if x.remote_id}
            for target in targets:
                if not target.done:
                    await self._write_one(target, refs)
                    refs[target.ref] = target.server_ref()
                    await self._record([target], item, refs)
                    target.recorded = True
        refs |= {x.ref: x.server_ref() for x in targets if x.remote_id}
        await self._record([x for x in targets if not x.recorded or transaction], item, refs)
        return 201 if any(x.created for x in targets) else 200

    async def _find(self, targets: list[Target], transaction: bool) -> None:
        """Look up resources we hold no server id for, by identifier: present at our version
        means a write whose answer was lost; present at an older one gives the id to update."""
        by_type: dict[str, dict[str, Target]] = {}
        for target in targets:
            system, value = _identifier(target.local)
            by_type.setdefault(target.key[0], {})[f"{system}|{value}"] = target
        if not by_type:
            return
        queries = {kind: {"identifier": ",".join(by_type[kind]), "_count": "100"}
                   for kind in by_type}
        results = await self._search_all(queries, transaction)
        for kind, resources in results.items():
            for resource in resources:
                idents = [f"{i.get('system')}|{i.get('value')}"
                          for i in resource.get("identifier", [])]
                target = next((by_type[kind][i] for i in idents if i in by_type[kind]), None)
                if target is None:
                    continue
                if target.remote_id and target.remote_id != resource.get("id"):
                    raise DeliveryError(f"{target.ref} is on the server more than once "
                                        "(same identifier): resolve it there", permanent=True)
                target.remote_id, target.etag = str(resource["id"]), _etag_of(resource)
                if target.key == DEVICE:
                    target.applied(resource, None, created=False)
                elif _marked_version(resource, target.key) >= target.version:
                    target.applied(resource, None, await self._first_version(target, resource))

    async def _search_all(self, queries: dict[str, dict[str, str]], transaction: bool
                          ) -> dict[str, list[dict[str, Any]]]:
        if not transaction:
            return {kind: await self.server.search(kind, params)
                    for kind, params in queries.items()}
        entries = [{"request": {"method": "GET", "url": f"{kind}?" + "&".join(
            f"{k}={quote(v, safe=':|,')}" for k, v in params.items())}}
            for kind, params in queries.items()]
        reply = await self.server.transaction({"resourceType": "Bundle", "type": "batch",
                                               "entry": entries})
        out: dict[str, list[dict[str, Any]]] = {}
        for kind, entry in zip(queries, reply.body.get("entry", []), strict=False):
            status = str((entry.get("response") or {}).get("status", ""))
            if not status.startswith("2"):
                raise DeliveryError(f"searching {kind} by identifier: {status}",
                                    status=int(status[:3]) if status[:3].isdigit() else None)
            bundle = entry.get("resource") or {}
            out[kind] = [e["resource"] for e in bundle.get("entry", [])
                         if (e.get("resource") or {}).get("resourceType") == kind]
        return out

    async def _first_version(self, target: Target, current: dict[str, Any]) -> bool:
        """Whether the server created our version (it is the resource's first) or updated."""
        history = await self.server.history(target.key[0], str(current["id"]))
        return bool(history) and _marked_version(history[-1], target.key) == target.version

    def _body(self, target: Target, refs: dict[str, str]) -> dict[str, Any]:
        local = target.local
        meta = {k: v for k, v in (local.get("meta") or {}).items()
                if k not in ("versionId", "lastUpdated")}
        body = {k: v for k, v in local.items() if k not in ("id", "meta")}
        body["meta"] = {**meta, "source": f"{MARK}{target.ref}/_history/{target.version}"}
        return rewrite_references(body, refs)  # type: ignore[no-any-return]

    async def _write_transaction(self, todo: list[Target], refs: dict[str, str],
                                 item: OutboxItem) -> None:
        placeholders = {x.ref: f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, item.dedupe_key + x.ref)}"
                        for x in todo if not x.remote_id}
        for _ in range(_RETRIES_412):
            if not todo:
                return
            links = refs | placeholders
            entries = [self._entry(x, links, placeholders) for x in todo]
            try:
                reply = await self.server.transaction(
                    {"resourceType": "Bundle", "type": "transaction", "entry": entries})
            except DeliveryError as exc:
                if exc.status != 412:
                    raise
                await self._reread([x for x in todo if x.remote_id])
                todo = [x for x in todo if not x.done]
                continue
            answers = reply.body.get("entry", [])
            if len(answers) != len(todo):
                raise DeliveryError("the transaction response does not answer every entry")
            for target, answer in zip(todo, answers, strict=True):
                response = answer.get("response") or {}
                body = answer.get("resource") or {}
                location = response.get("location")
                target.remote_id = _remote_id(body, location)
                target.remote_version = _version(body, response.get("etag"), location)
                target.created = str(response.get("status", "")).startswith("201")
                target.done = True
            return
        raise DeliveryError(f"{todo[0].ref} kept changing on the server", status=412)

    def _entry(self, target: Target, links: dict[str, str], placeholders: dict[str, str]
               ) -> dict[str, Any]:
        kind = target.key[0]
        body = self._body(target, links)
        if target.remote_id:
            request = {"method": "PUT", "url": f"{kind}/{target.remote_id}"}
            if target.etag:
                request["ifMatch"] = target.etag
            return {"fullUrl": f"{self.server.base_url}/{kind}/{target.remote_id}",
                    "resource": {**body, "id": target.remote_id}, "request": request}
        token = _token(*_identifier(target.local))
        request = ({"method": "POST", "url": kind, "ifNoneExist": f"identifier={token}"}
                   if target.key == DEVICE else
                   {"method": "PUT", "url": f"{kind}?identifier={token}"})
        return {"fullUrl": placeholders[target.ref], "resource": body, "request": request}

    async def _reread(self, targets: list[Target]) -> None:
        """After a 412: read each, keep its fresh ETag (also on record), and notice the ones that
        already carry our version."""
        fresh: list[Target] = []
        for target in targets:
            reply = await self.server.read(target.key[0], str(target.remote_id))
            target.etag = reply.etag or _etag_of(reply.body)
            if _marked_version(reply.body, target.key) >= target.version:
                target.applied(reply.body, reply.etag, created=False)
            log.info("412 on %s: %s", target.ref, "the server already holds our version"
                     if target.done else "re-applying on the ETag just read")
            fresh.append(target)
        async with self.engine.begin() as conn:
            for target in fresh:
                if target.recorded:
                    await remote_ids.refresh(conn, self.server.base_url, *target.key,
                                             remote_version=_version({}, target.etag))

    async def _write_one(self, target: Target, refs: dict[str, str]) -> None:
        kind = target.key[0]
        body = self._body(target, refs)
        if not target.remote_id:
            system, value = _identifier(target.local)
            reply = await self.server.create_if_none_exist(body, system, value)
            target.remote_id, target.etag = _remote_id(reply.body, reply.location), _etag(reply)
            if reply.status == 201 or target.key == DEVICE:
                target.applied(reply.body, reply.etag, created=reply.status == 201)
                return
            if _marked_version(reply.body, target.key) >= target.version:
                created = await self._first_version(target, reply.body)
                target.applied(reply.body, reply.etag, created)
                return
        for _ in range(_RETRIES_412):
            try:
                reply = await self.server.update({**body, "resourceType": kind,
                                                  "id": target.remote_id}, target.etag)
            except DeliveryError as exc:
                if exc.status != 412:
                    raise
                await self._reread([target])
                if target.done:
                    return
                continue
            target.applied(reply.body, reply.etag, created=reply.status == 201)
            return
        raise DeliveryError(f"{kind}/{target.remote_id} kept changing on the server", status=412)

    async def _record(self, targets: list[Target], item: OutboxItem, refs: dict[str, str]) -> None:
        """Remember the server's ids and versions, and stage the Provenance of what was written,
        in one transaction (so neither is lost nor written twice)."""
        done = [x for x in targets if x.done]
        if not done:
            return
        base = self.server.base_url
        written = [x for x in done if x.key != DEVICE]
        async with self.engine.begin() as conn:
            for x in done:
                await remote_ids.record(conn, base, *x.key, remote_id=str(x.remote_id),
                                        remote_version=x.remote_version, local_version=x.version,
                                        now=self.clock())
            if written:
                about = [{"target": f"{x.server_ref()}/_history/{x.remote_version}"
                          if x.remote_version else x.server_ref(), "created": x.created}
                         for x in written]
                digest = hashlib.sha256("|".join(a["target"] for a in about).encode()).hexdigest()
                await Store(conn).enqueue(
                    kind="fhir", destination=base, now=self.clock(),
                    dedupe_key=f"fhir:{base}:provenance:{digest[:24]}",
                    payload={"provenance": about, "device": refs["/".join(DEVICE)],
                             "pathway": item.payload.get("pathway", [])})

    # --- Provenance ----------------------------------------------------------------------
    async def _provenance(self, item: OutboxItem) -> int:
        now = self.clock()
        bodies = [(p["target"], provenance(p["target"], item.payload.get("pathway", []),
                                           p["created"], now, item.payload["device"]))
                  for p in item.payload["provenance"]]
        if await self.use_transaction():
            entries = [{"fullUrl": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, target)}",
                        "resource": body,
                        "request": {"method": "POST", "url": "Provenance",
                                    "ifNoneExist": f"target={quote(target, safe='/')}"}}
                       for target, body in bodies]
            try:
                await self.server.transaction(
                    {"resourceType": "Bundle", "type": "transaction", "entry": entries})
                return 201
            except DeliveryError as exc:
                if not exc.permanent:
                    raise
        for target, body in bodies:
            await self.server.conditional_create(body, f"target={quote(target, safe='/')}")
        return 201


def _etag_of(body: dict[str, Any]) -> str | None:
    version = (body.get("meta") or {}).get("versionId")
    return f'W/"{version}"' if version else None


def _etag(reply: FhirReply) -> str | None:
    return reply.etag or _etag_of(reply.body)
