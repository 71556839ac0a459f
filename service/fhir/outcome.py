"""OperationOutcome bodies for every error response."""

from __future__ import annotations

from typing import Any

from service.fhir.models import Issue


def operation_outcome(message: str, issues: list[Issue] | None = None, code: str = "invalid",
                      severity: str = "error") -> dict[str, Any]:
    entries = [{"severity": i.severity if i.severity != "error" else severity,
                "code": i.code if i.code in _ISSUE_TYPES else code,
                "diagnostics": i.message, "expression": [i.expression]} for i in issues or []]
    if not entries:
        entries = [{"severity": severity, "code": code, "diagnostics": message}]
    return {"resourceType": "OperationOutcome", "issue": entries}


_ISSUE_TYPES = {"invalid", "structure", "required", "value", "invariant", "security", "login",
                "unknown", "expired", "forbidden", "suppressed", "processing", "not-supported",
                "duplicate", "multiple-matches", "not-found", "deleted", "too-long", "code-invalid",
                "extension", "too-costly", "business-rule", "conflict", "transient", "lock-error",
                "no-store", "exception", "timeout", "incomplete", "throttled", "informational"}
