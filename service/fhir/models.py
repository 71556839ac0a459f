"""Validation of input resources against the FHIR R4 definitions (see `validation.py`).

fhir.resources (R4B models) is no longer on the validation path: its models accept much that R4
forbids (codes outside required bindings, invariants, JSON nulls and empty arrays, decimals as
strings) and are R4B, not R4. The R4 StructureDefinitions themselves are the reference.
"""

from __future__ import annotations

from typing import Any

from service.fhir.issues import Issue
from service.fhir.validation import definitions, validate_r4

__all__ = ["INPUT_TYPES", "OUTPUT_TYPES", "Issue", "known_resource_type", "validate_resource"]

INPUT_TYPES = frozenset({"Observation", "Condition", "Procedure", "DiagnosticReport", "ServiceRequest",
                         "Patient", "ImagingStudy", "MedicationRequest", "MedicationStatement"})
OUTPUT_TYPES = frozenset({"CarePlan", "ServiceRequest", "Task"})


def known_resource_type(resource_type: str) -> bool:
    return resource_type in definitions().resources


def validate_resource(data: dict[str, Any], where: str = "") -> list[Issue]:
    """R4 validation of one resource; returns issues located by expression."""
    resource_type = data.get("resourceType")
    if not isinstance(resource_type, str) or not resource_type:
        return [Issue(f"{where}resourceType" if where else "resourceType", "resourceType is missing", "required")]
    return validate_r4(data, where)
