"""The FHIR R4 API: ingest inputs, read and search outputs, $apply, metadata."""

from __future__ import annotations

from email.utils import format_datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from service import __version__
from service.adapters.store import Stored
from service.entrypoints.deps import CallerDep, ServicesDep
from service.entrypoints.http import FhirResponse, negotiate_format, read_json
from service.errors import InvalidResource, MalformedBody, MethodNotAllowed, NotFound
from service.fhir.bundles import bundle_entries
from service.fhir.capability import capability_statement
from service.fhir.models import INPUT_TYPES, Issue
from service.fhir.outcome import operation_outcome
from service.fhir.plandefinition import plan_definition
from service.fhir.time import format_instant, parse_datetime
from service.service_layer.apply import apply_pathway
from service.service_layer.fhir_api import Written

router = APIRouter(prefix="/fhir", tags=["FHIR"], dependencies=[Depends(negotiate_format)])
_JSON_BODY = {"requestBody": {"required": True, "content": {
    "application/fhir+json": {"schema": {"type": "object", "additionalProperties": True}}}}}


@router.get("/metadata", response_class=FhirResponse)
async def metadata(request: Request, services: ServicesDep) -> Any:
    """The CapabilityStatement (public, as FHIR clients expect)."""
    base = services.settings.base_url or str(request.base_url).rstrip("/")
    return capability_statement(__version__, f"{base}/fhir", format_instant(services.clock()))


@router.get("/PlanDefinition/{pathway_id}", response_class=FhirResponse)
async def read_plan_definition(pathway_id: str, services: ServicesDep, _: CallerDep) -> Any:
    """The pathway exported as a FHIR PlanDefinition."""
    pathway = services.pathways.get(pathway_id)
    if pathway is None:
        raise NotFound(f"PlanDefinition/{pathway_id} is not known")
    return plan_definition(pathway.definition)


@router.post("/PlanDefinition/{pathway_id}/$apply", response_class=FhirResponse, openapi_extra={
    "requestBody": {"required": False, "content": {"application/fhir+json": {"schema": {"type": "object"}}}}})
async def apply(pathway_id: str, request: Request, services: ServicesDep, _: CallerDep,
                subject: str | None = Query(None, description="Patient/{id}")) -> Any:
    """PlanDefinition/$apply: the CarePlan for a patient's stored data, requests contained; stores nothing."""
    pathway = services.pathways.get(pathway_id)
    if pathway is None:
        raise NotFound(f"PlanDefinition/{pathway_id} is not known")
    if subject is None and int(request.headers.get("content-length") or 0) > 0:
        subject = _subject_parameter(await read_json(request, services.settings.max_body_bytes))
    if not subject or not subject.startswith("Patient/") or len(subject) <= len("Patient/"):
        raise InvalidResource("subject must be given as Patient/{id}",
                              [Issue("subject", "subject must be Patient/{id}", "required")], status=400)
    return await apply_pathway(services, pathway, subject.split("/", 1)[1])


def _subject_parameter(body: Any) -> str | None:
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise InvalidResource("$apply takes a Parameters resource or ?subject=",
                              [Issue("resourceType", "expected Parameters", "structure")], status=400)
    return next((p.get("valueString") or (p.get("valueReference") or {}).get("reference")
                 for p in body.get("parameter", []) if p.get("name") == "subject"), None)


@router.post("", response_class=FhirResponse, openapi_extra=_JSON_BODY)
async def post_bundle(request: Request, services: ServicesDep, caller: CallerDep) -> Any:
    """A batch or transaction (POST, PUT, DELETE and GET entries) or a collection Bundle; the
    patients whose data changed are re-evaluated."""
    body = await read_json(request, services.settings.max_body_bytes)
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        raise InvalidResource("POST /fhir takes a Bundle",
                              [Issue("resourceType", "expected Bundle", "structure")], status=400)
    bundle_type, entries = bundle_entries(body)
    return await services.fhir.bundle(bundle_type, entries, actor=caller, base=f"{_base(request, services)}/fhir")


@router.post("/{resource_type}", response_class=FhirResponse, status_code=201, openapi_extra=_JSON_BODY)
async def create(resource_type: str, request: Request, services: ServicesDep, caller: CallerDep) -> Response:
    """Create an Observation, Condition, Procedure, DiagnosticReport, ServiceRequest or Patient. The
    server assigns the id (a hash of the content: re-posting the same content answers 200 with the
    stored resource); `If-None-Exist` makes it a conditional create."""
    if resource_type not in INPUT_TYPES:
        raise NotFound(f"{resource_type} cannot be created here; accepted: {', '.join(sorted(INPUT_TYPES))}")
    resource = await _resource_body(request, services, resource_type)
    written = await services.fhir.create(resource, if_none_exist=request.headers.get("if-none-exist"),
                                         actor=caller)
    return _written(written, request, services)


@router.get("/{resource_type}/_history", response_class=FhirResponse)
async def type_history(resource_type: str, request: Request, services: ServicesDep, _: CallerDep) -> Any:
    """Every version of every resource of a type, newest first (`_count`, `_offset`)."""
    base = f"{_base(request, services)}/fhir"
    return await services.fhir.history(resource_type, None, request.query_params.multi_items(), base,
                                       f"{base}/{resource_type}/_history")


