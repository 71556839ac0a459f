"""Motor-grade reasoning shared by R1, R3 and R4 (MRC 0-5 per muscle and side)."""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from collections.abc import Sequence
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


def current_run_start(series: Sequence[Measurement], at_or_below: float) -> Measurement | None:
    """The first exam of the latest unbroken run of grades <= threshold (None if latest is above)."""
    start = None
    for exam in reversed(series):
        if exam.value > at_or_below:
            break
        start = exam
    return start


def standing_drops(series: Sequence[Measurement], p: ProgressionParams) -> list[Drop]:
    """Drops of >= 1 grade that still stand (no later exam is better than the dropped grade).

    Spec R4 (i)/(ii): a drop of >= `immediate_drop` grades, or a new deficit in a muscle previously
    graded 5, fires at once; a 1-grade drop needs a second exam >= `confirm_after` later that is not
    better (guards against one noisy exam).

    `series` is in clinical-time order. O(n log n): the best earlier grade within the window is a
    sliding-window maximum, and the confirming exam is found by bisection and a range minimum.
    """
    if not series:
        return []
    latest = series[-1]
    times = [exam.time for exam in series]
    lowest = _RangeMin([exam.value for exam in series])
    window: deque[int] = deque()  # indices of earlier exams, best grade (then latest time) first
    drops = []
    for i, exam in enumerate(series):
        while window and exam.time - series[window[0]].time > p.window:
            window.popleft()
        if window:
            best = series[window[0]]
            if best.value - exam.value >= 1 and latest.value <= exam.value:
                immediate = best.value - exam.value >= p.immediate_drop or best.value == 5
                start = max(i + 1, bisect_left(times, exam.time + p.confirm_after))
                at = lowest.first_at_or_below(start, exam.value)
                drops.append(Drop(best, exam, series[at] if at is not None else None, immediate))
        key = (exam.value, exam.time)
        while window and (series[window[-1]].value, series[window[-1]].time) < key:
            window.pop()
        window.append(i)
    return drops


class _RangeMin:
    """The first index at or after `start` whose value is <= a bound, in O(log n) (sparse table)."""

    def __init__(self, values: list[float]) -> None:
        self.levels = [values]
        width = 1
        while 2 * width <= len(values):
            below = self.levels[-1]
            self.levels.append([min(below[j], below[j + width]) for j in range(len(below) - width)])
            width *= 2

    def first_at_or_below(self, start: int, bound: float) -> int | None:
        n = len(self.levels[0])
        position = start
        for level in range(len(self.levels) - 1, -1, -1):
            # skip a block of 2**level values when none of them is <= bound
            while position + (1 << level) <= n and self.levels[level][position] > bound:
                position += 1 << level
        return position if position < n else None
