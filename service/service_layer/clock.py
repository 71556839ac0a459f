"""The evaluation clock: real time, or a fixed instant for replaying scenarios (CAREPATH_FIXED_NOW)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


def fixed_clock(moment: datetime) -> Clock:
    fixed = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return lambda: fixed
