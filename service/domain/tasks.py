"""Tasks this pathway raised earlier, as far as timing needs them (spec 2a.1: due and overdue)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class TaskOnFile:
    """One of our open Tasks: its deterministic identifier and when it was first raised."""

    key: str
    authored: datetime
