"""Build the FHIR outputs of an evaluation: one CarePlan per episode, ServiceRequests, Tasks.

Every output carries the pathway canonical (url|version) and its deterministic identifier; the
CarePlan carries the explanation: a narrative, one note per rule, and a structured `rule-result`
extension per rule with the outcome, the reason and references to the evidence.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from html import escape
from typing import Any

from service.domain.evaluation import Evidence, PathwayEvaluation, ProposedRequest, ProposedTask
from service.fhir.ids import careplan_key, output_id
from service.fhir.time import format_instant
from service.rules.definition import CodeRef, PathwayDefinition
from service.rules.planner import NO_EPISODE

EXT = "http://carepath.example.org/fhir/StructureDefinition"
TASK_CODES = "http://carepath.example.org/fhir/CodeSystem/pathway-task"
TASK_STATUS = "http://carepath.example.org/fhir/CodeSystem/pathway-task-status"
PATHWAY_TAG = "http://carepath.example.org/fhir/CodeSystem/pathway"
URI = "urn:ietf:rfc:3986"
# Cited as context only, never as the reason for a request.
_NEVER_REASON = ("Patient/", "ServiceRequest/", "Task/", "CarePlan/")
_PHYSIO_PLAN = {"system": "http://snomed.info/sct", "code": "773513001", "display": "Physiotherapy care plan"}


@dataclass(frozen=True)
class Outputs:
    careplan: dict[str, Any] | None
    service_requests: list[dict[str, Any]]
    tasks: list[dict[str, Any]]
    withdrawn_ids: list[str]

    def resources(self) -> list[dict[str, Any]]:
        head = [self.careplan] if self.careplan else []
        return head + self.service_requests + self.tasks


def build_outputs(definition: PathwayDefinition, evaluation: PathwayEvaluation) -> Outputs:
    """No CarePlan when there is no episode and nothing to propose (pathway not applicable)."""
    plan = evaluation.plan
    builder = _Builder(definition, evaluation)
    requests = [builder.service_request(r) for r in plan.requests]
    tasks = [builder.task(t) for t in plan.tasks]
    if evaluation.episode is None and not (requests or tasks or plan.retained):
        return Outputs(None, [], [], [])
    return Outputs(builder.careplan(requests, tasks), requests, tasks,
                   [output_id("sr", key) for key in plan.withdrawn])


class _Builder:
    def __init__(self, definition: PathwayDefinition, evaluation: PathwayEvaluation) -> None:
        self.d = definition
        self.e = evaluation
        self.now = format_instant(evaluation.evaluated_at)
        self.patient = {"reference": f"Patient/{evaluation.patient_id}"}
        self.requester = {"reference": definition.requester,
                          "display": f"Carepath {definition.id} {definition.version}"}
        self.episode_id = evaluation.episode.id if evaluation.episode else NO_EPISODE

    def _common(self, key: str, single_canonical: bool = False) -> dict[str, Any]:
        """Tag, identifier and canonical (Task.instantiatesCanonical is 0..1 in R4; 0..* elsewhere)."""
        return {
            "meta": {"tag": [{"system": PATHWAY_TAG, "code": f"{self.d.id}|{self.d.version}"}]},
            "identifier": [{"system": URI, "value": key}],
            "instantiatesCanonical": self.d.canonical if single_canonical else [self.d.canonical],
        }

    def _coding(self, ref: CodeRef) -> dict[str, Any]:
        coding = self.d.coding(ref)
        return {k: v for k, v in (("system", coding.system), ("code", coding.code),
                                  ("display", coding.display)) if v}

    def service_request(self, request: ProposedRequest) -> dict[str, Any]:
        template = self.d.requests[request.output]
        resource: dict[str, Any] = {
            "resourceType": "ServiceRequest", "id": output_id("sr", request.key), **self._common(request.key),
            "status": request.status, "intent": "proposal",
            "priority": request.urgency.priority,
            "code": {"coding": [self._coding(c) for c in template.codes], "text": template.title},
            "subject": self.patient, "authoredOn": self.now, "requester": self.requester,
        }
        if template.category:
            resource["category"] = [{"coding": [self._coding(template.category)]}]
        if template.location:
            resource["locationCode"] = [{"coding": [self._coding(template.location)]}]
        site = self._body_site(request)
        if site:
            resource["bodySite"] = site
        # Spec 2a.9: each rule says which evidence is the reason; the rest is supporting. The ESI
        # Procedure (R8) and conservative-care evidence (R7) are reasons by the spec's choice.
        because = [e for e in request.reasons
                   if not e.supporting and not e.ref.startswith(_NEVER_REASON)]
        cited = {e.ref for e in because}
        reasons = _unique_refs(because)
        support = _unique_refs(e for e in request.reasons if e.ref not in cited)
        if reasons:
            resource["reasonReference"] = reasons
        if support:
            resource["supportingInfo"] = support
        rule = self.e.result(request.rule_id)
        notes = [f"{request.rule_id} {self.d.rule(request.rule_id).title}: {rule.reason if rule else ''}"]
        if request.note:
            notes.insert(0, request.note)
        resource["note"] = [{"text": n} for n in notes]
        return resource

    def _body_site(self, request: ProposedRequest) -> list[dict[str, Any]]:
        sites: list[dict[str, Any]] = []
        if request.side in self.d.laterality:
            ref = self.d.laterality[request.side][0]  # type: ignore[index]
            sites.append({"coding": [self._coding(ref)], "text": request.side})
        if request.site:
            sites.append({"text": request.site})
        return sites

    def task(self, task: ProposedTask) -> dict[str, Any]:
        resource: dict[str, Any] = {
            "resourceType": "Task", "id": output_id("task", task.key), **self._common(task.key, True),
            "status": "requested", "intent": "proposal", "priority": task.urgency.priority,
            "code": {"coding": [{"system": TASK_CODES, "code": task.task}], "text": task.description},
            "description": task.description, "for": self.patient,
            "authoredOn": format_instant(task.authored) if task.authored else self.now,
            "requester": self.requester,
            "note": [{"text": f"Raised by {task.rule_id}"}],
        }
        if task.due is not None:
            resource["restriction"] = {"period": {"end": format_instant(task.due)}}
        if task.overdue:
            resource["businessStatus"] = {"coding": [{"system": TASK_STATUS, "code": "overdue"}],
                                          "text": "overdue"}
        if task.reasons:
            resource["input"] = [{"type": {"text": e.what}, "valueReference": _reference(e)}
                                 for e in task.reasons]
        return resource

    def careplan(self, requests: list[dict[str, Any]], tasks: list[dict[str, Any]]) -> dict[str, Any]:
        e, plan = self.e, self.e.plan
        key = careplan_key(e.patient_id, self.episode_id)
        category = [{"coding": [self._coding(c) for c in self.d.careplan_category]}]
        r6 = e.result("R6")
        if r6 is not None and r6.met:
            category.append({"coding": [_PHYSIO_PLAN]})
        activity: list[dict[str, Any]] = [
            {"reference": {"reference": f"ServiceRequest/{r['id']}", "display": r["code"]["text"]}}
            for r in requests]
        activity += [{"reference": {"reference": f"ServiceRequest/{output_id('sr', k)}",
                                    "display": "kept for clinician review"}} for k in plan.retained]
        activity += [{"reference": {"reference": f"Task/{t['id']}", "display": t["description"]
                                    + (" (overdue)" if "businessStatus" in t else "")}}
                     for t in tasks]
        for item in plan.activities:
            detail: dict[str, Any] = {"status": item.status,
                                      "description": self.d.activities[item.activity].description}
            if item.status_reason:
                detail["statusReason"] = {"text": item.status_reason}
            activity.append({"detail": detail})
        resource: dict[str, Any] = {
            "resourceType": "CarePlan", "id": output_id("cp", key), **self._common(key),
            "status": "active", "intent": "proposal", "category": category,
            "title": self.d.title,
            "description": self._summary(),
            "subject": self.patient, "created": self.now, "author": self.requester,
            "extension": self._explanation(),
            "text": {"status": "generated", "div": self._narrative()},
            "note": [{"text": _note(self.d.rule(r.rule_id).title, r.rule_id, r.outcome.value, r.reason,
                                    r.evidence)} for r in e.results]
                    + [{"text": n} for n in plan.notes]
                    + [{"text": f"Data quality: {p}"} for p in e.problems],
        }
        if e.episode:
            resource["period"] = {"start": format_instant(e.episode.onset)}
            resource["addresses"] = [{"reference": ref} for ref in e.episode.diagnoses]
        if activity:
            resource["activity"] = activity
        return resource

    def _summary(self) -> str:
        plan = self.e.plan
        fired = [r.rule_id for r in self.e.results if r.met]
        urgency = plan.urgency.priority if plan.urgency else "none"
        return (f"Episode urgency: {urgency}. Rules met: {', '.join(fired) or 'none'}. "
                f"{len(plan.requests)} request(s) proposed, {len(plan.tasks)} task(s).")

    def _explanation(self) -> list[dict[str, Any]]:
        ext: list[dict[str, Any]] = []
        if self.e.plan.urgency:
            ext.append({"url": f"{EXT}/episode-urgency", "valueCode": self.e.plan.urgency.priority})
        ext += [{"url": f"{EXT}/pathway-flag", "valueCode": f} for f in self.e.plan.flags]
        for r in self.e.results:
            parts: list[dict[str, Any]] = [
                {"url": "rule", "valueString": r.rule_id},
                {"url": "outcome", "valueCode": r.outcome.value},
                {"url": "reason", "valueString": r.reason},
            ]
            if r.urgency:
                parts.append({"url": "priority", "valueCode": r.urgency.priority})
            parts += [{"url": "evidence", "valueReference": _reference(ev)} for ev in r.evidence]
            ext.append({"url": f"{EXT}/rule-result", "extension": parts})
        return ext

    def _narrative(self) -> str:
        rows = "".join(
            f"<tr><td>{escape(r.rule_id)}</td><td>{escape(self.d.rule(r.rule_id).title)}</td>"
            f"<td>{escape(r.outcome.value)}</td><td>{escape(r.reason)}</td></tr>"
            for r in self.e.results)
        return (f'<div xmlns="http://www.w3.org/1999/xhtml"><p>{escape(self._summary())}</p>'
                f"<table><tr><th>Rule</th><th>Title</th><th>Outcome</th><th>Reason</th></tr>{rows}"
                "</table></div>")


def _unique_refs(evidence: Iterable[Evidence]) -> list[dict[str, Any]]:
    """One reference per resource (the first citation of it)."""
    seen: dict[str, dict[str, Any]] = {}
    for e in evidence:
        seen.setdefault(e.ref, _reference(e))
    return list(seen.values())


def _reference(evidence: Evidence) -> dict[str, Any]:
    value = "" if evidence.value is None else f": {evidence.value:g}" if isinstance(
        evidence.value, float) else f": {evidence.value}"
    when = f" ({format_instant(evidence.time)})" if evidence.time else ""
    return {"reference": evidence.ref, "display": f"{evidence.what}{value}{when}"}


def _note(title: str, rule_id: str, outcome: str, reason: str, evidence: tuple[Evidence, ...]) -> str:
    cited = "; ".join(f"{r['reference']} {r['display']}" for r in map(_reference, evidence))
    return f"{rule_id} {title}: {outcome}. {reason}." + (f" Evidence: {cited}." if cited else "")
