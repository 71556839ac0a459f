"""Motor-series reasoning (R1/R4) gives the same answers as its clinical definition, at any length.

`standing_drops` runs in O(n log n); these tests hold it to the plain, quadratic reading of the spec
(every exam against every earlier one in the window, every later exam as a confirmation) on random
series, so that the faster algorithm cannot change a decision.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from service.domain.facts import Finding, Measurement, PatientFacts
from service.rules.motor import Drop, ProgressionParams, standing_drops
from service.rules.series import positive_findings

START = datetime(2026, 1, 1, tzinfo=UTC)
PARAMS = ProgressionParams(window=timedelta(days=90), confirm_after=timedelta(hours=24),
                           immediate_drop=2)


def spec_drops(series: list[Measurement], p: ProgressionParams) -> list[Drop]:
    """Spec R4 (i)/(ii) read literally: each exam against the best one in the window before it."""
    latest = series[-1] if series else None
    drops = []
    for i, exam in enumerate(series):
        prior = [q for q in series[:i] if exam.time - q.time <= p.window]
        if not prior or latest is None:
            continue
        best = max(prior, key=lambda q: (q.value, q.time))
        if best.value - exam.value < 1 or latest.value > exam.value:
            continue
        immediate = best.value - exam.value >= p.immediate_drop or best.value == 5
        confirm = next((c for c in series[i + 1:]
                        if c.time - exam.time >= p.confirm_after and c.value <= exam.value), None)
        drops.append(Drop(best, exam, confirm, immediate))
    return drops


def random_series(rng: random.Random, length: int) -> list[Measurement]:
    exams, when = [], START
    for n in range(length):
        when += timedelta(hours=rng.choice([0, 1, 6, 12, 24, 30, 72, 24 * 40]))
        grade = float(rng.choice([0, 2, 3, 3, 4, 4, 5, 5]))
        exams.append(Measurement(f"Observation/m{n}", "mrc_l5", grade, when, "final"))
    return sorted(exams, key=lambda m: (m.time, m.ref))


@pytest.mark.parametrize("seed", range(120))
def test_standing_drops_match_the_spec_reading(seed: int) -> None:
    rng = random.Random(seed)
    series = random_series(rng, rng.choice([0, 1, 2, 5, 12, 40, 150]))
    assert standing_drops(series, PARAMS) == spec_drops(series, PARAMS)


def test_a_long_history_keeps_the_drop_and_its_confirmation() -> None:
    """3,000 normal exams, then a 1-grade drop confirmed a day later: the drop fired."""
    normal = [Measurement(f"Observation/n{n}", "mrc_l5", 5.0, START + timedelta(hours=n), "final")
              for n in range(3000)]
    end = normal[-1].time
    dropped = Measurement("Observation/d1", "mrc_l5", 4.0, end + timedelta(hours=1), "final")
    confirmed = Measurement("Observation/d2", "mrc_l5", 4.0, end + timedelta(hours=26), "final")
    drop = standing_drops([*normal, dropped, confirmed], PARAMS)[0]
    assert (drop.at, drop.confirmed_by, drop.fired) == (dropped, confirmed, True)
    assert drop.before.value == 5.0


def test_a_settled_absent_finding_rules_out_only_earlier_positives() -> None:
    def f(n: int, present: bool, status: str = "final") -> Finding:
        return Finding(f"Observation/f{n}", "saddle", present, START + timedelta(days=n), status)

    facts = PatientFacts("p", findings=(f(0, True), f(1, True), f(2, False), f(3, True),
                                        f(4, False, "preliminary"), f(5, True)))
    standing = [x.ref for x in positive_findings(facts, "saddle")]
    assert standing == ["Observation/f3", "Observation/f5"]
