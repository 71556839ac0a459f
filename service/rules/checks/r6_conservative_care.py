"""R6. Start conservative care -> ROUTINE.

Clinical meaning: a radicular episode without red flags, serious pathology or a severe or
progressive deficit starts (or keeps) conservative care: a physiotherapy referral, advice to stay
active, an analgesia review without gabapentinoids, safety-net advice for cauda equina symptoms, and
outcome measures (NRS, ODI) at baseline, ~2 and ~6 weeks. When physiotherapy of this episode is
already under way on the EHR's record, no referral is proposed (physiotherapy from an earlier,
resolved episode does not count: v1.1 2a.8), whatever was proposed before (2a.2: arrival order
never changes the answer). The referral cites the episode-anchoring Condition (2a.9). While an
escalation is open, only the safety-net advice is kept.
Source: NICE NG59 1.1.2-1.1.3, 1.2; ACR Low Back Pain V1.
"""

from __future__ import annotations

from service.domain.evaluation import Action, Outcome, RuleResult
from service.rules.registry import CheckContext, CheckParams, ConceptName, RuleRef, check
from service.rules.series import evidence_of

_UNDERWAY = {"completed", "in-progress"}


class ConservativeCareParams(CheckParams):
    escalating_rules: list[RuleRef]
    physiotherapy: list[ConceptName]


@check("conservative_care", ConservativeCareParams, {"start", "underway", "safety-net"})
def conservative_care(ctx: CheckContext, p: ConservativeCareParams) -> RuleResult:
    """Met for an episode with no escalation; the referral is skipped if physiotherapy is under way."""
    if ctx.episode is None:
        return RuleResult(ctx.rule.id, Outcome.NOT_MET, "no radicular episode")
    escalated = [r for r in p.escalating_rules if (res := ctx.earlier.get(r)) and res.met]
    if escalated:
        return RuleResult(ctx.rule.id, Outcome.NOT_MET,
                          f"escalated by {', '.join(escalated)}: routine care suppressed; "
                          "safety-net advice kept", actions=(Action("safety-net"),))
    onset = ctx.episode.onset
    physio = [proc for c in p.physiotherapy for proc in ctx.facts.done(c)
              if proc.status in _UNDERWAY and proc.time >= onset]
    if physio:
        return RuleResult(ctx.rule.id, Outcome.MET,
                          "conservative care: physiotherapy already under way",
                          evidence=tuple(evidence_of(x, "physiotherapy") for x in physio),
                          actions=(Action("underway"),))
    anchor = [evidence_of(d, "episode diagnosis") for d in ctx.facts.diagnoses
              if d.ref == ctx.episode.anchor_ref]
    return RuleResult(ctx.rule.id, Outcome.MET,
                      "new episode without escalation: start conservative care (physiotherapy, "
                      "stay active, analgesia review, safety-net advice, outcome measures)",
                      evidence=tuple(anchor[:1]), actions=(Action("start"),))
