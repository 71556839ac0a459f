"""The CapabilityStatement: exactly what this server does, no more."""

from __future__ import annotations

from typing import Any

from service.fhir.models import INPUT_TYPES, OUTPUT_TYPES
from service.fhir.search import INCLUDES, PARAMETERS

_DEFINITIONS = "http://hl7.org/fhir/SearchParameter/"
_TYPES = {"reference": "reference", "token-code": "token", "token-concept": "token", "token-identifier": "token"}
_COMMON = [{"name": "_id", "type": "token", "definition": f"{_DEFINITIONS}Resource-id"},
           {"name": "_lastUpdated", "type": "date", "definition": f"{_DEFINITIONS}Resource-lastUpdated"}]


def _search_params(kind: str) -> list[dict[str, Any]]:
    params = [{"name": name, "type": _TYPES[param.kind],
               "definition": f"{_DEFINITIONS}{_definition(kind, name)}"}
              for name, param in PARAMETERS[kind].items()]
    return _COMMON + params


def _definition(kind: str, name: str) -> str:
    shared = {"patient": "clinical-patient", "code": "clinical-code", "identifier": "clinical-identifier"}
    if kind == "Patient" and name == "identifier":
        return "Patient-identifier"
    if name in shared and kind in ("Observation", "Condition", "Procedure", "DiagnosticReport",
                                   "ServiceRequest", "CarePlan"):
        return shared[name]
    return f"{kind}-{name}"


def capability_statement(version: str, base_url: str, now: str) -> dict[str, Any]:
    resources = []
    for kind in sorted(INPUT_TYPES | OUTPUT_TYPES | {"PlanDefinition", "Device"}):
        writable = kind in INPUT_TYPES
        interactions = [{"code": "read"}]
        if kind in PARAMETERS:
            interactions += [{"code": "vread"}, {"code": "history-instance"}, {"code": "history-type"},
                             {"code": "search-type"}]
        if writable:
            interactions += [{"code": "create"}, {"code": "update"}, {"code": "delete"}]
        entry: dict[str, Any] = {"type": kind, "interaction": interactions}
        if kind in PARAMETERS:
            entry.update(versioning="versioned-update" if writable else "versioned", readHistory=True,
                         updateCreate=writable, conditionalCreate=writable, conditionalRead="not-supported",
                         conditionalUpdate=False, conditionalDelete="not-supported",
                         searchParam=_search_params(kind))
            includes = [i for i in INCLUDES if i.startswith(f"{kind}:")]
            if includes:
                entry["searchInclude"] = includes
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
