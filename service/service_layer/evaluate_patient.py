"""EvaluatePatient: load everything on file -> decide -> persist outputs, outbox, evaluation, audit.

One transaction per patient, serialised per patient, so concurrent ingests cannot interleave two
revisions of the same CarePlan. Earlier outputs are inputs too: the planner needs them to keep
escalations and to never duplicate a request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from service.adapters import schedule
from service.adapters.database import holds_writer, lock_patient
from service.adapters.store import Store, Stored
from service.fhir.denormalize import Outputs
from service.fhir.models import INPUT_TYPES, OUTPUT_TYPES
from service.rules.horizon import NextChange, next_change
from service.rules.registry import Pathway
from service.service_layer.clock import Clock
from service.service_layer.decide import Decision, decide

_CLOSED_TASK = {"cancelled", "completed", "failed", "entered-in-error", "rejected"}


@dataclass(frozen=True)
class Change:
    """An output resource that was created or revised by this evaluation."""

    resource: dict[str, Any]
    version_id: int
    created: bool


@dataclass
class PatientEvaluated:
    patient_id: str
    decisions: list[Decision]
    changes: list[Change] = field(default_factory=list)


class ChangeListener(Protocol):
    """Stages follow-up work (write-back, webhook events) inside the evaluation's transaction."""

    async def __call__(self, store: Store, event: PatientEvaluated, now: datetime) -> None: ...


class _Patient:
    """In-process coordination of one patient's evaluations (see `PatientEvaluator.evaluate`)."""

    def __init__(self) -> None:
        self.running = asyncio.Lock()
        self.next: asyncio.Future[PatientEvaluated] | None = None  # the run new callers join


def _retrieved(run: asyncio.Future[PatientEvaluated]) -> None:
    """Callers re-raise a run's failure; this only keeps asyncio from reporting it again."""
    if not run.cancelled():
        run.exception()


class PatientEvaluator:
    def __init__(self, engine: AsyncEngine, pathways: Sequence[Pathway], clock: Clock,
                 listeners: Sequence[ChangeListener] = ()) -> None:
        self.engine = engine
        self.pathways = list(pathways)
        self.clock = clock
        self.listeners: list[ChangeListener] = list(listeners)
        self._patients: dict[str, _Patient] = {}

    async def evaluate(self, patient_id: str, *, actor: str = "carepath") -> PatientEvaluated:
        """An evaluation of everything on file that starts after this call.

        Concurrent callers for one patient share evaluations: while one runs, every caller that
        arrives waits for the next one (which starts after the running one ends, so it reads their
        data), and that next one runs once for all of them. Twenty writers for one patient thus
        cost about two evaluations each, not twenty; the audit row names the caller that started
        it. A run is a task of its own: a caller that goes away does not cancel it for the others.
        """
        if holds_writer(self.engine):
            raise RuntimeError("evaluate() called inside a write transaction: commit first")
        patient = self._patients.setdefault(patient_id, _Patient())
        if patient.next is None:
            patient.next = asyncio.ensure_future(self._run(patient_id, patient, actor))
            patient.next.add_done_callback(_retrieved)
        return await asyncio.shield(patient.next)

    async def _run(self, patient_id: str, patient: _Patient, actor: str) -> PatientEvaluated:
        try:
            async with patient.running:
                patient.next = None  # whoever calls from now on needs a run after this read
                return await self._evaluate(patient_id, actor)
        finally:
            if patient.next is None and not patient.running.locked():
                self._patients.pop(patient_id, None)

    async def _evaluate(self, patient_id: str, actor: str) -> PatientEvaluated:
        async with self.engine.begin() as conn:
            return await self.evaluate_in(Store(conn), patient_id, actor=actor, now=self.clock())

    async def evaluate_in(self, store: Store, patient_id: str, *, actor: str, now: datetime,
                          locked: bool = False) -> PatientEvaluated:
        """One evaluation inside the caller's write transaction (see `GroupCommit`): it commits
        with the writes that prompted it, or not at all. `locked`: the caller already holds the
        patient's lock in this transaction (`lock_keys`)."""
        conn = store.conn
        if not locked:
            await lock_patient(conn, patient_id)
        on_file = await store.for_patient(patient_id, INPUT_TYPES | OUTPUT_TYPES)
        previous = {(r["resourceType"], r["id"]): r for r in on_file}
        event = PatientEvaluated(patient_id, [])
        tasks = [r for r in on_file if r["resourceType"] == "Task"]
        upcoming: list[NextChange] = []
        for pathway in self.pathways:
            decision = decide(pathway, patient_id, _relevant(on_file), now, tasks)
            event.decisions.append(decision)
            event.changes += await _persist(store, decision.outputs, previous, patient_id, now)
            await _record(store, decision, bool(event.changes), actor, now)
            change = next_change(pathway, decision.facts, decision.evaluation)
            upcoming += [change] if change else []
        for listener in self.listeners:
            await listener(store, event, now)
        await store.clear_pending(patient_id)
        soonest = min(upcoming, key=lambda c: c.at, default=None)
        await schedule.set_next(conn, patient_id, soonest.at if soonest else None,
                                ", ".join(soonest.why) if soonest else "", now)
        return event


