"""Export a pathway definition as a FHIR R4 PlanDefinition (eca-rule actions, one per rule)."""

from __future__ import annotations

from typing import Any

from service.rules.definition import PathwayDefinition

_TYPE = "http://terminology.hl7.org/CodeSystem/plan-definition-type"


def plan_definition(definition: PathwayDefinition) -> dict[str, Any]:
    actions = []
    for rule in definition.rules:
        action: dict[str, Any] = {
            "id": rule.id, "title": rule.title,
            "description": f"check: {rule.check}",
            "documentation": [{"type": "citation", "citation": rule.source}],
            "condition": [{"kind": "applicability",
                           "expression": {"language": "text/x-carepath-check", "expression": rule.check,
                                          "description": rule.title}}],
        }
        if rule.urgency:
            action["priority"] = rule.urgency
        sub = []
        for branch_name, branch in rule.outputs.items():
            for name in branch.requests:
                template = definition.requests[name]
                sub.append({"id": f"{rule.id}-{branch_name}-{name}", "title": template.title,
                            "code": [{"coding": [_coding(definition, c.code, c.display) for c in template.codes]}],
                            **({"priority": branch.urgency} if branch.urgency else {})})
            for name in branch.tasks:
                sub.append({"id": f"{rule.id}-{branch_name}-task-{name}",
                            "title": definition.tasks[name].description})
        if sub:
            action["action"] = sub
        actions.append(action)
    return {
        "resourceType": "PlanDefinition", "id": definition.id, "url": definition.url,
        "version": definition.version, "name": definition.id.replace("-", "_"),
        "title": definition.title, "status": definition.status, "publisher": definition.publisher,
        "description": definition.description,
        "type": {"coding": [{"system": _TYPE, "code": "clinical-protocol"}]},
        "action": actions,
    }


def _coding(definition: PathwayDefinition, code: str, display: str | None) -> dict[str, Any]:
    coding = definition.coding(code)
    return {"system": coding.system, "code": coding.code, **({"display": display} if display else {})}
