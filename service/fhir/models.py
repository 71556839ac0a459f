"""Validation against the FHIR R4 models (`fhir.resources.R4B`); the only import of fhir.resources."""

from __future__ import annotations

import hashlib
import importlib
from collections import OrderedDict
from dataclasses import dataclass
from functools import cache
from typing import Any

import orjson
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


class _ValidContents:
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


_valid = _ValidContents(50_000)


def validate_resource(data: dict[str, Any], where: str = "") -> list[Issue]:
    """Structural validation of one resource; returns issues located by expression."""
    resource_type = data.get("resourceType")
    if not isinstance(resource_type, str) or not resource_type:
        return [Issue(where or "resourceType", "resourceType is missing", "required")]
    if not known_resource_type(resource_type):
        return [Issue(f"{where}resourceType" if where else "resourceType",
                      f"unknown resourceType {resource_type!r}", "not-supported")]
    digest = _valid.digest(data)
    if digest is not None and digest in _valid:
        return []
    try:
        model_class(resource_type).model_validate(data)
    except ValidationError as exc:
        return [Issue(_expression(resource_type, err["loc"], where), err["msg"], "structure")
                for err in exc.errors()[:20]]
    except (ValueError, TypeError) as exc:
        return [Issue(where or resource_type, str(exc), "structure")]
    if digest is not None:
        _valid.add(digest)
    return []


def _expression(resource_type: str, loc: tuple[Any, ...], where: str) -> str:
    path = where + resource_type if not where else where.rstrip(".")
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part not in ("__root__",) and not str(part).startswith("function-"):
            path += f".{part}"
    return path
