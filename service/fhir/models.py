"""Validation against the FHIR R4 models (`fhir.resources.R4B`); the only import of fhir.resources."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache
from typing import Any

from fhir.resources import R4B
from pydantic import ValidationError

INPUT_TYPES = frozenset({"Observation", "Condition", "Procedure", "DiagnosticReport", "ServiceRequest",
                         "Patient"})
OUTPUT_TYPES = frozenset({"CarePlan", "ServiceRequest", "Task"})


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


@cache
def model_class(resource_type: str) -> Any:
    module = importlib.import_module(f"{R4B.__name__}.{resource_type.lower()}")
    return getattr(module, resource_type)


def known_resource_type(resource_type: str) -> bool:
    try:
        model_class(resource_type)
    except (ModuleNotFoundError, AttributeError):
        return False
    return True


def validate_resource(data: dict[str, Any], where: str = "") -> list[Issue]:
    """Structural validation of one resource; returns issues located by expression."""
    resource_type = data.get("resourceType")
    if not isinstance(resource_type, str) or not resource_type:
        return [Issue(where or "resourceType", "resourceType is missing", "required")]
    if not known_resource_type(resource_type):
        return [Issue(f"{where}resourceType" if where else "resourceType",
                      f"unknown resourceType {resource_type!r}", "not-supported")]
    try:
        model_class(resource_type).model_validate(data)
    except ValidationError as exc:
        return [Issue(_expression(resource_type, err["loc"], where), err["msg"], "structure")
                for err in exc.errors()[:20]]
    except (ValueError, TypeError) as exc:
        return [Issue(where or resource_type, str(exc), "structure")]
    return []


def _expression(resource_type: str, loc: tuple[Any, ...], where: str) -> str:
    path = where + resource_type if not where else where.rstrip(".")
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part not in ("__root__",) and not str(part).startswith("function-"):
            path += f".{part}"
    return path
