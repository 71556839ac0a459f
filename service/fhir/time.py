"""FHIR date/dateTime/instant parsing to timezone-aware UTC datetimes."""

from __future__ import annotations

from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any


def parse_datetime(value: Any) -> datetime | None:
    """A FHIR dateTime (possibly partial: YYYY, YYYY-MM, YYYY-MM-DD) as UTC; None if absent/invalid."""
    if not isinstance(value, str) or not value:
        return None
    return _parse_datetime(value)


@lru_cache(maxsize=32_768)
def _parse_datetime(value: str) -> datetime | None:
    """Remembered: every evaluation re-reads the patient's whole record, so the same timestamps are
    parsed again and again (datetimes are immutable, so sharing them is safe)."""
    text = value.strip()
    try:
        if len(text) == 4:
            return datetime(int(text), 1, 1, tzinfo=UTC)
        if len(text) == 7:
            return datetime(int(text[:4]), int(text[5:7]), 1, tzinfo=UTC)
        if len(text) == 10:
            return datetime.fromisoformat(text).replace(tzinfo=UTC)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_date(value: Any) -> date | None:
    parsed = parse_datetime(value)
    return parsed.date() if parsed else None


def format_instant(moment: datetime) -> str:
    """FHIR instant with seconds precision and a Z suffix."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
