"""Small pure helpers over fact series shared by several checks."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType

from service.domain.evaluation import Evidence
from service.domain.facts import (
    Diagnosis,
    Finding,
    Measurement,
    MedicationUse,
    PatientFacts,
    ProcedureDone,
    Side,
)


def evidence_of(fact: Measurement | Finding | Diagnosis | ProcedureDone | MedicationUse,
                what: str | None = None) -> Evidence:
    """Cite a fact with the value that mattered."""
    if isinstance(fact, Measurement):
        side = f" {fact.side.value}" if fact.side is not Side.UNSPECIFIED else ""
        return Evidence(fact.ref, what or f"{fact.concept}{side}", fact.value, fact.time)
    if isinstance(fact, Finding):
        return Evidence(fact.ref, what or fact.concept, "present" if fact.present else "absent", fact.time)
    if isinstance(fact, Diagnosis):
        return Evidence(fact.ref, what or f"diagnosis {fact.coding.code}", fact.verification_status,
                        fact.time)
    return Evidence(fact.ref, what or f"{fact.concept} {fact.coding.code}", fact.status, fact.time)


def by_muscle_and_side(facts: PatientFacts, muscles: Iterable[str]
                       ) -> Mapping[tuple[str, Side], tuple[Measurement, ...]]:
    """Settled motor grades grouped per muscle and side, each series in clinical-time order.

    Grades are compared only within the same muscle and side (spec §2, laterality). A grade recorded
    with bodySite 51440002 (right and left) is a grade of each leg (spec 2a.6), so it joins both the
    left and the right series, and a later one-sided exam supersedes it on that side only.
    Computed once per set of muscles for these facts (several rules ask).
    """
    wanted = tuple(muscles)
    return facts.derived(("by_muscle_and_side", wanted), lambda: _by_muscle_and_side(facts, wanted))


def _by_muscle_and_side(facts: PatientFacts, muscles: tuple[str, ...]
                        ) -> Mapping[tuple[str, Side], tuple[Measurement, ...]]:
    series: dict[tuple[str, Side], list[Measurement]] = {}
    wanted = set(muscles)
    for m in facts.measurements:
        if m.concept in wanted and m.settled:
            sides = (Side.LEFT, Side.RIGHT) if m.side is Side.BILATERAL else (m.side,)
            for side in sides:
                series.setdefault((m.concept, side), []).append(m)
    return MappingProxyType({key: tuple(sorted(values, key=lambda m: (m.time, m.ref)))
                             for key, values in series.items()})


def positive_findings(facts: PatientFacts, concept: str) -> tuple[Finding, ...]:
    """Positive findings that still stand, for red flags (spec §2, status filters).

    Preliminary/unknown positives count (safety first); a later *settled* absent rules an earlier
    positive out, a preliminary negative does not. Same-timestamp conflicts count as present.
    """
    return facts.derived(("positive_findings", concept), lambda: tuple(_positive_findings(facts, concept)))


def _positive_findings(facts: PatientFacts, concept: str) -> list[Finding]:
    standing: list[Finding] = []
    first = 0  # standing[first:] still stands; the series is in time order, so rule-outs cut a prefix
    for finding in facts.found(concept):
        if finding.present:
            standing.append(finding)
        elif finding.settled:
            while first < len(standing) and standing[first].time < finding.time:
                first += 1
    return standing[first:]


@dataclass(frozen=True, slots=True)
class Negation:
    """A positive finding ruled out by a later settled (final) absent one (spec 2a.3)."""

    present: Finding
    absent: Finding


def negated_findings(facts: PatientFacts, concept: str) -> tuple[Negation, ...]:
    """Positives that a later *settled* absent ruled out, each paired with the absent that did it.

    The complement of `positive_findings`: together they account for every positive on file, so
    a red flag that was documented is never silently forgotten (spec 2a.3).
    """
    return facts.derived(("negated_findings", concept), lambda: tuple(_negated_findings(facts, concept)))


def _negated_findings(facts: PatientFacts, concept: str) -> list[Negation]:
    negations: list[Negation] = []
    standing: list[Finding] = []
    for finding in facts.found(concept):
        if finding.present:
            standing.append(finding)
        elif finding.settled:
            negations += [Negation(f, finding) for f in standing if f.time < finding.time]
            standing = [f for f in standing if f.time >= finding.time]
    return negations


def conflicting(facts: PatientFacts, concept: str) -> tuple[Finding, ...]:
    """Present and absent recorded for the same concept at the same clinical time (both returned).

    Spec 2a.10: such a conflict counts as present, plus a review task.
    """
    return facts.derived(("conflicting", concept), lambda: _conflicting(facts.found(concept)))


def _conflicting(series: tuple[Finding, ...]) -> tuple[Finding, ...]:
    times_present = {f.time for f in series if f.present}
    times_absent = {f.time for f in series if not f.present}
    return tuple(f for f in series if f.time in times_present & times_absent)


def active_diagnoses(facts: PatientFacts, concepts: Iterable[str]) -> list[Diagnosis]:
    return [d for c in concepts for d in facts.diagnosed(c) if d.active]


def latest_before(values: Sequence[Measurement], moment: datetime) -> Measurement | None:
    earlier = [m for m in values if m.time <= moment]
    return earlier[-1] if earlier else None


def within(values: Sequence[Measurement], start: datetime, end: datetime) -> list[Measurement]:
    return [m for m in values if start <= m.time <= end]


def improved(baseline: float, latest: float, points: float, fraction: float) -> bool:
    """A clinically important improvement: a drop of at least `points` or `fraction` of baseline (MCID)."""
    drop = baseline - latest
    return drop >= points or (baseline > 0 and drop / baseline >= fraction)


def current_study(facts: PatientFacts, concepts: Iterable[str], now: datetime,
                  lookback: timedelta | None = None) -> ProcedureDone | None:
    """The latest completed study of these kinds, within the lookback if one is given (R5 de-duplication)."""
    studies = [p for c in concepts for p in facts.done(c)
               if p.status == "completed" and p.time <= now
               and (lookback is None or now - lookback <= p.time)]
    return max(studies, key=lambda p: p.time) if studies else None

