"""Small pure helpers over fact series shared by several checks."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from service.domain.evaluation import Evidence
from service.domain.facts import Diagnosis, Finding, Measurement, PatientFacts, ProcedureDone, Side


def evidence_of(fact: Measurement | Finding | Diagnosis | ProcedureDone, what: str | None = None) -> Evidence:
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


def by_muscle_and_side(facts: PatientFacts, muscles: Iterable[str]) -> dict[tuple[str, Side], list[Measurement]]:
    """Settled motor grades grouped per muscle and side, each series in clinical-time order.

    Grades are compared only within the same muscle and side (spec §2, laterality).
    """
    series: dict[tuple[str, Side], list[Measurement]] = {}
    wanted = set(muscles)
    for m in facts.measurements:
        if m.concept in wanted and m.settled:
            series.setdefault((m.concept, m.side), []).append(m)
    for values in series.values():
        values.sort(key=lambda m: (m.time, m.ref))
    return series


def positive_findings(facts: PatientFacts, concept: str) -> list[Finding]:
    """Positive findings that still stand, for red flags (spec §2, status filters).

    Preliminary/unknown positives count (safety first); a later *settled* absent rules an earlier
    positive out, a preliminary negative does not. Same-timestamp conflicts count as present.
    """
    standing: list[Finding] = []
    first = 0  # standing[first:] still stands; the series is in time order, so rule-outs cut a prefix
    for finding in facts.found(concept):
        if finding.present:
            standing.append(finding)
        elif finding.settled:
            while first < len(standing) and standing[first].time < finding.time:
                first += 1
    return standing[first:]


def conflicting(facts: PatientFacts, concept: str) -> list[Finding]:
    """Present and absent recorded for the same concept at the same clinical time."""
    series = facts.found(concept)
    times_present = {f.time for f in series if f.present}
    return [f for f in series if not f.present and f.time in times_present]


def active_diagnoses(facts: PatientFacts, concepts: Iterable[str]) -> list[Diagnosis]:
    return [d for c in concepts for d in facts.diagnosed(c) if d.active]


def latest_before(values: list[Measurement], moment: datetime) -> Measurement | None:
    earlier = [m for m in values if m.time <= moment]
    return earlier[-1] if earlier else None


def within(values: list[Measurement], start: datetime, end: datetime) -> list[Measurement]:
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

