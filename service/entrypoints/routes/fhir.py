"""The FHIR R4 API: ingest inputs, read and search outputs, $apply, metadata."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from service import __version__
from service.adapters.store import Store
from service.entrypoints.api_docs import errors
from service.entrypoints.deps import CallerDep, ServicesDep
from service.entrypoints.http import (
    FhirResponse,
    parse_json,
    read_body,
    read_json,
    require_json_type,
)
from service.errors import InvalidResource, MalformedBody, NotFound
from service.fhir.bundles import bundle_entries, searchset, transaction_response
from service.fhir.capability import capability_statement
from service.fhir.ids import is_fhir_id
from service.fhir.models import INPUT_TYPES, OUTPUT_TYPES, Issue
from service.fhir.plandefinition import plan_definition
from service.fhir.time import format_instant
from service.service_layer.apply import apply_pathway

router = APIRouter(prefix="/fhir", tags=["FHIR"])
_JSON_BODY = {"requestBody": {"required": True, "content": {
    "application/fhir+json": {"schema": {"type": "object", "additionalProperties": True}}}}}
_SEARCHABLE = INPUT_TYPES | OUTPUT_TYPES
_RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]{0,63}")


@router.get("/metadata", response_class=FhirResponse)
async def metadata(request: Request, services: ServicesDep) -> Any:
    """The CapabilityStatement (public, as FHIR clients expect)."""
    base = services.settings.base_url or str(request.base_url).rstrip("/")
    return capability_statement(__version__, f"{base}/fhir", format_instant(services.clock()))


@router.get("/PlanDefinition/{pathway_id}", response_class=FhirResponse,
            responses=errors(401, 404))
async def read_plan_definition(pathway_id: str, services: ServicesDep, _: CallerDep) -> Any:
    """The pathway exported as a FHIR PlanDefinition."""
    pathway = services.pathways.get(pathway_id)
    if pathway is None:
        raise NotFound(f"PlanDefinition/{pathway_id} is not known")
    return plan_definition(pathway.definition)


@router.post("/PlanDefinition/{pathway_id}/$apply", response_class=FhirResponse,
             responses=errors(400, 401, 404, 413, 415), openapi_extra={
    "requestBody": {"required": False, "content": {"application/fhir+json": {"schema": {"type": "object"}}}}})
async def apply(pathway_id: str, request: Request, services: ServicesDep, _: CallerDep,
                subject: str | None = Query(None, description="Patient/{id}")) -> Any:
    """PlanDefinition/$apply: the CarePlan for a patient's stored data, requests contained; stores nothing."""
    pathway = services.pathways.get(pathway_id)
    if pathway is None:
        raise NotFound(f"PlanDefinition/{pathway_id} is not known")
    if subject is None:
        body = await read_body(request, services.settings.max_body_bytes)
        if body.strip():
            require_json_type(request)
            subject = _subject_parameter(parse_json(body))
    if not subject or not subject.startswith("Patient/") or len(subject) <= len("Patient/"):
        raise InvalidResource("subject must be given as Patient/{id}",
                              [Issue("subject", "subject must be Patient/{id}", "required")], status=400)
    return await apply_pathway(services, pathway, _fhir_id(subject.split("/", 1)[1], "subject"))


def _subject_parameter(body: Any) -> str | None:
    """The `subject` parameter (valueString or valueReference) of a Parameters resource."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise InvalidResource("$apply takes a Parameters resource or ?subject=",
                              [Issue("resourceType", "expected Parameters", "structure")], status=400)
    parameters = body.get("parameter", [])
    if not isinstance(parameters, list) or not all(isinstance(p, dict) for p in parameters):
        raise InvalidResource("Parameters.parameter must be a list of objects", [
            Issue("Parameters.parameter", "expected a list of objects", "structure")], status=400)
    for i, p in enumerate(parameters):
        if p.get("name") != "subject":
            continue
        reference = p.get("valueReference")
        value = p.get("valueString") or (reference.get("reference")
                                         if isinstance(reference, dict) else None)
        if not isinstance(value, str):
            raise InvalidResource("the subject parameter must be a Patient reference", [
                Issue(f"Parameters.parameter[{i}]", "expected valueString or "
                      "valueReference.reference", "structure")], status=400)
        return value
    return None


@router.post("", response_class=FhirResponse, openapi_extra=_JSON_BODY,
             responses=errors(400, 401, 413, 415, 422))
async def post_bundle(request: Request, services: ServicesDep, caller: CallerDep) -> Any:
    """Ingest a batch, transaction or collection Bundle; the patients' pathways are re-evaluated."""
    body = await read_json(request, services.settings.max_body_bytes)
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        raise InvalidResource("POST /fhir takes a Bundle",
                              [Issue("resourceType", "expected Bundle", "structure")], status=400)
    bundle_type, entries = bundle_entries(body)
    ingest = services.ingestor
    problems = {i: ingest.problems(e.resource, f"Bundle.entry[{i}].resource.") for i, e in enumerate(entries)}
    if bundle_type != "batch" and any(problems.values()):
        issues = [issue for found in problems.values() for issue in found]
        raise InvalidResource(f"{len([p for p in problems.values() if p])} invalid entr(y/ies); "
                              "nothing was stored", issues)
    good = [e.resource for i, e in enumerate(entries) if not problems[i]]
    accepted, _ = await ingest.store_and_evaluate(good, actor=caller)
    return transaction_response(bundle_type, entries, problems, iter(accepted))


