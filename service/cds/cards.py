"""Decision -> CDS Hooks cards (pure), worded for a clinician in the middle of ordering.

Priority maps to the indicator as in the CDS-on-FHIR ConceptMap (routine -> info, urgent/asap ->
warning, stat -> critical). A card says what, why (the evidence in plain words, with dates and
values) and what to do instead; it links to the clinician view (a SMART app) when Carepath knows
its public base URL.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from service.cds.draft_orders import DraftOrder
from service.cds.models import ActionOut, CardOut, LinkOut, SourceOut, SuggestionOut
from service.cds.prefetch import TEMPLATES
from service.cds.wording import (
    cited,
    concept_name,
    day,
    evidence_line,
    ordered,
    plain_reason,
    resource_name,
)
from service.domain.evaluation import Outcome, RuleResult, Urgency
from service.rules.registry import Pathway
from service.service_layer.decide import Decision

_INDICATOR = {Urgency.ROUTINE: "info", Urgency.URGENT: "warning", Urgency.VERY_URGENT: "warning",
              Urgency.EMERGENCY: "critical"}
_PHYSIO = "physiotherapy-referral"
_IMAGING = "lumbar_imaging"
_NS = uuid.UUID("6f1d3c2e-8a4b-4c1e-9d2f-5b7a0e3c4d10")
_OVERRIDE = "http://carepath.example.org/fhir/CodeSystem/override-reason"
_OVERRIDE_REASONS = [
    {"system": _OVERRIDE, "code": "red-flag-suspected", "display": "Red flag suspected clinically"},
    {"system": _OVERRIDE, "code": "patient-preference", "display": "Patient preference after shared decision"}]
_MAX_SUMMARY = 139
_PARENTHESES = re.compile(r"\s*\([^)]*\)")


@dataclass(frozen=True)
class CardContext:
    """Everything a card is made from, besides the decision itself."""

    pathway: Pathway
    hook_instance: str
    resources: Mapping[str, Mapping[str, Any]]  # the inputs by reference ("Condition/abc")
    base_url: str | None = None
    stored_keys: Sequence[str] = ()  # prefetch keys answered from Carepath's own record
    unavailable: Sequence[str] = ()  # supporting prefetch keys no source could answer
    skipped: Sequence[str] = ()


def indicator(urgency: Urgency | None) -> str:
    """The card indicator for a pathway urgency (no urgency = informational)."""
    return _INDICATOR.get(urgency, "info") if urgency else "info"


def _summary(text: str) -> str:
    return text if len(text) <= _MAX_SUMMARY else text[:_MAX_SUMMARY - 3].rstrip(" ,;:") + "..."


def _uuid(hook_instance: str, name: str) -> str:
    """Stable per invocation, so feedback can refer back to the card and suggestion."""
    return str(uuid.uuid5(_NS, f"{hook_instance}:{name}"))


def _source(ctx: CardContext) -> SourceOut:
    d = ctx.pathway.definition
    label = f"Carepath: {d.title.lower()} {d.version}"
    if ctx.stored_keys:
        label += " (from Carepath's stored record: not prefetched)"
    url = f"{ctx.base_url.rstrip('/')}/fhir/PlanDefinition/{d.id}" if ctx.base_url else None
    return SourceOut(label=label, url=url,
                     topic={"system": "http://carepath.example.org/fhir/CodeSystem/pathway",
                            "code": f"{d.id}|{d.version}", "display": d.title})


def _links(ctx: CardContext) -> list[LinkOut] | None:
    if not ctx.base_url:
        return None
    return [LinkOut(label="Open the Carepath clinician view (pathway, evidence, timeline)",
                    url=f"{ctx.base_url.rstrip('/')}/app/launch", type="smart")]


def _data_note(ctx: CardContext) -> str:
    lines = []
    if ctx.stored_keys:
        keys = "prefetch" if set(ctx.stored_keys) >= set(TEMPLATES) else ", ".join(ctx.stored_keys)
        lines.append(f"*Data: the EHR sent no {keys}; Carepath used what it holds for this patient.*")
    if ctx.unavailable:
        lines.append(f"*Data: no {', '.join(ctx.unavailable)} were available; medication evidence of "
                     "conservative care may be missing.*")
    if ctx.skipped:
        shown = "; ".join(ctx.skipped[:5]) + (" ..." if len(ctx.skipped) > 5 else "")
        lines.append(f"*{len(ctx.skipped)} record(s) could not be read and were left out: {shown}*")
    return ("\n\n" + "\n\n".join(lines)) if lines else ""


def _rule_line(ctx: CardContext, result: RuleResult) -> str:
    rule = ctx.pathway.definition.rule(result.rule_id)
    status = {Outcome.MET: "", Outcome.INDETERMINATE: " (cannot be judged yet)"}.get(result.outcome, " (not met)")
    evidence = "; ".join(evidence_line(ctx.pathway, e, ctx.resources) for e in result.evidence)
    source = cited(rule.source)
    echo = rule.title.split(": ")[-1].lower() + ": "  # "...gate: imaging not indicated yet"
    reason = result.reason[len(echo):] if result.reason.lower().startswith(echo) else result.reason
    return (f"- **{rule.title}**{status}: {plain_reason(ctx.pathway, reason)}"
            + (f". Evidence: {evidence}" if evidence else "") + (f". *{source}*" if source else ""))


def _create(resource: dict[str, Any]) -> ActionOut:
    title = resource.get("code", {}).get("text") or "a request"
    return ActionOut(type="create", description=f"Create: {title} ({resource.get('priority')})",
                     resource=resource)


def _physio_request(ctx: CardContext, patient_id: str, authored: str) -> dict[str, Any]:
    definition = ctx.pathway.definition
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


def patient_view_cards(ctx: CardContext, decision: Decision) -> list[CardOut]:
    """One card: the pathway status for this patient, with the proposed requests as suggestions."""
    evaluation = decision.evaluation
    plan = evaluation.plan
    wanted = ", ".join(r.get("code", {}).get("text", "request") for r in decision.outputs.service_requests)
    tasks = "; ".join(_PARENTHESES.sub("", t.description.split(":")[0]).lower() for t in plan.tasks)
    if evaluation.episode is None and not plan.requests:
        summary = "Lumbar radiculopathy pathway: no radicular episode on file"
    elif plan.urgency is Urgency.EMERGENCY:
        summary = f"RED FLAG: {wanted or 'urgent escalation'}"
    else:
        summary = f"Lumbar radiculopathy: {'; '.join(p for p in (wanted, tasks) if p) or 'no new requests'}"
    relevant = [r for r in evaluation.results if r.outcome is not Outcome.NOT_MET] or list(evaluation.results)
    detail = "\n".join(_rule_line(ctx, r) for r in relevant) + _data_note(ctx)
    card = CardOut(uuid=_uuid(ctx.hook_instance, "status"), summary=_summary(summary),
                   indicator=indicator(plan.urgency), source=_source(ctx), detail=detail, links=_links(ctx))
    if decision.outputs.service_requests:
        card.suggestions = [SuggestionOut(
            label="Create the pathway's proposed requests", uuid=_uuid(ctx.hook_instance, "status:create"),
            isRecommended=True, actions=[_create(sr) for sr in decision.outputs.service_requests])]
        card.selectionBehavior = "at-most-one"
    return [card]


def order_cards(ctx: CardContext, decision: Decision, drafts: Sequence[DraftOrder]) -> list[CardOut]:
    """Imaging appropriateness for draft orders: a lumbar imaging order the gate (R5) blocks gets a
    warning card saying what was ordered, why not now, and what instead (physiotherapy); a
    red-flag patient gets the critical pathway card; orders the pathway agrees with are silent.
    On order-select only the orders just selected are judged (order-sign judges them all)."""
    evaluation = decision.evaluation
    cards: list[CardOut] = []
    if evaluation.plan.urgency is Urgency.EMERGENCY:
        cards += patient_view_cards(ctx, decision)
    gate = evaluation.result("R5")
    cited_refs = {e.ref for e in gate.evidence} if gate and gate.met else set()
    blocked = [d for d in drafts if d.selected and d.ref in cited_refs]
    if gate is None or not blocked:
        return cards
    return [*cards, _imaging_gate_card(ctx, decision, gate, blocked)]


def _imaging_gate_card(ctx: CardContext, decision: Decision, gate: RuleResult,
                       blocked: Sequence[DraftOrder]) -> CardOut:
    evaluation = decision.evaluation
    orders = [ordered(ctx.pathway, d.resource, _IMAGING) for d in blocked]
    names = [f"{text} ({code})" if code else text for text, code in orders]
    what = orders[0][0][:70] if len(blocked) == 1 else f"{len(blocked)} lumbar imaging orders"
    why_short, why_lines, reassess = _why(ctx, decision, gate)
    physio_due = any(a.branch == "start" for r in evaluation.results if r.rule_id == "R6"
                     for a in r.actions)
    listed = [f"- {name}" + ("" if d.action_ref else f" (order {d.position} in this list; the EHR "
                                                     "gave it no id, so remove it by hand)")
              for d, name in zip(blocked, names, strict=True)]
    instead = [("Refer to physiotherapy (suggested below)" if physio_due else "Continue physiotherapy")
               + "; advise staying active and review analgesia.", reassess,
               "Image now if red flags appear: saddle numbness, new bladder or bowel change, "
               "severe or progressing leg weakness."]
    detail = ("**Ordered**\n" + "\n".join(listed)
              + "\n\n**Why not now**\n" + "\n".join(f"- {line}" for line in why_lines)
              + "\n\n**Instead**\n" + "\n".join(f"- {line}" for line in instead if line)
              + _data_note(ctx))
    actions = [ActionOut(type="delete", description=f"Remove the draft order: {name}", resourceId=d.action_ref)
               for d, name in zip(blocked, names, strict=True) if d.action_ref]
    if physio_due:
        authored = evaluation.evaluated_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        actions.append(ActionOut(type="create", description="Refer to physiotherapy (conservative care first)",
                                 resource=_physio_request(ctx, evaluation.patient_id, authored)))
    label = ("Replace the imaging order with a physiotherapy referral" if physio_due and len(actions) > 1
             else "Refer to physiotherapy instead" if physio_due else "Remove the imaging order")
    suggestions = [SuggestionOut(label=label, uuid=_uuid(ctx.hook_instance, "imaging-gate:physio"),
                                 isRecommended=True, actions=actions)] if actions else None
    return CardOut(uuid=_uuid(ctx.hook_instance, "imaging-gate"),
                   summary=_summary(f"{what} not indicated yet: {why_short}"), indicator="warning",
                   source=_source(ctx), detail=detail, suggestions=suggestions,
                   selectionBehavior="at-most-one" if suggestions else None,
                   overrideReasons=_OVERRIDE_REASONS, links=_links(ctx))


def _why(ctx: CardContext, decision: Decision, gate: RuleResult) -> tuple[str, list[str], str | None]:
    """The gate's reason in plain words: a short one for the summary, the evidence lines, and
    when to reconsider."""
    evaluation = decision.evaluation
    episode = evaluation.episode
    now = evaluation.evaluated_at
    params: Any = ctx.pathway.params[gate.rule_id]  # ImagingGateParams
    lines: list[str] = []
    if episode is not None:
        anchor = resource_name(ctx.resources.get(episode.anchor_ref or "")) or "radicular diagnosis"
        lines.append(f"Radicular symptoms since {day(episode.onset)} ({(now - episode.onset).days} days): "
                     f"{anchor}.")
    lines.append("No red flags on file: no cauda equina signs, no severe or progressing weakness, "
                 "no signs of infection, cancer or fracture.")
    lines.append(_screen_line(ctx, evaluation.result("R0")))
    for result in _results(evaluation, params.escalating_rules):
        if result.outcome is Outcome.INDETERMINATE or result.evidence:
            lines.append(f"To review, not an escalation on its own: {_because(ctx, result)}.")
    declines = [e for e in gate.evidence if e.what.startswith("declines_intervention")]
    pending = [r for r in _results(evaluation, params.candidate_rules) if r.outcome is Outcome.INDETERMINATE]
    if episode is not None and now - episode.onset < params.min_episode_age:
        weeks = params.min_episode_age.days // 7
        lines.append(f"Before {weeks} weeks of conservative care, imaging rarely changes management. "
                     f"*{cited(ctx.pathway.definition.rule(gate.rule_id).source)}*")
        return (f"radicular pain for {(now - episode.onset).days} days, no red flags", lines,
                f"Reassess from {day(episode.onset + params.min_episode_age)} ({weeks} weeks): imaging is "
                "indicated then if symptoms persist and an injection or surgery is being considered.")
    if declines:
        lines.append("The patient would not consider injection or surgery"
                     + (f" (recorded {day(declines[0].time)})" if declines[0].time else "")
                     + ": imaging would not change management.")
        return "no red flags, and the patient would not consider injection or surgery", lines, None
    if pending:
        lines += [f"{ctx.pathway.definition.rule(r.rule_id).title} cannot be judged yet: {_because(ctx, r)}."
                  for r in pending]
        return "no red flags; the response to treatment cannot be judged yet", lines, \
            "Record the missing scores, then reassess: imaging is indicated if treatment has failed."
    lines.append("Conservative care has not failed (persistent pain or disability after 6 weeks without "
                 "improvement): imaging would not change management now.")
    return "no red flags, and conservative care has not failed", lines, None


def _results(evaluation: Any, rule_ids: Sequence[str]) -> list[RuleResult]:
    return [r for rule_id in rule_ids if (r := evaluation.result(rule_id)) is not None]


def _because(ctx: CardContext, result: RuleResult) -> str:
    """A rule's reason and its evidence, in plain words."""
    evidence = "".join(f"; {evidence_line(ctx.pathway, e, ctx.resources)}" for e in result.evidence)
    return plain_reason(ctx.pathway, result.reason) + evidence


def _screen_line(ctx: CardContext, screen: RuleResult | None) -> str:
    if screen is None or screen.met or not screen.evidence:
        return "No red-flag screen (saddle sensation, bladder, bowel) in the last 14 days: ask now."
    latest = max((e.time for e in screen.evidence if e.time), default=None)
    found = "; ".join(f"{concept_name(ctx.pathway, e.what.split(' ')[0]).lower()} {e.value}"
                      for e in screen.evidence if e.time == latest)
    return f"Red-flag screen on {day(latest)}: {found}." if latest else f"Red-flag screen: {found}."
