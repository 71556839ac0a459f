"""Motor-grade reasoning shared by R1, R3 and R4 (MRC 0-5 per muscle and side)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from service.domain.facts import Measurement
from service.rules.registry import CheckParams


class ProgressionParams(CheckParams):
    """Spec R4 (i): the comparison window, the confirmation delay and the drop that fires at once."""

    window: timedelta
    confirm_after: timedelta
    immediate_drop: float


@dataclass(frozen=True, slots=True)
class Drop:
    """A fall in grade at exam `at` from the best grade within the window before it."""

    before: Measurement
    at: Measurement
    confirmed_by: Measurement | None
    immediate: bool

    @property
    def fired(self) -> bool:
        return self.immediate or self.confirmed_by is not None


def current_run_start(series: list[Measurement], at_or_below: float) -> Measurement | None:
    """The first exam of the latest unbroken run of grades <= threshold (None if latest is above)."""
    start = None
    for exam in reversed(series):
        if exam.value > at_or_below:
            break
        start = exam
    return start


def standing_drops(series: list[Measurement], p: ProgressionParams) -> list[Drop]:
    """Drops of >= 1 grade that still stand (no later exam is better than the dropped grade).

    Spec R4 (i)/(ii): a drop of >= `immediate_drop` grades, or a new deficit in a muscle previously
    graded 5, fires at once; a 1-grade drop needs a second exam >= `confirm_after` later that is not
    better (guards against one noisy exam).
    """
    if not series:
        return []
    latest = series[-1]
    drops = []
    for i, exam in enumerate(series):
        prior = [q for q in series[:i] if exam.time - q.time <= p.window]
        if not prior:
            continue
        best = max(prior, key=lambda q: (q.value, q.time))
        if best.value - exam.value < 1 or latest.value > exam.value:
            continue
        immediate = best.value - exam.value >= p.immediate_drop or best.value == 5
        confirm = next((c for c in series[i + 1:]
                        if c.time - exam.time >= p.confirm_after and c.value <= exam.value), None)
        drops.append(Drop(best, exam, confirm, immediate))
    return drops
