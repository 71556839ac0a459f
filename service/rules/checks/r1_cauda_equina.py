"""R1. Suspected cauda equina syndrome -> EMERGENCY.

Clinical meaning: bladder or bowel change, saddle sensory change, bilateral radicular pain or a
bilateral motor deficit with one side severe or progressive, or a (suspected) CES diagnosis, that is
new (<= 14 days) or deteriorating, needs immediate emergency referral and MRI within 4 hours.
Stable findings older than 14 days fire at VERY URGENT with a review task, never routine. Sexual
dysfunction alone does not fire (review task only). PVR >= 200 mL is supportive, never required.
Source: GIRFT National Suspected CES Pathway (2023); RCR/CIB MRI provision for CES (2023);
ACR Low Back Pain V4; NICE NG59 1.1.1. The 14-day window is a product default.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from service.domain.evaluation import Action, Evidence, Outcome, RuleResult, Urgency
from service.domain.facts import Measurement, PatientFacts, Side
from service.rules.definition import Priority
from service.rules.motor import ProgressionParams, current_run_start, standing_drops
from service.rules.registry import CheckContext, CheckParams, ConceptName, check
from service.rules.series import by_muscle_and_side, evidence_of, positive_findings


class CaudaEquinaParams(CheckParams):
    new_within: timedelta
    items: dict[str, list[ConceptName]]
    right_radicular: list[ConceptName]
    left_radicular: list[ConceptName]
    muscles: list[ConceptName]
    deficit_at_or_below: float
    severe_at_or_below: float
    progression: ProgressionParams
    pvr: ConceptName
    pvr_supportive_ml: float
    review_only: list[ConceptName]
    stable_urgency: Priority


@dataclass(frozen=True)
class _RedFlag:
    item: str
    evidence: tuple[Evidence, ...]
    since: datetime | None  # None: undated, treated as new (safety first)


@check("suspected_cauda_equina", CaudaEquinaParams, {"escalate", "stable-review", "review-only"})
def suspected_cauda_equina(ctx: CheckContext, p: CaudaEquinaParams) -> RuleResult:
    """Fire on any red-flag item a-e; EMERGENCY when new or deteriorating, else VERY URGENT."""
    flags = [*_findings_and_diagnoses(ctx.facts, p), *_bilateral(ctx.facts, p)]
    supportive = [evidence_of(m, "post-void residual (mL)") for m in ctx.facts.measured(p.pvr)
                  if m.value >= p.pvr_supportive_ml]
    if not flags:
        review = [evidence_of(f) for c in p.review_only for f in positive_findings(ctx.facts, c)]
        if review or supportive:
            return RuleResult(ctx.rule.id, Outcome.NOT_MET,
                              "no cauda equina red flag; finding(s) that need clinician review",
                              evidence=(*review, *supportive), actions=(Action("review-only"),))
        return RuleResult(ctx.rule.id, Outcome.NOT_MET, "no cauda equina red flag on file")
    cutoff = ctx.now - p.new_within
    new = [f for f in flags if f.since is None or f.since >= cutoff]
    evidence = tuple(e for f in flags for e in f.evidence) + tuple(supportive)
    items = ", ".join(sorted({f.item for f in flags}))
    if new:
        return RuleResult(ctx.rule.id, Outcome.MET,
                          f"suspected cauda equina syndrome ({items}), new within "
                          f"{p.new_within.days} days: emergency referral and MRI within 4 h",
                          urgency=Urgency.EMERGENCY, evidence=evidence,
                          actions=(Action("escalate", Urgency.EMERGENCY),))
    stable = Urgency.from_priority(p.stable_urgency)
    return RuleResult(ctx.rule.id, Outcome.MET,
                      f"cauda equina red flag(s) ({items}) older than {p.new_within.days} days and "
                      "not deteriorating: very urgent assessment and clinician review",
                      urgency=stable, evidence=evidence,
                      actions=(Action("escalate", stable), Action("stable-review")))


def _findings_and_diagnoses(facts: PatientFacts, p: CaudaEquinaParams) -> list[_RedFlag]:
    flags = []
    for item, concepts in p.items.items():
        for concept in concepts:
            for dx in facts.diagnosed(concept):
                # Suspected (unconfirmed/provisional/differential) still counts; refuted does not.
                if dx.active:
                    flags.append(_RedFlag(item, (evidence_of(dx),), dx.time))
            standing = positive_findings(facts, concept)
            if standing:
                flags.append(_RedFlag(item, tuple(evidence_of(f) for f in standing), standing[0].time))
    return flags


def _bilateral(facts: PatientFacts, p: CaudaEquinaParams) -> list[_RedFlag]:
    """Item d: bilateral radicular pain, or a bilateral motor deficit with one side severe/progressive."""
    flags = []
    right = [d for c in p.right_radicular for d in facts.diagnosed(c) if d.active]
    left = [d for c in p.left_radicular for d in facts.diagnosed(c) if d.active]
    if right and left:
        since = max((d.time for d in (*right, *left) if d.time), default=None)
        flags.append(_RedFlag("d-bilateral-radicular-pain",
                              tuple(evidence_of(d) for d in (*right, *left)), since))
    deficits: dict[Side, list[tuple[Measurement, Measurement, bool]]] = {}
    for (_, side), series in by_muscle_and_side(facts, p.muscles).items():
        run = current_run_start(series, p.deficit_at_or_below)
        if side not in (Side.LEFT, Side.RIGHT) or run is None:
            continue
        latest = series[-1]
        marked = latest.value <= p.severe_at_or_below or any(
            d.fired for d in standing_drops(series, p.progression))
        deficits.setdefault(side, []).append((run, latest, marked))
    if len(deficits) == 2 and any(m for entries in deficits.values() for _, _, m in entries):
        # It became bilateral when the later side first showed its current deficit.
        since = max(min(run.time for run, _, _ in entries) for entries in deficits.values())
        evidence = tuple(evidence_of(latest) for entries in deficits.values()
                         for _, latest, _ in entries)
        flags.append(_RedFlag("d-bilateral-motor-deficit", evidence, since))
    return flags
