"""R4. Progressive neurological deficit -> VERY URGENT.

Clinical meaning: strength falling in the same muscle and side across serial exams within 90 days
(a drop of >= 2 grades at once, a new deficit in a muscle previously graded 5, or a 1-grade drop
confirmed by a second exam >= 24 h later that is not better), or a reflex newly absent, needs very
urgent spinal assessment, MRI (unless one was done after the deterioration began) and
re-examination in 24-48 h. A drop that has since recovered is not progression. Contralateral spread
is handled by R1.
Source: NICE CKS and the NHS National Low Back and Radicular Pain Pathway ("progressive
neurological deficit"); GIRFT ("deteriorating"). The quantification is a product default.
"""

from __future__ import annotations

from datetime import datetime

from service.domain.evaluation import Action, Evidence, Outcome, RuleResult, Urgency
from service.domain.facts import PatientFacts
from service.rules.motor import ProgressionParams, standing_drops
from service.rules.registry import CheckContext, CheckParams, ConceptName, check, found_in_facts
from service.rules.series import by_muscle_and_side, current_study, evidence_of


class ProgressiveDeficitParams(CheckParams):
    muscles: list[ConceptName]
    progression: ProgressionParams
    deficit_at_or_below: float
    reflexes: list[ConceptName]
    mri: list[ConceptName]


@check("progressive_deficit", ProgressiveDeficitParams, {"progressive", "mri", "unconfirmed"})
def progressive_deficit(ctx: CheckContext, p: ProgressiveDeficitParams) -> RuleResult:
    """Order exams by clinical time (corrections already applied) and look for standing drops."""
    fired, pending, began = found_in_facts(ctx.facts, p, "progression", lambda: _progression(ctx.facts, p))
    if began is not None:
        actions = [Action("progressive", Urgency.VERY_URGENT)]
        mri = current_study(ctx.facts, p.mri, ctx.now)
        if mri is None or mri.time < began:
            actions.append(Action("mri", Urgency.VERY_URGENT))
        return RuleResult(ctx.rule.id, Outcome.MET,
                          "progressive neurological deficit in the same muscle and side: very "
                          "urgent spinal assessment; re-examine in 24-48 h",
                          urgency=Urgency.VERY_URGENT, evidence=_unique(fired),
                          actions=tuple(actions))
    if pending:
        return RuleResult(ctx.rule.id, Outcome.INDETERMINATE,
                          f"1-grade drop not yet confirmed by an exam "
                          f">= {p.progression.confirm_after.total_seconds() / 3600:g} h later: re-examine",
                          evidence=_unique(pending), actions=(Action("unconfirmed"),))
    return RuleResult(ctx.rule.id, Outcome.NOT_MET, "no progression across serial exams")


def _progression(facts: PatientFacts, p: ProgressiveDeficitParams
                 ) -> tuple[tuple[Evidence, ...], tuple[Evidence, ...], datetime | None]:
    """(evidence of fired drops, of unconfirmed drops, when the earliest fired one began): the
    facts alone decide these."""
    fired: list[Evidence] = []
    pending: list[Evidence] = []
    began = None
    for series in by_muscle_and_side(facts, p.muscles).values():
        for drop in standing_drops(series, p.progression):
            pair = [evidence_of(drop.before), evidence_of(drop.at)]
            if drop.fired:
                fired += pair + ([evidence_of(drop.confirmed_by)] if drop.confirmed_by else [])
                began = min(began or drop.at.time, drop.at.time)
            else:
                pending += pair
    for series in by_muscle_and_side(facts, p.reflexes).values():
        latest = series[-1]
        earlier = [m for m in series[:-1] if m.value > 0
                   and latest.time - m.time <= p.progression.window]
        if latest.value == 0 and earlier:
            fired += [evidence_of(earlier[-1]), evidence_of(latest)]
            began = min(began or latest.time, latest.time)
    return tuple(fired), tuple(pending), began


def _unique(evidence: tuple[Evidence, ...]) -> tuple[Evidence, ...]:
    return tuple(dict.fromkeys(evidence))
