"""R0 (missing data). Red-flag screen due.

Clinical meaning: missing data is never a negative. When no cauda equina screen (saddle sensation,
bladder, bowel: recorded present or absent) exists in the last 14 days, ask for one and continue.
Source: clinical-rules spec R0 (14 days is a product default); GIRFT CES pathway red flags.
"""

from __future__ import annotations

from datetime import timedelta

from service.domain.evaluation import Action, Outcome, RuleResult
from service.rules.registry import CheckContext, CheckParams, ConceptName, check
from service.rules.series import evidence_of


class RedFlagScreenParams(CheckParams):
    screen: list[ConceptName]
    within: timedelta


@check("red_flag_screen_due", RedFlagScreenParams, {"due"})
def red_flag_screen_due(ctx: CheckContext, p: RedFlagScreenParams) -> RuleResult:
    """Met (a task is due) when no screen finding of any value falls in the window."""
    if ctx.episode is None:
        return RuleResult(ctx.rule.id, Outcome.NOT_MET, "no radicular episode")
    recent = [f for c in p.screen for f in ctx.facts.found(c) if ctx.now - f.time <= p.within]
    if recent:
        return RuleResult(ctx.rule.id, Outcome.NOT_MET, "red-flag screen is current",
                          evidence=tuple(evidence_of(f) for f in recent))
    return RuleResult(ctx.rule.id, Outcome.MET,
                      f"no red-flag screen in the last {p.within.days} days: screen due",
                      actions=(Action("due"),))
