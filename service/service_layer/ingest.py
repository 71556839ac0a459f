"""IngestResources: validate, store durably (commit), then evaluate the patients it touched.

Input is committed before evaluation starts, and the patient is marked pending in that same
commit, so a crash or a rule bug between the two loses nothing: the pending sweep re-evaluates.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from service.adapters.database import lock_keys
from service.adapters.store import Store, Stored, same_content, stored_version
from service.errors import InvalidResource, MethodNotAllowed, PreconditionFailed
from service.fhir.ids import content_id, id_issues, is_fhir_id
from service.fhir.models import INPUT_TYPES, OUTPUT_TYPES, Issue, ValidContents, validate_resource
from service.fhir.normalize import subject_id, value_issues
from service.fhir.search import Search
from service.fhir.time import parse_datetime
from service.rules.registry import Pathway
from service.service_layer.clock import Clock
from service.service_layer.evaluate_patient import PatientEvaluated, PatientEvaluator

log = logging.getLogger("carepath.ingest")


Accepted = Stored  # what ingest returns: the stored version, with its location and ETag
_APPLY: Any = object()  # placeholder for a resource to be stored, in input order


class Ingestor:
    def __init__(self, engine: AsyncEngine, pathways: Sequence[Pathway], evaluator: PatientEvaluator,
                 clock: Clock) -> None:
        self.engine = engine
        self.pathways = list(pathways)
        self.evaluator = evaluator
        self.clock = clock
        self._acceptable = ValidContents(50_000)

    def problems(self, resource: Any, where: str = "") -> list[Issue]:
        """What makes one input resource unacceptable (R4 forbids it, or its type is not taken).
        Contents found acceptable once are not checked again (EHRs resend the same resources: every
        CDS call prefetches the whole record); only acceptances are remembered."""
        digest = self._acceptable.digest(resource) if isinstance(resource, dict) else None
        if digest is not None and digest in self._acceptable:
            return []
        found = [i for i in self.assess(resource, where) if i.refuses]
        if not found and digest is not None:
            self._acceptable.add(digest)
        return found

    def assess(self, resource: Any, where: str = "") -> list[Issue]:
        """Every issue with one input resource: R4 errors first; else the warnings and information
        (values the pathway cannot use, a subject that is not a Patient) that do not refuse it."""
        if not isinstance(resource, dict):
            return [Issue(where or "$", "a resource must be a JSON object", "structure")]
        kind = resource.get("resourceType")
        issues = validate_resource(resource, where)
        if issues:
            return issues
        if kind not in INPUT_TYPES:
            return [Issue(f"{where}resourceType" if where else "resourceType",
                          f"{kind} is not accepted here; accepted: {', '.join(sorted(INPUT_TYPES))}",
                          "not-supported")]
        # (JSON nulls are R4 validation's: a resource that passed it has none)
        return id_issues(resource, where) or [
            i for p in self.pathways for i in value_issues(resource, p.concepts, where)]

    def check(self, resource: Any, where: str = "") -> list[Issue]:
        """Refuse a resource R4 forbids (4xx); return the warnings of one it allows."""
        issues = self.assess(resource, where)
        errors = [i for i in issues if i.refuses]
        if errors:
            raise InvalidResource(errors[0].message, errors,
                                  status=400 if errors[0].code in ("required", "not-supported")
                                  and errors[0].expression.endswith("resourceType") else 422)
        return issues

    async def write(self, operations: Sequence[Write], *, actor: str) -> list[Stored | Removed]:
        """Apply creates, updates and deletes in one transaction (a FHIR transaction, or one
        interaction): `If-Match` versions and conditional creates are checked inside it, so a
        failed precondition stores nothing. Patients whose data changed are marked pending."""
        now = self.clock()
        async with self.engine.begin() as conn:
            store = Store(conn)
            results = await self.write_in(store, operations, actor=actor, now=now)
            for patient in touched_patients(results):  # one pending row per patient
                await store.mark_pending(patient, now)
        return results

    async def write_in(self, store: Store, operations: Sequence[Write], *, actor: str, now: datetime
                       ) -> list[Stored | Removed]:
        """`write`'s changes and their audit row, inside the caller's transaction."""
        results: list[Stored | Removed] = []
        guards = [f"create|{w.resource_type}|{w.if_none_exist}" for w in operations if w.if_none_exist]
        if guards:  # two conditional creates of the same thing are serialised
            await lock_keys(store.conn, guards)
        if len(operations) > 1 and all(_unconditional(op) for op in operations):
            results += await self._apply_many(store, operations, now)
        else:
            for op in operations:
                results.append(await self._apply(store, op, now))
        await store.audit(actor=actor, action="ingest", patient_id=None, now=now, detail={
            "resources": [r.location for r in results],
            "changed": [r.location for r in results if r.changed]})
        return results

    async def _apply_many(self, store: Store, operations: Sequence[Write], now: datetime
                          ) -> list[Stored]:
        """Creates and updates with no precondition (a Bundle of PUT or POST entries), checked as
        `_apply` checks them, in a constant number of statements (`Store.put_many`)."""
        looked_up = await store.lookup([(op.resource_type, op.resource_id) for op in operations])
        for op in operations:
            found = looked_up[(op.resource_type, op.resource_id)].content
            if found is not None and _is_pathway_output(found):
                raise MethodNotAllowed(f"{op.resource_type}/{op.resource_id} is a pathway output; "
                                       "outputs change only by re-evaluation", ["GET"])
            if found is not None and op.is_create and not same_content(found, op.resource):
                raise PreconditionFailed(f"{op.resource_type}/{op.resource_id} exists with other content")
        return await store.put_many([(op.resource, subject_id(op.resource)) for op in operations],
                                    origin="input", now=now, looked_up=looked_up,
                                    methods=["POST" if op.is_create else "PUT" for op in operations])

    async def _apply(self, store: Store, op: Write, now: datetime) -> Stored | Removed:
        held = (await store.lookup([(op.resource_type, op.resource_id)]))[(op.resource_type, op.resource_id)]
        current = Stored(held.content, stored_version(held.content), created=False, changed=False,
                         patient_id=held.patient_id) if held.content is not None else None
        if op.if_match is not None and (current is None or current.etag != op.if_match
                                        and f'W/"{current.version_id}"' != _weak(op.if_match)):
            found = f"the current version is {current.etag}" if current else "it does not exist"
            raise PreconditionFailed(f"If-Match {op.if_match} does not match {op.resource_type}/"
                                     f"{op.resource_id}: {found}")
        if current is not None and _is_pathway_output(current.resource):
            raise MethodNotAllowed(f"{op.resource_type}/{op.resource_id} is a pathway output; "
                                   "outputs change only by re-evaluation", ["GET"])
        if op.resource is None:
            patient = await store.delete(op.resource_type, op.resource_id, now)
            return Removed(op.resource_type, op.resource_id, current is not None, patient)
        if op.if_none_exist is not None:
            matches = [r for r in await store.select(op.resource_type, patient_ids=op.if_none_exist.patient_ids,
                                                     ids=op.if_none_exist.ids)
                       if op.if_none_exist.matches(r)]
            if len(matches) > 1:
                raise PreconditionFailed(f"If-None-Exist matches {len(matches)} resources; "
                                         "make the criteria selective")
            if matches:
                existing = await store.get(op.resource_type, matches[0]["id"])
                if existing is not None:
                    return existing
        if current is not None and op.is_create and not same_content(current.resource, op.resource):
            # a server-assigned id is a content hash: equal ids with different content cannot happen
            raise PreconditionFailed(f"{op.resource_type}/{op.resource_id} exists with other content")
        return await store.put(op.resource, origin="input", patient_id=subject_id(op.resource), now=now,
                               method="POST" if op.is_create else "PUT", existing=current,
                               last_version=held.last_version)

    async def store(self, resources: Iterable[dict[str, Any]], *, actor: str) -> list[Accepted]:
        """Commit validated resources; a patient whose data changed is marked pending."""
        return [a for a in await self._commit(resources, actor=actor, source=None)
                if isinstance(a, Stored)]

    async def receive(self, resources: Iterable[dict[str, Any]], *, source: str, actor: str
                      ) -> list[Accepted | Ignored]:
        """Like `store`, for pushed deliveries: idempotent on (source, type, id, versionId), and a
        version older than one already received from that source is not applied over it."""
        return await self._commit(resources, actor=actor, source=source)

    async def withdraw(self, reference: str, *, source: str, actor: str) -> str | None:
        """The sender deleted a resource: remove our copy and re-evaluate its patient (the planner
        keeps escalations and asks for a review when their evidence is gone)."""
        kind, _, rid = reference.partition("/")
        now = self.clock()
        async with self.engine.begin() as conn:
            store = Store(conn)
            # a reference that is not Type/<FHIR id> names nothing we could hold
            patient = await store.delete(kind, rid, now) if is_fhir_id(rid) and kind.isalpha() else None
            if patient:
                await store.mark_pending(patient, now)
            await store.audit(actor=actor, action="webhook-delete", patient_id=patient, now=now,
                              detail={"source": source, "resource": reference,
                                      "removed": patient is not None})
        return patient

    async def _commit(self, resources: Iterable[dict[str, Any]], *, actor: str,
                      source: str | None) -> list[Accepted | Ignored]:
        now = self.clock()
        results: list[Accepted | Ignored] = []
        async with self.engine.begin() as conn:
            store = Store(conn)
            resources = [r if r.get("id") else {**r, "id": content_id(r)} for r in resources]
            if source:  # one delivery of a resource at a time, so its versions are ordered
                await lock_keys(conn, [f"receipt|{source}|{r['resourceType']}/{r['id']}"
                                       for r in resources])
            applied: list[tuple[dict[str, Any], str | None]] = []
            for resource in resources:
                ignored = await _receipt(store, source, resource, now) if source else None
                results.append(ignored if ignored is not None else _APPLY)
                if ignored is None:
                    applied.append((resource, subject_id(resource)))
            stored_all = iter(await store.put_many(applied, origin="input", now=now))
            results = [next(stored_all) if r is _APPLY else r for r in results]
            touched = [p for a in results if isinstance(a, Stored) for p in _touched(a)]
            for patient in dict.fromkeys(touched):  # one pending row per patient
                await store.mark_pending(patient, now)
            stored_ones = [a for a in results if isinstance(a, Stored)]
            await store.audit(actor=actor, action="ingest", patient_id=None, now=now, detail={
                **({"source": source} if source else {}),
                "resources": [a.location for a in stored_ones],
                "changed": [a.location for a in stored_ones if a.changed],
                **({"ignored": [f"{i.reference}: {i.reason}" for i in results
                                if isinstance(i, Ignored)]} if source else {})})
        return results

    async def evaluate_changed(self, accepted: Iterable[Accepted | Ignored | Removed], *, actor: str
                               ) -> list[PatientEvaluated]:
        """Evaluate the patients whose data changed (also the one a resource moved away from, and
        the one a deleted resource belonged to). The input is already durable: if evaluation
        fails, the patient stays pending (with the error recorded) for the background sweep."""
        return await self.evaluate_patients(touched_patients(accepted), actor=actor)

    async def evaluate_patients(self, patients: Iterable[str], *, actor: str
                                ) -> list[PatientEvaluated]:
        evaluated = []
        for patient in patients:
            try:
                evaluated.append(await self.evaluator.evaluate(patient, actor=actor))
            except Exception as exc:  # noqa: BLE001  (stored input must not be reported as lost)
                log.exception("evaluation deferred after a failure; the patient stays pending")
                async with self.engine.begin() as conn:
                    await Store(conn).note_failure(patient, f"{type(exc).__name__}: {exc}")
        return evaluated

    async def store_and_evaluate(self, resources: Iterable[dict[str, Any]], *, actor: str
                                 ) -> tuple[list[Accepted], list[PatientEvaluated]]:
        """Store, then evaluate; the caller gets 2xx even if evaluation is deferred."""
        accepted = await self.store(resources, actor=actor)
        return accepted, await self.evaluate_changed(accepted, actor=actor)


@dataclass(frozen=True)
class Write:
    """One create, update (`resource` given) or delete (`resource` None) of an input resource."""

    resource_type: str
    resource_id: str
    resource: dict[str, Any] | None
    if_match: str | None = None
    if_none_exist: Search | None = None
    is_create: bool = False  # POST: the id was assigned by the server


@dataclass(frozen=True)
class Removed:
    """The outcome of a delete: whether something was there, and whose it was."""

    resource_type: str
    resource_id: str
    existed: bool
    patient_id: str | None

    @property
    def changed(self) -> bool:
        return self.existed

    @property
    def location(self) -> str:
        return f"{self.resource_type}/{self.resource_id}"


def _unconditional(op: Write) -> bool:
    return op.resource is not None and op.if_match is None and op.if_none_exist is None


def touched_patients(results: Iterable[Stored | Removed | Ignored]) -> list[str]:
    """The patients whose record these writes changed, each once, in order."""
    return list(dict.fromkeys(p for r in results if not isinstance(r, Ignored) for p in _touched(r)))


def _touched(result: Stored | Removed) -> list[str]:
    """The patients whose record a write changed."""
    if isinstance(result, Removed):
        return [result.patient_id] if result.existed and result.patient_id else []
    if not result.changed:
        return []
    return list(dict.fromkeys(p for p in (result.patient_id or subject_id(result.resource),
                                          result.previous_patient) if p))


def _weak(tag: str) -> str:
    return tag if tag.startswith("W/") else f"W/{tag}"


def _is_pathway_output(resource: dict[str, Any]) -> bool:
    return resource.get("resourceType") in OUTPUT_TYPES and any(
        isinstance(i, dict) and str(i.get("value", "")).startswith("urn:lrp:")
        for i in resource.get("identifier", []))


@dataclass(frozen=True)
class Ignored:
    """A pushed resource that was received but not applied, and why."""

    reference: str
    reason: str


def delivery_version(resource: dict[str, Any]) -> str:
    """The sender's versionId, or (when it sends none) a hash of the content."""
    version = (resource.get("meta") or {}).get("versionId")
    return str(version) if version else "sha256:" + content_id(resource)[1:]


def _newer(seen: tuple[str, datetime | None], version: str, updated: datetime | None) -> bool:
    """Whether an already received version is newer than this one: by the sender's lastUpdated,
    else by numeric versionIds; versions that cannot be compared are not ordered."""
    seen_version, seen_updated = seen
    if seen_updated is not None and updated is not None:
        return seen_updated > updated
    if seen_version.isdigit() and version.isdigit():
        return int(seen_version) > int(version)
    return False


async def _receipt(store: Store, source: str, resource: dict[str, Any], now: datetime
                   ) -> Ignored | None:
    kind, rid = resource["resourceType"], resource["id"]
    version = delivery_version(resource)
    updated = parse_datetime((resource.get("meta") or {}).get("lastUpdated"))
    seen = await store.receipts_of(source, kind, rid)
    reference = f"{kind}/{rid}/_history/{version}"
    if any(v == version for v, _ in seen):
        return Ignored(reference, "already received (duplicate delivery)")
    await store.first_receipt(source, kind, rid, version, now, updated)
    newer = [v for v, u in seen if _newer((v, u), version, updated)]
    if newer:
        return Ignored(reference, f"older than version {max(newer)} already received "
                                  "(out-of-order delivery; kept the newer one)")
    return None
