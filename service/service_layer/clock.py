"""The evaluation clock: real time, or a fixed instant for replaying scenarios (CAREPATH_FIXED_NOW)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


class ManualClock:
    """A clock that tests and benchmarks move by hand (time-driven re-evaluation)."""

    def __init__(self, start: datetime) -> None:
        self.now = start if start.tzinfo else start.replace(tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> datetime:
        self.now += delta
        return self.now


def fixed_clock(moment: datetime) -> Clock:
    fixed = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return lambda: fixed
