"""What a sender is told about its delivery: a status and an OperationOutcome listing everything."""

from __future__ import annotations

from typing import Any

from service.webhooks.receiver import Received


def answer(received: Received) -> tuple[int, dict[str, Any]]:
    """422 when something was refused (the rest is stored, and listed), 202 when new data was
    stored and evaluation follows, 200 when there was nothing new (a duplicate, a heartbeat)."""
    issues: list[dict[str, Any]] = [
        {"severity": "error", "code": i.code, "diagnostics": i.message,
         "expression": [i.expression]} for i in received.rejected]
    issues += [{"severity": i.severity, "code": i.code, "diagnostics": i.message, "expression": [i.expression]}
               for i in received.warnings]
    issues += [{"severity": "information", "code": "informational",
                "diagnostics": f"stored {s.location}" + ("" if s.changed else " (unchanged)")}
               for s in received.stored]
    issues += [{"severity": "information", "code": "duplicate" if "duplicate" in i.reason
                else "informational", "diagnostics": f"{i.reference}: {i.reason}"}
               for i in received.ignored]
    issues += [{"severity": "information", "code": "informational", "diagnostics": note}
               for note in received.notes]
    if not issues:
        issues = [{"severity": "information", "code": "informational",
                   "diagnostics": "received; nothing to do"}]
    if received.rejected:
        status = 422
    elif received.patients:
        status = 202
    else:
        status = 200
    return status, {"resourceType": "OperationOutcome", "issue": issues}
