"""A located issue with an input (an OperationOutcome.issue before it is rendered)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem with an input, located by a FHIRPath-style expression."""

    expression: str
    message: str
    code: str = "invalid"
    severity: str = "error"  # error | warning | information (2a.12: unusable values are warnings)

    @property
    def refuses(self) -> bool:
        return self.severity in ("error", "fatal")
