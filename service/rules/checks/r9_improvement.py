"""R9. Improvement / de-escalation.

Clinical meaning: when pain NRS or ODI has improved from the episode baseline by at least the
MCID (NRS 2 points, ODI 10 points, or 30 %) and no red flag is present, keep the conservative plan
and propose no imaging. Improvement on either instrument counts (as R7 and scenario 12 require).
After lumbar decompression surgery the patient is flagged post-operative: new symptoms follow ACR
V5, and auto-escalation is limited to R1 and R4.
Source: Ostelo, Spine 2008;33:90; Farrar, Pain 2001;94:149; ACR Low Back Pain V5. Product default.
"""

from __future__ import annotations

from service.domain.evaluation import Action, Outcome, RuleResult
from service.rules.registry import CheckContext, CheckParams, ConceptName, RuleRef, check
from service.rules.series import evidence_of, improved


class ImprovementParams(CheckParams):
    pain: ConceptName
    disability: ConceptName
    pain_mcid_points: float
    disability_mcid_points: float
    mcid_fraction: float
    red_flag_rules: list[RuleRef]
    surgery: list[ConceptName]


@check("improvement", ImprovementParams, {"improving"})
def improvement(ctx: CheckContext, p: ImprovementParams) -> RuleResult:
    """Met when either instrument improved by the MCID from the episode baseline."""
    surgery = [s for c in p.surgery for s in ctx.facts.done(c) if s.status == "completed"]
    flags = ("post-operative",) if surgery else ()
    cited = tuple(evidence_of(s, "prior lumbar surgery") for s in surgery)
    if ctx.episode is None:
        return RuleResult(ctx.rule.id, Outcome.NOT_MET, "no radicular episode", evidence=cited, flags=flags)
    onset = ctx.episode.onset
    gains = []
    for concept, points in ((p.pain, p.pain_mcid_points), (p.disability, p.disability_mcid_points)):
        series = [m for m in ctx.facts.measured(concept) if m.time >= onset]
        if len(series) >= 2 and improved(series[0].value, series[-1].value, points, p.mcid_fraction):
            gains += [evidence_of(series[0]), evidence_of(series[-1])]
    red = [r for r in p.red_flag_rules if (res := ctx.earlier.get(r)) and res.met]
    if gains and not red:
        return RuleResult(ctx.rule.id, Outcome.MET,
                          "improving by at least the MCID: continue conservative care, no imaging",
                          evidence=tuple(gains) + cited, actions=(Action("improving"),), flags=flags)
    reason = "red flags present" if red else "no improvement of at least the MCID"
    return RuleResult(ctx.rule.id, Outcome.NOT_MET, reason, evidence=cited, flags=flags)
