"""R5. Imaging-appropriateness gate: imaging not indicated yet.

Clinical meaning: lumbar imaging is not indicated when no escalation (R1-R4) or serious-pathology
exemption applies, there is no prior lumbar surgery (ACR V5), and either the episode is younger than
6 weeks (the HEDIS/CMS166 hard floor is 28 days) or the patient is not an intervention candidate
(R7/R8 not met, or would not consider injection or surgery). "Met" means the gate blocks: a
clinician's imaging proposal gets a task "imaging not indicated yet" instead of a request. The
pathway's own imaging proposals come only from rules that open the gate.
Source: NICE NG59 1.1.4-1.1.6; ACR Low Back Pain V1-V3; HEDIS LBP / CMS166 (NQF 0052).
"""

from __future__ import annotations

from datetime import timedelta

from service.domain.evaluation import Action, Evidence, Outcome, RuleResult
from service.rules.registry import CheckContext, CheckParams, ConceptName, RuleRef, check
from service.rules.series import evidence_of, positive_findings

_OPEN = {"draft", "active", "on-hold"}


class ImagingGateParams(CheckParams):
    escalating_rules: list[RuleRef]
    candidate_rules: list[RuleRef]
    min_episode_age: timedelta
    surgery: list[ConceptName]
    declines: list[ConceptName]
    imaging: list[ConceptName]


@check("imaging_gate", ImagingGateParams, {"blocked"})
def imaging_gate(ctx: CheckContext, p: ImagingGateParams) -> RuleResult:
    """Met (blocked) unless an escalation, an intervention-candidate rule or prior surgery opens it."""
    if ctx.episode is None:
        return RuleResult(ctx.rule.id, Outcome.NOT_MET, "no radicular episode")
    opened = [r for r in (*p.escalating_rules, *p.candidate_rules)
              if (res := ctx.earlier.get(r)) and res.met]
    if opened:
        return RuleResult(ctx.rule.id, Outcome.NOT_MET, f"imaging indicated by {', '.join(opened)}")
    surgery = [s for c in p.surgery for s in ctx.facts.done(c) if s.status == "completed"]
    if surgery:
        return RuleResult(ctx.rule.id, Outcome.NOT_MET,
                          "prior lumbar surgery: post-operative imaging rules apply (ACR V5)",
                          evidence=tuple(evidence_of(s) for s in surgery))
    age = ctx.now - ctx.episode.onset
    declines = [f for c in p.declines for f in positive_findings(ctx.facts, c)]
    if age < p.min_episode_age:
        why = f"episode is {age.days} days old (< {p.min_episode_age.days})"
    elif declines:
        why = "patient would not consider injection or surgery"
    else:
        why = "not an intervention candidate (failed conservative care or injection not met)"
    proposals = [r for r in ctx.facts.requests if r.key is None and r.status in _OPEN
                 and set(p.imaging) & r.concepts]
    evidence = tuple(Evidence(r.ref, "proposed imaging", r.coding.code, r.authored) for r in proposals)
    return RuleResult(ctx.rule.id, Outcome.MET, f"imaging not indicated yet: {why}",
                      evidence=evidence + tuple(evidence_of(f) for f in declines),
                      actions=(Action("blocked"),) if proposals else ())
