"""IngestResources: validate, store durably (commit), then evaluate the patients it touched.

Input is committed before evaluation starts, and the patient is marked pending in that same
commit, so a crash or a rule bug between the two loses nothing: the pending sweep re-evaluates.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from service.adapters.store import Store, Stored
from service.errors import InvalidResource
from service.fhir.ids import content_id
from service.fhir.models import INPUT_TYPES, Issue, validate_resource
from service.fhir.normalize import subject_id, value_issues
from service.rules.registry import Pathway
from service.service_layer.clock import Clock
from service.service_layer.evaluate_patient import PatientEvaluated, PatientEvaluator

log = logging.getLogger("carepath.ingest")


Accepted = Stored  # what ingest returns: the stored version, with its location and ETag


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
        now = self.clock()
        accepted: list[Accepted] = []
        async with self.engine.begin() as conn:
            store = Store(conn)
            for resource in resources:
                if not resource.get("id"):
                    resource = {**resource, "id": content_id(resource)}
                patient = subject_id(resource)
                stored = await store.put(resource, origin="input", patient_id=patient, now=now)
                accepted.append(stored)
                if stored.changed and patient:
                    await store.mark_pending(patient, now)
            await store.audit(actor=actor, action="ingest", patient_id=None, now=now, detail={
                "resources": [a.location for a in accepted],
                "changed": [a.location for a in accepted if a.changed]})
        return accepted

    async def store_and_evaluate(self, resources: Iterable[dict[str, Any]], *, actor: str
                                 ) -> tuple[list[Accepted], list[PatientEvaluated]]:
        """Store, then evaluate. The input is already durable: if evaluation fails, the patient stays
        pending (with the error recorded) for the background sweep, and the caller still gets 2xx."""
        accepted = await self.store(resources, actor=actor)
        patients = dict.fromkeys(p for a in accepted if a.changed and (p := subject_id(a.resource)))
        evaluated = []
        for patient in patients:
            try:
                evaluated.append(await self.evaluator.evaluate(patient, actor=actor))
            except Exception as exc:  # noqa: BLE001  (stored input must not be reported as lost)
                log.exception("evaluation deferred after a failure; the patient stays pending")
                async with self.engine.begin() as conn:
                    await Store(conn).note_failure(patient, f"{type(exc).__name__}: {exc}")
        return accepted, evaluated
