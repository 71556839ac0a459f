"""R3. Severe motor deficit / foot drop -> VERY URGENT.

Clinical meaning: a key lower-limb muscle graded MRC <= 3, or an active foot-drop diagnosis, needs
very urgent spinal assessment and MRI: VERY URGENT (asap) when first recorded within 14 days,
URGENT when established longer; not emergency, since NASS finds no evidence mandating emergency
surgery for motor deficit. Severe deficit in both legs (one record per leg, or one with bodySite
"right and left", v1.1 2a.6) is routed to R1; should R1 not fire on it, R3 escalates it itself, so a
bilateral deficit is never left with no request. MRC 4 (moderate) does not
escalate: it is flagged for R4 monitoring and a 2-week re-examination.
Source: GIRFT CES pathway (major motor weakness, foot dorsiflexion); NHS National Low Back and
Radicular Pain Pathway; NICE CKS ("progressive or severe motor deficit, e.g. foot drop"). The
MRC <= 3 threshold is a product default.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from service.domain.evaluation import Action, Evidence, Outcome, RuleResult, Urgency
from service.domain.facts import Side
from service.rules.definition import Priority
from service.rules.motor import current_run_start
from service.rules.registry import CheckContext, CheckParams, ConceptName, RuleRef, check
from service.rules.series import by_muscle_and_side, current_study, evidence_of


class SevereMotorDeficitParams(CheckParams):
    muscles: list[ConceptName]
    severe_at_or_below: float
    moderate_at: float
    foot_drop: list[ConceptName]
    recent_within: timedelta
    recent_urgency: Priority
    established_urgency: Priority
    mri: list[ConceptName]
    mri_current_for: timedelta
    bilateral_rule: RuleRef


@check("severe_motor_deficit", SevereMotorDeficitParams, {"severe", "mri", "moderate"})
def severe_motor_deficit(ctx: CheckContext, p: SevereMotorDeficitParams) -> RuleResult:
    """Judge the latest qualifying grade per muscle and side; never compare across sides."""
    severe: list[tuple[Side, datetime, Evidence]] = []
    moderate: list[Evidence] = []
    for (_, side), series in sorted(by_muscle_and_side(ctx.facts, p.muscles).items()):
        latest = series[-1]
        run = current_run_start(series, p.severe_at_or_below)
        if run is not None:
            severe.append((side, run.time, evidence_of(latest)))
        elif latest.value <= p.moderate_at:
            moderate.append(evidence_of(latest))
    for concept in p.foot_drop:
        for dx in ctx.facts.diagnosed(concept):
            if dx.active:
                severe.append((dx.side, dx.time or ctx.now, evidence_of(dx)))
    if not severe:
        if moderate:
            return RuleResult(ctx.rule.id, Outcome.NOT_MET,
                              f"moderate deficit (MRC {p.moderate_at:g}) only: no escalation; "
                              "monitor for progression (R4) and re-examine in 2 weeks",
                              evidence=tuple(moderate), actions=(Action("moderate"),))
        return RuleResult(ctx.rule.id, Outcome.NOT_MET, "no severe motor deficit on file")
    evidence = tuple(dict.fromkeys(e for _, _, e in severe))
    sides = {side for side, _, _ in severe}
    bilateral = ctx.earlier.get(p.bilateral_rule)
    if ({Side.LEFT, Side.RIGHT} <= sides or Side.BILATERAL in sides) and bilateral and bilateral.met:
        return RuleResult(ctx.rule.id, Outcome.MET,
                          f"severe motor deficit in both legs: routed to {p.bilateral_rule} "
                          "(suspected cauda equina)", evidence=evidence)
    first = min(t for _, t, _ in severe)
    recent = ctx.now - first <= p.recent_within
    urgency = Urgency.from_priority(p.recent_urgency if recent else p.established_urgency)
    actions = [Action("severe", urgency)]
    mri = current_study(ctx.facts, p.mri, ctx.now, p.mri_current_for)
    if mri is None or mri.time < first:
        actions.append(Action("mri", urgency))
    age = "first recorded within" if recent else "established for more than"
    return RuleResult(ctx.rule.id, Outcome.MET,
                      f"severe motor deficit (MRC <= {p.severe_at_or_below:g} or foot drop), {age} "
                      f"{p.recent_within.days} days: spinal surgical assessment and MRI",
                      urgency=urgency, evidence=evidence, actions=tuple(actions))
