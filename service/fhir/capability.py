"""The CapabilityStatement: exactly what this server does, no more."""

from __future__ import annotations

from typing import Any

from service.fhir.models import INPUT_TYPES, OUTPUT_TYPES


def capability_statement(version: str, base_url: str, now: str) -> dict[str, Any]:
    search = [{"name": "subject", "type": "reference"}, {"name": "patient", "type": "reference"}]
    resources = []
    for kind in sorted(INPUT_TYPES | OUTPUT_TYPES | {"PlanDefinition"}):
        interactions = []
        if kind in INPUT_TYPES:
            interactions.append({"code": "create"})
        if kind in OUTPUT_TYPES or kind in INPUT_TYPES:
            interactions += [{"code": "read"}, {"code": "search-type"}]
        entry: dict[str, Any] = {"type": kind, "interaction": interactions or [{"code": "read"}],
                                 "versioning": "versioned", "readHistory": False,
                                 "conditionalCreate": False, "updateCreate": False}
        if kind in OUTPUT_TYPES or kind in INPUT_TYPES:
            entry["searchParam"] = search
        if kind == "PlanDefinition":
            entry["operation"] = [{"name": "apply",
                                   "definition": "http://hl7.org/fhir/OperationDefinition/PlanDefinition-apply"}]
        resources.append(entry)
    return {
        "resourceType": "CapabilityStatement", "status": "active", "date": now, "kind": "instance",
        "software": {"name": "Carepath", "version": version},
        "implementation": {"description": "Carepath care-pathway service", "url": base_url},
        "fhirVersion": "4.0.1", "format": ["application/fhir+json", "json"],
        "rest": [{"mode": "server",
                  "security": {"description": "Bearer token in the Authorization header "
                                              "(CAREPATH_API_TOKENS); /metadata is public."},
                  "resource": resources,
                  "interaction": [{"code": "batch"}, {"code": "transaction"}]}],
    }
