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
from service.adapters.store import Store, Stored
from service.errors import InvalidResource
from service.fhir.ids import content_id
from service.fhir.models import INPUT_TYPES, Issue, validate_resource
from service.fhir.normalize import subject_id, value_issues
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

    def problems(self, resource: Any, where: str = "") -> list[Issue]:
        """Everything wrong with one input resource: type, FHIR structure, codes, units, ranges."""
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
        return [i for p in self.pathways for i in value_issues(resource, p.concepts, where)]

    def check(self, resource: Any, where: str = "") -> None:
        issues = self.problems(resource, where)
        if issues:
            raise InvalidResource(issues[0].message, issues,
                                  status=400 if issues[0].code in ("required", "not-supported")
                                  and issues[0].expression.endswith("resourceType") else 422)

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
            patient = await store.delete(kind, rid)
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
            changed = [subject_id(a.resource) for a in results if isinstance(a, Stored) and a.changed]
            for patient in dict.fromkeys(p for p in changed if p):  # one pending row per patient
                await store.mark_pending(patient, now)
            stored_ones = [a for a in results if isinstance(a, Stored)]
            await store.audit(actor=actor, action="ingest", patient_id=None, now=now, detail={
                **({"source": source} if source else {}),
                "resources": [a.location for a in stored_ones],
                "changed": [a.location for a in stored_ones if a.changed],
                **({"ignored": [f"{i.reference}: {i.reason}" for i in results
                                if isinstance(i, Ignored)]} if source else {})})
        return results

    async def evaluate_changed(self, accepted: Iterable[Accepted | Ignored], *, actor: str
                               ) -> list[PatientEvaluated]:
        """Evaluate the patients whose data changed. The input is already durable: if evaluation
        fails, the patient stays pending (with the error recorded) for the background sweep."""
        patients = dict.fromkeys(p for a in accepted if isinstance(a, Stored) and a.changed
                                 and (p := subject_id(a.resource)))
        return await self.evaluate_patients(patients, actor=actor)

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
