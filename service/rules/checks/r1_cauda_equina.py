"""R1. Suspected cauda equina syndrome -> EMERGENCY.

Clinical meaning: bladder or bowel change, saddle sensory change, bilateral radicular pain or a
bilateral motor deficit with one side severe or progressive, or a (suspected) CES diagnosis, that is
new (<= 14 days) or deteriorating, needs immediate emergency referral and MRI within 4 hours.
Stable findings older than 14 days fire at VERY URGENT with a review task, never routine. A red flag
documented present within 14 days and later documented absent by a final exam still fires, at VERY
URGENT with a task to confirm (v1.1, 2a.3), however the two arrive; present and absent at the same
time count as present, with a review task (2a.10). A finding or MRC grade with bodySite "right and
left" is bilateral (2a.6), as is one record per side. Sexual dysfunction alone does not fire
(review task only). PVR >= 200 mL is supportive, never required.
Source: GIRFT National Suspected CES Pathway (2023); RCR/CIB MRI provision for CES (2023);
ACR Low Back Pain V4; NICE NG59 1.1.1. The 14-day window is a product default.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from service.domain.evaluation import Action, Evidence, Outcome, RuleResult, Urgency
from service.domain.facts import PatientFacts, Side
from service.rules.definition import Priority
from service.rules.motor import ProgressionParams, current_run_start, standing_drops
from service.rules.registry import CheckContext, CheckParams, ConceptName, check, found_in_facts
from service.rules.series import (
    by_muscle_and_side,
    conflicting,
    evidence_of,
    negated_findings,
    positive_findings,
)


class CaudaEquinaParams(CheckParams):
    new_within: timedelta
    items: dict[str, list[ConceptName]]
    right_radicular: list[ConceptName]
    left_radicular: list[ConceptName]
    radicular: list[ConceptName]
    muscles: list[ConceptName]
    foot_drop: list[ConceptName]
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


@check("suspected_cauda_equina", CaudaEquinaParams,
       {"escalate", "stable-review", "review-only", "negated-review", "conflict-review"})
def suspected_cauda_equina(ctx: CheckContext, p: CaudaEquinaParams) -> RuleResult:
    """Fire on any red-flag item a-e; EMERGENCY when new or deteriorating, else VERY URGENT.

    A recent positive that a later final exam documents absent fires at VERY URGENT with a task to
    confirm (2a.3); a present/absent conflict at one clinical time counts as present (2a.10).
    """
    cutoff = ctx.now - p.new_within
    on_file = found_in_facts(ctx.facts, p, "cauda-equina", lambda: _on_file(ctx.facts, p))
    flags, conflicts, supportive = on_file.flags, on_file.conflicts, on_file.supportive
    negated = _negated(ctx.facts, p, cutoff, {f.item for f in flags})
    conflict_action = (Action("conflict-review"),) if conflicts else ()
    if not flags and not negated:
        review = on_file.review
        if review or supportive:
            return RuleResult(ctx.rule.id, Outcome.NOT_MET,
                              "no cauda equina red flag; finding(s) that need clinician review",
                              evidence=(*review, *supportive), actions=(Action("review-only"),))
        return RuleResult(ctx.rule.id, Outcome.NOT_MET, "no cauda equina red flag on file")
    new = [f for f in flags if f.since is None or f.since >= cutoff]
    evidence = _dedupe([*(e for f in (*flags, *negated) for e in f.evidence), *supportive,
                        *conflicts])
    negated_action = ((Action("negated-review", note="; ".join(f.note for f in negated)),)
                      if negated else ())
    if new:
        items = ", ".join(sorted({f.item for f in new}))
        return RuleResult(ctx.rule.id, Outcome.MET,
                          f"suspected cauda equina syndrome ({items}), new within "
                          f"{p.new_within.days} days: emergency referral and MRI within 4 h",
                          urgency=Urgency.EMERGENCY, evidence=evidence,
                          actions=(Action("escalate", Urgency.EMERGENCY), *negated_action,
                                   *conflict_action))
    stable = Urgency.from_priority(p.stable_urgency)
    why = []
    if flags:
        why.append(f"red flag(s) ({', '.join(sorted({f.item for f in flags}))}) older than "
                   f"{p.new_within.days} days and not deteriorating")
    if negated:
        why.append(f"red flag(s) ({', '.join(sorted({f.item for f in negated}))}) documented "
                   "present, then absent on a later final exam")
    return RuleResult(ctx.rule.id, Outcome.MET,
                      f"cauda equina {'; '.join(why)}: very urgent assessment and clinician review",
                      urgency=stable, evidence=evidence,
                      actions=(Action("escalate", stable),
                               *((Action("stable-review"),) if flags else ()),
                               *negated_action, *conflict_action))


@dataclass(frozen=True, slots=True)
class _OnFile:
    """What R1 finds in the facts alone, before comparing any time with now."""

    flags: tuple[_RedFlag, ...]
    conflicts: tuple[Evidence, ...]
    supportive: tuple[Evidence, ...]
    review: tuple[Evidence, ...]


def _on_file(facts: PatientFacts, p: CaudaEquinaParams) -> _OnFile:
    flags = (*_findings_and_diagnoses(facts, p), *_bilateral(facts, p))
    conflicts = _dedupe(evidence_of(f) for c in _finding_concepts(p) for f in conflicting(facts, c))
    supportive = tuple(evidence_of(m, "post-void residual (mL)").as_supporting()
                       for m in facts.measured(p.pvr) if m.value >= p.pvr_supportive_ml)
    review = tuple(evidence_of(f) for c in p.review_only for f in positive_findings(facts, c))
    return _OnFile(flags, conflicts, supportive, review)


def _finding_concepts(p: CaudaEquinaParams) -> list[str]:
    return [c for concepts in p.items.values() for c in concepts]


def _dedupe(evidence: Iterable[Evidence]) -> tuple[Evidence, ...]:
    return tuple(dict.fromkeys(evidence))


@dataclass(frozen=True)
class _Negated:
    item: str
    evidence: tuple[Evidence, ...]
    note: str


def _negated(facts: PatientFacts, p: CaudaEquinaParams, cutoff: datetime,
             standing_items: set[str]) -> list[_Negated]:
    """Items a-c documented present within the window and since documented absent (2a.3).

    Only for items not positive anyway; the latest negation per item is cited.
    """
    found = []
    for item, concepts in p.items.items():
        if item in standing_items:
            continue
        negations = [n for c in concepts for n in negated_findings(facts, c)
                     if n.present.time >= cutoff]
        if not negations:
            continue
        last = max(negations, key=lambda n: (n.absent.time, n.present.time, n.present.ref))
        note = (f"red flag documented on {last.present.time:%Y-%m-%d} ({last.present.ref}), "
                f"absent on {last.absent.time:%Y-%m-%d} ({last.absent.ref}): confirm")
        found.append(_Negated(item, (evidence_of(last.present), evidence_of(last.absent)), note))
    return found


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
                flags.append(_RedFlag(item, tuple(evidence_of(f) for f in standing),
                                      standing[0].time))
    return flags


def _bilateral(facts: PatientFacts, p: CaudaEquinaParams) -> list[_RedFlag]:
    """Item d: bilateral radicular pain, or a bilateral motor deficit with one side severe or
    progressive.

    Bilateral is one record per side or one record with bodySite "right and left" (2a.6).
    """
    flags = []
    pain = _radicular_by_side(facts, p)
    if pain[Side.LEFT] and pain[Side.RIGHT]:
        cited = _dedupe(e for side in (Side.RIGHT, Side.LEFT) for _, e in pain[side])
        since = _became_bilateral([[t for t, _ in pain[s]] for s in (Side.LEFT, Side.RIGHT)])
        flags.append(_RedFlag("d-bilateral-radicular-pain", cited, since))
    deficits: dict[Side, list[tuple[datetime | None, Evidence, bool]]] = {}
    for (_, side), series in by_muscle_and_side(facts, p.muscles).items():
        run = current_run_start(series, p.deficit_at_or_below)
        if side not in (Side.LEFT, Side.RIGHT) or run is None:
            continue
        latest = series[-1]
        marked = latest.value <= p.severe_at_or_below or any(
            d.fired for d in standing_drops(series, p.progression))
        deficits.setdefault(side, []).append((run.time, evidence_of(latest), marked))
    for concept in p.foot_drop:  # a foot-drop diagnosis is a severe deficit of its side
        for dx in facts.diagnosed(concept):
            for side in (_legs(dx.side) if dx.active else ()):
                if side in (Side.LEFT, Side.RIGHT):
                    deficits.setdefault(side, []).append((dx.time, evidence_of(dx), True))
    if len(deficits) == 2 and any(m for entries in deficits.values() for _, _, m in entries):
        evidence = _dedupe(e for entries in deficits.values() for _, e, _ in entries)
        flags.append(_RedFlag("d-bilateral-motor-deficit", evidence,
                              _became_bilateral([[t for t, _, _ in e] for e in deficits.values()])))
    return flags


def _became_bilateral(times_per_leg: list[list[datetime | None]]) -> datetime | None:
    """When the later leg first showed it; None (new, safety first) if a leg has no dated record."""
    firsts = [min((t for t in times if t), default=None) for times in times_per_leg]
    return None if None in firsts else max(t for t in firsts if t)


def _legs(side: Side) -> tuple[Side, ...]:
    return (Side.LEFT, Side.RIGHT) if side is Side.BILATERAL else (side,)


def _radicular_by_side(facts: PatientFacts, p: CaudaEquinaParams
                       ) -> dict[Side, list[tuple[datetime | None, Evidence]]]:
    """Active radicular diagnoses and standing radicular findings, per leg (2a.6)."""
    found: dict[Side, list[tuple[datetime | None, Evidence]]] = {Side.LEFT: [], Side.RIGHT: []}
    for concepts, fixed in ((p.right_radicular, Side.RIGHT), (p.left_radicular, Side.LEFT)):
        for dx in (d for c in concepts for d in facts.diagnosed(c) if d.active):
            found[fixed].append((dx.time, evidence_of(dx)))
    for concept in p.radicular:
        for dx in facts.diagnosed(concept):
            if dx.active:
                for side in _legs(dx.side):
                    if side in found:
                        found[side].append((dx.time, evidence_of(dx)))
        for finding in positive_findings(facts, concept):
            for side in _legs(finding.side):
                if side in found:
                    found[side].append((finding.time, evidence_of(finding)))
    return found
