"""R8. Failed epidural steroid injection -> ROUTINE (URGENT with a motor deficit) surgical referral.

Clinical meaning: judge the latest ESI of the episode on pain NRS: the last value within 30 days
before it against the latest value 14-42 days after it (the 2-6 week window in which AAN finds
improvement). A reduction < 30 % (below MCID), worsening, or progression (R4) after the injection
is a failure -> surgical referral; 30-49 % is partial -> surgical opinion (a repeat ESI only where
local policy allows: the US LCD requires >= 50 %); >= 50 % is success -> continue conservative
care. With no post-injection measure by 42 days, ask for one and decide nothing.
Source: AAN (Armon 2007, Neurology 68:723; 2025 update) for the window; Medicare LCD L33906 for the
50 % response; NICE NG59 1.3 for decompression. Thresholds are product defaults.
"""

from __future__ import annotations

from datetime import timedelta

from service.domain.evaluation import Action, Outcome, RuleResult, Urgency
from service.rules.definition import Priority
from service.rules.registry import CheckContext, CheckParams, ConceptName, RuleRef, check
from service.rules.series import by_muscle_and_side, evidence_of, latest_before, within


class FailedInjectionParams(CheckParams):
    injection: ConceptName
    pain: ConceptName
    pre_within: timedelta
    post_from: timedelta
    post_until: timedelta
    failed_below: float
    success_at: float
    muscles: list[ConceptName]
    deficit_at_or_below: float
    deficit_urgency: Priority
    progression_rule: RuleRef


@check("failed_injection", FailedInjectionParams, {"failed", "partial", "missing"})
def failed_injection(ctx: CheckContext, p: FailedInjectionParams) -> RuleResult:
    """Compare pre- and post-injection NRS for the latest completed ESI of the episode."""
    episode = ctx.episode
    injections = [i for i in ctx.facts.done(p.injection)
                  if i.status == "completed" and episode and i.time >= episode.onset]
    if not injections:
        return RuleResult(ctx.rule.id, Outcome.NOT_MET, "no epidural injection in this episode")
    esi = injections[-1]
    pain = ctx.facts.measured(p.pain)
    pre = latest_before(pain, esi.time)
    pre = pre if pre and esi.time - pre.time <= p.pre_within else None
    post = within(pain, esi.time + p.post_from, esi.time + p.post_until)
    cited = (evidence_of(esi, "epidural steroid injection"),)
    progression = ctx.earlier.get(p.progression_rule)
    progressed_after = progression is not None and progression.met and any(
        e.time and e.time > esi.time for e in progression.evidence)
    urgency = _urgency(ctx, p)
    # 2a.9: the request cites the ESI Procedure and the NRS series around it.
    since = pre.time if pre else esi.time - p.pre_within
    series = tuple(evidence_of(m, "pain NRS") for m in within(pain, since, esi.time + p.post_until))
    if progressed_after:
        return RuleResult(ctx.rule.id, Outcome.MET,
                          "neurological progression after the injection: failed; surgical referral",
                          urgency=urgency,
                          evidence=cited + series + tuple(e.as_supporting()
                                                          for e in progression.evidence),
                          actions=(Action("failed", urgency),))
    if pre is None:
        return RuleResult(ctx.rule.id, Outcome.INDETERMINATE,
                          f"no pain NRS within {p.pre_within.days} days before the injection: "
                          "response cannot be judged", evidence=cited)
    if not post:
        if ctx.now < esi.time + p.post_until:
            return RuleResult(ctx.rule.id, Outcome.INDETERMINATE,
                              "awaiting the 2-6 week post-injection pain score", evidence=cited)
        return RuleResult(ctx.rule.id, Outcome.INDETERMINATE,
                          f"no pain NRS {p.post_from.days}-{p.post_until.days} days after the "
                          "injection: collect it; no decision", evidence=cited,
                          actions=(Action("missing"),))
    latest = post[-1]
    reduction = (pre.value - latest.value) / pre.value if pre.value > 0 else 0.0
    cited += tuple(dict.fromkeys((evidence_of(pre, "pain NRS before injection"),
                                  *(e for e in series if e.ref not in (pre.ref, latest.ref)),
                                  evidence_of(latest, "pain NRS after injection"))))
    change = f"NRS {pre.value:g} -> {latest.value:g} ({-reduction:+.0%})"
    if reduction < p.failed_below:
        return RuleResult(ctx.rule.id, Outcome.MET,
                          f"injection failed: {change}, below the {p.failed_below:.0%} MCID; "
                          "spinal surgical referral", urgency=urgency, evidence=cited,
                          actions=(Action("failed", urgency),))
    if reduction < p.success_at:
        return RuleResult(ctx.rule.id, Outcome.MET,
                          f"partial response: {change}; surgical opinion (repeat ESI only where "
                          f"policy allows; the US LCD requires >= {p.success_at:.0%})",
                          urgency=urgency, evidence=cited, actions=(Action("partial", urgency),))
    return RuleResult(ctx.rule.id, Outcome.NOT_MET,
                      f"injection succeeded: {change}; continue conservative care", evidence=cited)


def _urgency(ctx: CheckContext, p: FailedInjectionParams) -> Urgency:
    deficit = any(series[-1].value <= p.deficit_at_or_below
                  for series in by_muscle_and_side(ctx.facts, p.muscles).values())
    return Urgency.from_priority(p.deficit_urgency) if deficit else Urgency.ROUTINE
