"""Validation of input resources against the FHIR R4 definitions (see `validation.py`).

fhir.resources (R4B models) is no longer on the validation path: its models accept much that R4
forbids (codes outside required bindings, invariants, JSON nulls and empty arrays, decimals as
strings) and are R4B, not R4. The R4 StructureDefinitions themselves are the reference.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

import orjson

from service.fhir.issues import Issue
from service.fhir.validation import definitions, validate_r4

__all__ = ["INPUT_TYPES", "OUTPUT_TYPES", "Issue", "known_resource_type", "validate_resource"]

INPUT_TYPES = frozenset({"Observation", "Condition", "Procedure", "DiagnosticReport", "ServiceRequest",
                         "Patient", "ImagingStudy", "MedicationRequest", "MedicationStatement"})
OUTPUT_TYPES = frozenset({"CarePlan", "ServiceRequest", "Task"})


def known_resource_type(resource_type: str) -> bool:
    return resource_type in definitions().resources


class ValidContents:
    """Digests of resource contents that passed validation (bounded, least recently used out).

    Validation is a pure function of the JSON content, and EHRs send the same resources again and
    again (every CDS call prefetches the patient's whole record): a content seen valid is not
    validated again. Only successes are kept, so every problem is still found and reported.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._seen: OrderedDict[bytes, None] = OrderedDict()

    @staticmethod
    def digest(data: dict[str, Any]) -> bytes | None:
        try:
            return hashlib.sha256(orjson.dumps(data)).digest()
        except TypeError:  # orjson.JSONEncodeError: not plain JSON (e.g. an integer over 64 bits)
            return None

    def __contains__(self, digest: bytes) -> bool:
        if digest in self._seen:
            self._seen.move_to_end(digest)
            return True
        return False

    def add(self, digest: bytes) -> None:
        self._seen[digest] = None
        if len(self._seen) > self.size:
            self._seen.popitem(last=False)


_valid = ValidContents(50_000)


def validate_resource(data: dict[str, Any], where: str = "") -> list[Issue]:
    """R4 validation of one resource; returns issues located by expression."""
    resource_type = data.get("resourceType")
    if not isinstance(resource_type, str) or not resource_type:
        return [Issue(f"{where}resourceType" if where else "resourceType", "resourceType is missing", "required")]
    digest = _valid.digest(data)
    if digest is not None and digest in _valid:
        return []
    issues = validate_r4(data, where)
    if not issues and digest is not None:
        _valid.add(digest)
    return issues
