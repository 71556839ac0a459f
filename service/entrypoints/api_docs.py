"""What the OpenAPI document says about answers: every status an operation can return, errors as
FHIR OperationOutcomes, FHIR bodies as JSON objects, and the two bearer schemes (API token, CDS
Hooks JWT). Routes name their statuses with `responses=errors(...)`; `document` fills in the
bodies, so the document matches what the error handlers really send (a test fuzzes it)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI

OUTCOME = {"$ref": "#/components/schemas/OperationOutcome"}
RESOURCE = {"$ref": "#/components/schemas/Resource"}
FHIR_JSON = "application/fhir+json"

_WHY = {
    304: "not modified (If-None-Match matched the current ETag)",
    400: "malformed request: JSON, parameters, Bundle or Parameters structure, ids",
    401: "missing or invalid credentials",
    404: "no such resource, pathway or service",
    405: "not allowed on this resource type (pathway outputs are read-only); see Allow",
    406: "a format other than FHIR JSON was asked for (_format or Accept)",
    410: "the resource (or this version of it) was deleted",
    403: "signed in, but not allowed (another patient, a FHIR server not allowed, access refused)",
    412: "precondition failed",
    413: "request body larger than CAREPATH_MAX_BODY_BYTES",
    415: "media type other than FHIR JSON / JSON",
    422: "invalid FHIR content, codes, units or values (issue.expression names where)",
    502: "a server that had to be asked failed",
}

SCHEMAS: dict[str, Any] = {
    "OperationOutcome": {
        "type": "object",
        "required": ["resourceType", "issue"],
        "properties": {
            "resourceType": {"const": "OperationOutcome"},
            "issue": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["severity", "code"],
                "properties": {
                    "severity": {"enum": ["fatal", "error", "warning", "information"]},
                    "code": {"type": "string"},
                    "diagnostics": {"type": "string"},
                    "expression": {"type": "array", "items": {"type": "string"}},
                }}},
        },
    },
    "Resource": {
        "type": "object",
        "required": ["resourceType"],
        "properties": {"resourceType": {"type": "string"}},
        "additionalProperties": True,
    },
}
SECURITY_SCHEMES = {
    "cdsJwt": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
               "description": "the EHR's signed JWT (CDS Hooks 2.0.1)"},
}
CDS_JWT = [{"cdsJwt": []}]


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: the error (and 304) statuses it can answer."""
    return {status: {"description": _WHY[status]} for status in statuses}


def pages(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a browser route: its errors are HTML pages (parameter errors caught by the
    framework stay OperationOutcomes)."""
    return {status: {"description": _WHY[status], "content": {
        "text/html": {"schema": {"type": "string"}}, FHIR_JSON: {"schema": OUTCOME}}}
        for status in statuses}


def install(app: FastAPI) -> None:
    """Make `app.openapi()` return the documented schema."""
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(FastAPI.openapi(app))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def document(schema: dict[str, Any]) -> dict[str, Any]:
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {}).update(SCHEMAS)
    components.setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            _answers(operation["responses"])
    for unused in ("HTTPValidationError", "ValidationError"):
        components["schemas"].pop(unused, None)
    return orjson.loads(orjson.dumps(schema))  # no shared sub-objects (YAML would anchor them)


def _answers(responses: dict[str, Any]) -> None:
    default_422 = responses.get("422", {}).get("content", {}).get("application/json", {})
    if default_422.get("schema", {}).get("$ref", "").endswith("/HTTPValidationError"):
        del responses["422"]  # FastAPI's parameter errors: our handler answers them 400
        responses.setdefault("400", {"description": _WHY[400]})
    for status, response in responses.items():
        content = response.get("content", {})
        if status.startswith(("4", "5")) and not content:
            response["content"] = {FHIR_JSON: {"schema": OUTCOME}}
        elif content.get(FHIR_JSON, {}).get("schema") in ({"type": "string"}, {}):
            content[FHIR_JSON]["schema"] = RESOURCE  # FHIR routes answer a resource, not a string
    for status in ("304", "204"):
        responses.get(status, {}).pop("content", None)
    ordered = dict(sorted(responses.items()))
    responses.clear()
    responses.update(ordered)
