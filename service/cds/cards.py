"""Decision -> CDS Hooks cards (pure). Priority maps to the indicator as in the CDS-on-FHIR
ConceptMap (routine -> info, urgent/asap -> warning, stat -> critical)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from service.cds.models import ActionOut, CardOut, LinkOut, SourceOut, SuggestionOut
from service.domain.evaluation import Outcome, RuleResult, Urgency
from service.rules.definition import PathwayDefinition
from service.service_layer.decide import Decision

_INDICATOR = {Urgency.ROUTINE: "info", Urgency.URGENT: "warning", Urgency.VERY_URGENT: "warning",
              Urgency.EMERGENCY: "critical"}
_PHYSIO = "physiotherapy-referral"
_NS = uuid.UUID("6f1d3c2e-8a4b-4c1e-9d2f-5b7a0e3c4d10")


def indicator(urgency: Urgency | None) -> str:
    """The card indicator for a pathway urgency (no urgency = informational)."""
    return _INDICATOR.get(urgency, "info") if urgency else "info"


def _summary(text: str) -> str:
    return text if len(text) < 140 else text[:136].rstrip() + "..."


def _uuid(hook_instance: str, name: str) -> str:
    """Stable per invocation, so feedback can refer back to the card and suggestion."""
    return str(uuid.uuid5(_NS, f"{hook_instance}:{name}"))


def _source(definition: PathwayDefinition) -> SourceOut:
    return SourceOut(label=f"Carepath pathway {definition.id} {definition.version}",
                     url=definition.url,
                     topic={"system": "http://carepath.example.org/fhir/CodeSystem/pathway",
                            "code": f"{definition.id}|{definition.version}"})


def _links(definition: PathwayDefinition) -> list[LinkOut]:
    return [LinkOut(label=f"Pathway definition ({definition.title})", url=definition.url)]


def _rule_line(definition: PathwayDefinition, result: RuleResult) -> str:
    rule = definition.rule(result.rule_id)
    evidence = "; ".join(f"{e.what} `{e.ref}`" + (f" = {e.value}" if e.value is not None else "")
                         for e in result.evidence)
    return (f"- **{result.rule_id}** {rule.title}: *{result.outcome.value}*, {result.reason}"
            + (f" (evidence: {evidence})" if evidence else "") + f" [{rule.source}]")


def _detail(definition: PathwayDefinition, results: Sequence[RuleResult], skipped: Sequence[str]) -> str:
    lines = [_rule_line(definition, r) for r in results]
    if skipped:
        lines.append("\n**Inputs skipped as invalid** (" + str(len(skipped)) + "): "
                     + "; ".join(skipped[:10]) + (" ..." if len(skipped) > 10 else ""))
    return "\n".join(lines)


def _create(resource: dict[str, Any]) -> ActionOut:
    title = resource.get("code", {}).get("text") or "ServiceRequest"
    return ActionOut(type="create", description=f"Propose {title} ({resource.get('priority')})",
                     resource=resource)


def _physio_request(definition: PathwayDefinition, patient_id: str, authored: str) -> dict[str, Any]:
    template = definition.requests[_PHYSIO]
    codings = []
    for ref in template.codes:
        c = definition.coding(ref)
        codings.append({k: v for k, v in (("system", c.system), ("code", c.code), ("display", c.display)) if v})
    return {"resourceType": "ServiceRequest", "status": "draft", "intent": "proposal",
            "priority": "routine", "code": {"coding": codings, "text": template.title},
            "subject": {"reference": f"Patient/{patient_id}"}, "authoredOn": authored,
            "instantiatesCanonical": [definition.canonical],
            "requester": {"reference": definition.requester}}


def patient_view_cards(definition: PathwayDefinition, decision: Decision, hook_instance: str,
                       skipped: Sequence[str] = ()) -> list[CardOut]:
    """One card: the pathway status for this patient, with the proposed requests as suggestions."""
    evaluation = decision.evaluation
    plan = evaluation.plan
    if evaluation.episode is None and not plan.requests:
        summary = "Lumbar radiculopathy pathway: no radicular episode on file"
    else:
        wanted = ", ".join(r.get("code", {}).get("text", "request") for r in decision.outputs.service_requests)
        summary = f"Lumbar radiculopathy pathway: {wanted or 'no new requests'}"
        if plan.urgency is Urgency.EMERGENCY:
            summary = f"RED FLAG: {wanted or 'urgent escalation'}"
    relevant = [r for r in evaluation.results if r.outcome is not Outcome.NOT_MET] or list(evaluation.results)
    card = CardOut(uuid=_uuid(hook_instance, "status"), summary=_summary(summary),
                   indicator=indicator(plan.urgency), source=_source(definition),
                   detail=_detail(definition, relevant, skipped), links=_links(definition))
    if decision.outputs.service_requests:
        card.suggestions = [SuggestionOut(
            label="Create the pathway's proposed requests", uuid=_uuid(hook_instance, "status:create"),
            isRecommended=True, actions=[_create(sr) for sr in decision.outputs.service_requests])]
        card.selectionBehavior = "at-most-one"
    return [card]


def order_cards(definition: PathwayDefinition, decision: Decision, hook_instance: str,
                draft_refs: Sequence[str], skipped: Sequence[str] = ()) -> list[CardOut]:
    """Imaging appropriateness for draft orders: a blocked imaging order gets a warning card
    suggesting a physiotherapy referral instead; a red-flag patient gets a critical card;
    orders that match the pathway are silent."""
    evaluation = decision.evaluation
    cards: list[CardOut] = []
    if evaluation.plan.urgency is Urgency.EMERGENCY:
        cards += patient_view_cards(definition, decision, hook_instance, skipped)
    gate = evaluation.result("R5")
    blocked = [e.ref for e in gate.evidence if e.ref in draft_refs] if gate and gate.met else []
    if gate is None or not blocked:
        return cards
    authored = evaluation.evaluated_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    actions = [ActionOut(type="delete", description=f"Remove the draft imaging order {ref}", resourceId=ref)
               for ref in blocked]
    actions.append(ActionOut(type="create", description="Refer to physiotherapy (conservative care first)",
                             resource=_physio_request(definition, evaluation.patient_id, authored)))
    cards.append(CardOut(
        uuid=_uuid(hook_instance, "imaging-gate"),
        summary=_summary(f"Lumbar imaging not indicated yet: {gate.reason.removeprefix('imaging not indicated yet: ')}"),
        indicator="warning", source=_source(definition),
        detail=_detail(definition, [gate], skipped)
        + "\n\nNo red flags or other escalation apply; consider conservative care (physiotherapy) first.",
        suggestions=[SuggestionOut(label="Replace the imaging order with a physiotherapy referral",
                                   uuid=_uuid(hook_instance, "imaging-gate:physio"), isRecommended=True,
                                   actions=actions)],
        selectionBehavior="at-most-one",
        overrideReasons=[
            {"system": "http://carepath.example.org/fhir/CodeSystem/override-reason", "code": "red-flag-suspected",
             "display": "Red flag suspected clinically"},
            {"system": "http://carepath.example.org/fhir/CodeSystem/override-reason", "code": "patient-preference",
             "display": "Patient preference after shared decision"}],
        links=_links(definition)))
    return cards