@router.post("/{resource_type}", response_class=FhirResponse, status_code=201,
             openapi_extra=_JSON_BODY,
             responses={200: {"description": "identical re-post: nothing new was created"},
                        **errors(400, 401, 404, 413, 415, 422)})
async def create(resource_type: str, request: Request, services: ServicesDep, caller: CallerDep) -> Response:
    """Ingest one Observation, Condition, Procedure (or DiagnosticReport, ServiceRequest, Patient)."""
    if resource_type not in INPUT_TYPES:
        raise NotFound(f"{resource_type} cannot be created here; accepted: {', '.join(sorted(INPUT_TYPES))}")
    resource = await read_json(request, services.settings.max_body_bytes)
    if not isinstance(resource, dict):
        raise MalformedBody("the body must be a JSON object", [Issue("$", "expected an object", "structure")])
    if resource.get("resourceType") != resource_type:
        message = f"resourceType {resource.get('resourceType')!r} does not match the URL ({resource_type})"
        raise InvalidResource(message, [Issue("resourceType", message, "invalid")], status=400)
    services.ingestor.check(resource)
    [accepted], _ = await services.ingestor.store_and_evaluate([resource], actor=caller)
    return FhirResponse(accepted.resource, status_code=201 if accepted.created else 200,
                        headers={"Location": f"{_base(request, services)}/fhir/{accepted.location}",
                                 "ETag": accepted.etag})


@router.get("/{resource_type}", response_class=FhirResponse, responses=errors(400, 401, 404))
async def search(resource_type: str, request: Request, services: ServicesDep, _: CallerDep,
                 subject: str | None = None, patient: str | None = None,
                 count: int = Query(100, alias="_count", ge=1, le=1000)) -> Any:
    """Search by subject/patient (e.g. CarePlan?subject=Patient/123); returns a searchset Bundle."""
    if resource_type not in _SEARCHABLE:
        raise NotFound(f"{resource_type} is not searchable here")
    reference = subject or patient
    patient_id = reference.split("/", 1)[1] if reference and reference.startswith("Patient/") else reference
    if patient_id is not None:
        _fhir_id(patient_id, "subject" if subject else "patient")
    async with services.engine.connect() as conn:
        found = await Store(conn).search(resource_type, patient_id, count)
    return searchset(found, f"{_base(request, services)}/fhir")


@router.get("/{resource_type}/{resource_id}", response_class=FhirResponse,
            responses=errors(304, 400, 401, 404))
async def read(resource_type: str, resource_id: str, request: Request, services: ServicesDep,
               _: CallerDep) -> Response:
    """Read one resource; ETag carries its version."""
    if not _RESOURCE_TYPE.fullmatch(resource_type):
        raise NotFound(f"{resource_type[:64]!r} is not a FHIR resource type")
    _fhir_id(resource_id, "id")
    async with services.engine.connect() as conn:
        stored = await Store(conn).get(resource_type, resource_id)
    if stored is None:
        raise NotFound(f"{resource_type}/{resource_id} is not known")
    if request.headers.get("if-none-match") == stored.etag:
        return Response(status_code=304, headers={"ETag": stored.etag})
    return FhirResponse(stored.resource, headers={"ETag": stored.etag})


def _fhir_id(value: str, where: str) -> str:
    """A logical id from the URL, refused (400) unless it is a FHIR id: nothing else is stored."""
    if not is_fhir_id(value):
        raise InvalidResource(f"{where} must be a FHIR id ([A-Za-z0-9-.]{{1,64}})",
                              [Issue(where, "not a FHIR id", "value")], status=400)
    return value


def _base(request: Request, services: ServicesDep) -> str:
    return services.settings.base_url or str(request.base_url).rstrip("/")