def _relevant(on_file: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Inputs, plus our own earlier ServiceRequests (Tasks and CarePlans are not evidence)."""
    return [r for r in on_file if r["resourceType"] in INPUT_TYPES]


async def _persist(store: Store, outputs: Outputs, previous: dict[tuple[str, str], dict[str, Any]],
                   patient_id: str, now: datetime) -> list[Change]:
    """Store the outputs in one batch, against what this evaluation already read (`previous`)."""
    produced = {(r["resourceType"], r["id"]) for r in outputs.resources()}
    writes = [_carry_over(r, previous.get((r["resourceType"], r["id"])))
              for r in outputs.resources()]
    for sr_id in outputs.withdrawn_ids:
        prior = previous.get(("ServiceRequest", sr_id))
        if prior and prior.get("status") != "revoked":
            writes.append({**prior, "status": "revoked", "note": [*prior.get("note", []), {
                "text": "Withdrawn automatically: routine proposal no longer supported by the evidence"}]})
    for (kind, rid), prior in previous.items():
        if kind == "Task" and (kind, rid) not in produced and prior.get("status") not in _CLOSED_TASK \
                and _ours(prior):
            writes.append({**prior, "status": "cancelled",
                           "statusReason": {"text": "no longer needed on re-evaluation"}})
    stored: list[Stored] = await store.put_many([(r, patient_id) for r in writes], origin="output",
                                                now=now, known=previous)
    for s in stored:  # what this evaluation wrote is what the next pathway sees as on file
        previous[(s.resource["resourceType"], s.resource["id"])] = s.resource
    return [Change(s.resource, s.version_id, s.created) for s in stored if s.changed]


def _ours(resource: dict[str, Any]) -> bool:
    return any(str(i.get("value", "")).startswith("urn:lrp:") for i in resource.get("identifier", []))


def _carry_over(resource: dict[str, Any], prior: dict[str, Any] | None) -> dict[str, Any]:
    """Keep the first authoredOn/created so a re-evaluation with the same outcome changes nothing."""
    if prior is None or (prior["resourceType"] == "Task" and prior.get("status") in _CLOSED_TASK):
        return resource  # a task raised again after it was closed is a new request
    carried = dict(resource)
    for stamp in ("authoredOn", "created"):
        if stamp in prior and stamp in carried:
            carried[stamp] = prior[stamp]
    return carried


async def _record(store: Store, decision: Decision, changed: bool, actor: str, now: datetime) -> None:
    e = decision.evaluation
    summary = {
        "episode": {"id": e.episode.id, "onset": e.episode.onset.isoformat()} if e.episode else None,
        "urgency": e.plan.urgency.priority if e.plan.urgency else None,
        "results": [{"rule": r.rule_id, "outcome": r.outcome.value, "reason": r.reason,
                     "priority": r.urgency.priority if r.urgency else None,
                     "evidence": [{"ref": ev.ref, "what": ev.what,
                                   "value": ev.value, "time": ev.time.isoformat() if ev.time else None}
                                  for ev in r.evidence]} for r in e.results],
        "requests": [{"key": r.key, "output": r.output, "priority": r.urgency.priority, "status": r.status}
                     for r in e.plan.requests],
        "tasks": [t.task for t in e.plan.tasks],
        "problems": list(e.problems),
    }
    await store.record_evaluation(
        patient_id=e.patient_id, episode_id=e.episode.id if e.episode else None,
        pathway_id=e.pathway_id, pathway_version=e.pathway_version, evaluated_at=e.evaluated_at,
        urgency=summary["urgency"], summary=summary, changed=changed)
    await store.audit(actor=actor, action="evaluate", patient_id=e.patient_id, now=now, detail={
        "pathway": f"{e.pathway_id}|{e.pathway_version}", "urgency": summary["urgency"],
        "met": [r.rule_id for r in e.results if r.met], "changed": changed})

