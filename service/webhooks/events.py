"""Outbound escalation events, staged in the evaluation's transaction (so an event is queued if and
only if the decision it reports was committed) and delivered later through the outbox.

- `servicerequest.created`: the pathway proposed a new ServiceRequest;
- `careplan.revised`: a CarePlan was created or revised;
- `pathway.escalated`: an evaluation created a ServiceRequest of priority urgent, asap or stat;
  the event names the rules that met and their evidence;
- `task.overdue`: a Task's due time passed without the data it asked for (spec 2a.1); once per
  task and due time, with the escalation Tasks raised in the same evaluation.

Each event's id is derived from what it reports, so re-staging never duplicates it, and the same id
(`webhook-id`) is sent on every retry, as Standard Webhooks asks, so receivers can deduplicate.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import orjson

from service.adapters import webhook_subscribers
from service.adapters.store import Store
from service.fhir.time import format_instant
from service.service_layer.evaluate_patient import Change, PatientEvaluated

ESCALATING = ("urgent", "asap", "stat")
INLINE_LIMIT = 16_000  # Standard Webhooks asks for payloads under 20 kB


def _ref(resource: dict[str, Any]) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


def _with_resource(data: dict[str, Any], resource: dict[str, Any]) -> dict[str, Any]:
    """Inline the resource when it is small enough; a receiver can always read it by reference."""
    return {**data, "resource": resource} if len(orjson.dumps(resource)) <= INLINE_LIMIT else data


def events_for(event: PatientEvaluated) -> list[tuple[str, str, dict[str, Any]]]:
    """(type, identity, data) for every outbound event an evaluation gives rise to."""
    patient = f"Patient/{event.patient_id}"
    found: list[tuple[str, str, dict[str, Any]]] = []
    escalated: list[Change] = []
    for change in event.changes:
        resource, version = change.resource, change.version_id
        identity = f"{_ref(resource)}/_history/{version}"
        if resource["resourceType"] == "ServiceRequest" and change.created:
            found.append(("servicerequest.created", identity, _with_resource({
                "patient": patient, "serviceRequest": _ref(resource),
                "priority": resource.get("priority"),
                "code": (resource.get("code") or {}).get("coding", [])}, resource)))
            if resource.get("priority") in ESCALATING:
                escalated.append(change)
        elif resource["resourceType"] == "CarePlan":
            found.append(("careplan.revised", identity, _with_resource({
                "patient": patient, "carePlan": _ref(resource), "version": version,
                "created": change.created, "status": resource.get("status")}, resource)))
    found += _overdue(event, patient)
    if escalated:
        priorities = [c.resource.get("priority") for c in escalated]
        found.append(("pathway.escalated", "|".join(sorted(
            f"{_ref(c.resource)}/_history/{c.version_id}" for c in escalated)), {
            "patient": patient,
            "priority": max(priorities, key=ESCALATING.index),
            "serviceRequests": [_ref(c.resource) for c in escalated],
            "pathways": [_why(d.evaluation) for d in event.decisions]}))
    return found


def _overdue(event: PatientEvaluated, patient: str) -> list[tuple[str, str, dict[str, Any]]]:
    tasks = [c.resource for c in event.changes if c.resource["resourceType"] == "Task"]
    escalations = [_ref(t) for t in tasks
                   if t.get("priority") in ESCALATING and t.get("status") == "requested"]
    found = []
    for task in tasks:
        codes = [c.get("code") for c in (task.get("businessStatus") or {}).get("coding", [])]
        if "overdue" not in codes or task.get("status") != "requested":
            continue
        due = ((task.get("restriction") or {}).get("period") or {}).get("end")
        found.append(("task.overdue", f"{_ref(task)}/overdue/{due}", _with_resource({
            "patient": patient, "task": _ref(task), "code": task.get("code", {}).get("coding", []),
            "description": task.get("description"), "due": due, "priority": task.get("priority"),
            "escalations": escalations}, task)))
    return found


def _why(evaluation: Any) -> dict[str, Any]:
    return {
        "pathway": f"{evaluation.pathway_id}|{evaluation.pathway_version}",
        "rules": [{"rule": r.rule_id, "reason": r.reason,
                   "priority": r.urgency.priority if r.urgency else None,
                   "evidence": [e.ref for e in r.evidence]}
                  for r in evaluation.results if r.met and r.urgency is not None],
    }


def message_id(subscriber_id: str, event_type: str, identity: str) -> str:
    digest = hashlib.sha256(f"{subscriber_id}|{event_type}|{identity}".encode()).hexdigest()
    return f"msg_{digest[:32]}"


class WebhookEventStager:
    """Evaluation listener: one `kind="webhook"` outbox row per (subscriber, event)."""

    async def __call__(self, store: Store, event: PatientEvaluated, now: datetime) -> None:
        if not event.changes:
            return
        events = events_for(event)
        if not events:
            return
        # Disabled subscribers too: their rows fail as 'disabled' and are re-queued when an
        # operator enables the endpoint again, so nothing is missed meanwhile.
        for subscriber in await webhook_subscribers.listing(store.conn):
            for event_type, identity, data in events:
                if event_type not in subscriber.events:
                    continue
                mid = message_id(subscriber.id, event_type, identity)
                await store.enqueue(kind="webhook", destination=subscriber.id,
                                    dedupe_key=f"webhook:{mid}", now=now, payload={
                                        "id": mid, "subscriber": subscriber.id, "message": {
                                            "type": event_type, "timestamp": format_instant(now),
                                            "data": data}})