@router.get("/{resource_type}", response_class=FhirResponse)
async def search(resource_type: str, request: Request, services: ServicesDep, _: CallerDep) -> Any:
    """Search (see the README for each type's parameters); `Prefer: handling=strict` refuses
    parameters it does not support, lenient (the default) ignores them."""
    base = f"{_base(request, services)}/fhir"
    return await services.fhir.search(resource_type, request.query_params.multi_items(),
                                      strict=_prefer(request).get("handling") == "strict",
                                      base=base, url=f"{base}/{resource_type}")


@router.get("/{resource_type}/{resource_id}", response_class=FhirResponse)
async def read(resource_type: str, resource_id: str, request: Request, services: ServicesDep,
               _: CallerDep) -> Response:
    """Read one resource; ETag carries its version (304 on a matching If-None-Match)."""
    stored = await services.fhir.read(resource_type, resource_id)
    if request.headers.get("if-none-match") == stored.etag:
        return Response(status_code=304, headers={"ETag": stored.etag})
    return FhirResponse(stored.resource, headers=_version_headers(stored))


@router.put("/{resource_type}/{resource_id}", response_class=FhirResponse, openapi_extra=_JSON_BODY)
async def update(resource_type: str, resource_id: str, request: Request, services: ServicesDep,
                 caller: CallerDep) -> Response:
    """Update an input resource, or create it with this id; `If-Match` must name its current version."""
    if resource_type not in INPUT_TYPES:
        raise MethodNotAllowed(f"{resource_type} cannot be written here; pathway outputs change only "
                               "by re-evaluation", ["GET"])
    resource = await _resource_body(request, services, resource_type)
    written = await services.fhir.update(resource_type, resource_id, resource,
                                         if_match=request.headers.get("if-match"), actor=caller)
    return _written(written, request, services)


@router.delete("/{resource_type}/{resource_id}", status_code=204)
async def delete(resource_type: str, resource_id: str, request: Request, services: ServicesDep,
                 caller: CallerDep) -> Response:
    """Delete an input resource; its patient is re-evaluated."""
    if resource_type not in INPUT_TYPES:
        raise MethodNotAllowed(f"{resource_type} cannot be deleted here", ["GET"])
    await services.fhir.delete(resource_type, resource_id, if_match=request.headers.get("if-match"),
                               actor=caller)
    return Response(status_code=204)


@router.get("/{resource_type}/{resource_id}/_history", response_class=FhirResponse)
async def instance_history(resource_type: str, resource_id: str, request: Request, services: ServicesDep,
                           _: CallerDep) -> Any:
    """Every version of one resource, newest first (deletions included)."""
    base = f"{_base(request, services)}/fhir"
    return await services.fhir.history(resource_type, resource_id, request.query_params.multi_items(),
                                       base, f"{base}/{resource_type}/{resource_id}/_history")


@router.get("/{resource_type}/{resource_id}/_history/{version_id}", response_class=FhirResponse)
async def vread(resource_type: str, resource_id: str, version_id: str, services: ServicesDep,
                _: CallerDep) -> Response:
    """One version of a resource (410 for the version that deleted it)."""
    stored = await services.fhir.vread(resource_type, resource_id, version_id)
    return FhirResponse(stored.resource, headers=_version_headers(stored))


async def _resource_body(request: Request, services: ServicesDep, resource_type: str) -> dict[str, Any]:
    resource = await read_json(request, services.settings.max_body_bytes)
    if not isinstance(resource, dict):
        raise MalformedBody("the body must be a JSON object", [Issue("$", "expected an object", "structure")])
    if resource.get("resourceType") != resource_type:
        message = f"resourceType {resource.get('resourceType')!r} does not match the URL ({resource_type})"
        raise InvalidResource(message, [Issue("resourceType", message, "invalid")], status=400)
    return resource


def _written(written: Written, request: Request, services: ServicesDep) -> Response:
    """The answer to a create or update, shaped by `Prefer: return=` (R4 http.html#ops). With
    warnings and no preference, the OperationOutcome is returned so they are not missed."""
    stored = written.result
    assert isinstance(stored, Stored)
    headers = {"Location": f"{_base(request, services)}/fhir/{stored.location}", **_version_headers(stored)}
    wanted = _prefer(request).get("return") or ("OperationOutcome" if written.issues else "representation")
    if wanted == "minimal":
        return Response(status_code=written.status, headers=headers)
    if wanted == "OperationOutcome":
        outcome = operation_outcome("accepted", written.issues, severity="information") if written.issues else {
            "resourceType": "OperationOutcome", "issue": [{"severity": "information", "code": "informational",
                                                           "diagnostics": f"stored as {stored.location}"}]}
        return FhirResponse(outcome, status_code=written.status, headers=headers)
    return FhirResponse(stored.resource, status_code=written.status, headers=headers)


def _version_headers(stored: Stored) -> dict[str, str]:
    headers = {"ETag": stored.etag}
    updated = parse_datetime((stored.resource.get("meta") or {}).get("lastUpdated"))
    if updated:
        headers["Last-Modified"] = format_datetime(updated, usegmt=True)
    return headers


def _prefer(request: Request) -> dict[str, str]:
    """`Prefer: return=minimal, handling=strict` (several headers or comma-separated) as a dict."""
    found: dict[str, str] = {}
    for header in request.headers.getlist("prefer"):
        for part in header.split(","):
            name, _, value = part.strip().partition("=")
            found[name.strip().lower()] = value.strip().strip('"')
    return found


def _base(request: Request, services: ServicesDep) -> str:
    return services.settings.base_url or str(request.base_url).rstrip("/")
