"""Rules of the FHIR JSON format that the model validation lets through."""

from __future__ import annotations

from typing import Any

from service.fhir.models import Issue


def null_issues(resource: dict[str, Any], where: str = "") -> list[Issue]:
    """FHIR JSON has no `null` properties (R4 2.6.2: "null values are not allowed"; only arrays of
    primitives may hold null to keep their `_element` siblings aligned). The models read a null
    as absent, the rules would not: refuse it, naming where."""
    if not _has_null(resource):
        return []  # the common case, found without building a location for every element
    issues: list[Issue] = []
    stack: list[tuple[str, Any]] = [(where.rstrip("."), resource)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            for key, child in value.items():
                at = f"{path}.{key}" if path else key
                if child is None:
                    issues.append(Issue(at, "null is not allowed in FHIR JSON; omit the element",
                                        "structure"))
                else:
                    stack.append((at, child))
        elif isinstance(value, list):
            stack += [(f"{path}[{i}]", child) for i, child in enumerate(value)
                      if isinstance(child, dict | list)]
    return sorted(issues, key=lambda i: i.expression)


def _has_null(resource: dict[str, Any]) -> bool:
    """Whether some object in `resource` has a null property (what `null_issues` reports)."""
    stack: list[Any] = [resource]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            for child in value.values():
                if child is None:
                    return True
                if isinstance(child, dict | list):
                    stack.append(child)
        elif isinstance(value, list):
            stack += [child for child in value if isinstance(child, dict | list)]
    return False
