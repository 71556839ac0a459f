"""The FHIR R4 API: ingest inputs, read and search outputs, $apply, metadata."""

from __future__ import annotations

import re
from email.utils import format_datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from service import __version__
from service.adapters.store import Stored
from service.entrypoints.api_docs import errors
from service.entrypoints.deps import CallerDep, ServicesDep
from service.entrypoints.http import (
    FhirResponse,
    negotiate_format,
    parse_json,
    read_body,
    read_json,
    require_json_type,
)
from service.errors import InvalidResource, MalformedBody, MethodNotAllowed, NotFound
from service.fhir.bundles import bundle_entries
from service.fhir.capability import capability_statement
from service.fhir.ids import is_fhir_id
from service.fhir.models import INPUT_TYPES, Issue
from service.fhir.outcome import operation_outcome
from service.fhir.plandefinition import plan_definition
from service.fhir.time import format_instant, parse_datetime
from service.service_layer.apply import apply_pathway
from service.service_layer.fhir_api import Written

_RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]{0,63}")


async def _checked_request(request: Request) -> None:
    """Refuse, before anything reads the database, what no stored resource can match: a type that
    is not a FHIR resource type (404), a logical id that is not a FHIR id (400) and a NUL in a
    search parameter (400: FHIR strings never contain one)."""
    kind = request.path_params.get("resource_type")
    if kind is not None and not _RESOURCE_TYPE.fullmatch(kind):
        raise NotFound(f"{kind[:64]!r} is not a FHIR resource type")
    if (resource_id := request.path_params.get("resource_id")) is not None:
        _fhir_id(resource_id, f"{kind}.id" if kind else "id")
    for name, value in request.query_params.multi_items():
        if "\x00" in name or "\x00" in value:
            raise InvalidResource("a search parameter contains a NUL character",
                                  [Issue(name.replace("\x00", "")[:64] or "query", "NUL character",
                                         "value")], status=400)


router = APIRouter(prefix="/fhir", tags=["FHIR"],
                   dependencies=[Depends(negotiate_format), Depends(_checked_request)])
_JSON_BODY = {"requestBody": {"required": True, "content": {
    "application/fhir+json": {"schema": {"type": "object", "additionalProperties": True}}}}}


@router.get("/metadata", response_class=FhirResponse, responses=errors(406))
async def metadata(request: Request, services: ServicesDep) -> Any:
    """The CapabilityStatement (public, as FHIR clients expect)."""
    base = services.settings.base_url or str(request.base_url).rstrip("/")
    return capability_statement(__version__, f"{base}/fhir", format_instant(services.clock()))


@router.get("/PlanDefinition/{pathway_id}", response_class=FhirResponse,
            responses=errors(401, 404, 406))
async def read_plan_definition(pathway_id: str, services: ServicesDep, _: CallerDep) -> Any:
    """The pathway exported as a FHIR PlanDefinition."""
    pathway = services.pathways.get(pathway_id)
    if pathway is None:
        raise NotFound(f"PlanDefinition/{pathway_id} is not known")
    return plan_definition(pathway.definition)


@router.post("/PlanDefinition/{pathway_id}/$apply", response_class=FhirResponse,
             responses=errors(400, 401, 404, 406, 413, 415), openapi_extra={
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
             responses=errors(400, 401, 406, 412, 413, 415, 422))
async def post_bundle(request: Request, services: ServicesDep, caller: CallerDep) -> Any:
    """A batch or transaction (POST, PUT, DELETE and GET entries) or a collection Bundle; the
    patients whose data changed are re-evaluated."""
    body = await read_json(request, services.settings.max_body_bytes)
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        raise InvalidResource("POST /fhir takes a Bundle",
                              [Issue("resourceType", "expected Bundle", "structure")], status=400)
    bundle_type, entries = bundle_entries(body)
    return await services.fhir.bundle(bundle_type, entries, actor=caller, base=f"{_base(request, services)}/fhir")


@router.post("/{resource_type}", response_class=FhirResponse, status_code=201,
             openapi_extra=_JSON_BODY,
             responses={200: {"description": "identical re-post: nothing new was created"},
                        **errors(400, 401, 404, 406, 412, 413, 415, 422)})
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


@router.get("/{resource_type}/_history", response_class=FhirResponse,
            responses=errors(400, 401, 404, 406))
async def type_history(resource_type: str, request: Request, services: ServicesDep, _: CallerDep) -> Any:
    """Every version of every resource of a type, newest first (`_count`, `_offset`)."""
    base = f"{_base(request, services)}/fhir"
    return await services.fhir.history(resource_type, None, request.query_params.multi_items(), base,
                                       f"{base}/{resource_type}/_history")


@router.get("/{resource_type}", response_class=FhirResponse, responses=errors(400, 401, 404, 406))
async def search(resource_type: str, request: Request, services: ServicesDep, _: CallerDep) -> Any:
    """Search (see the README for each type's parameters); `Prefer: handling=strict` refuses
    parameters it does not support, lenient (the default) ignores them."""
    base = f"{_base(request, services)}/fhir"
    return await services.fhir.search(resource_type, request.query_params.multi_items(),
                                      strict=_prefer(request).get("handling") == "strict",
                                      base=base, url=f"{base}/{resource_type}")


@router.get("/{resource_type}/{resource_id}", response_class=FhirResponse,
            responses=errors(304, 400, 401, 404, 406, 410))
async def read(resource_type: str, resource_id: str, request: Request, services: ServicesDep,
               _: CallerDep) -> Response:
    """Read one resource; ETag carries its version (304 on a matching If-None-Match)."""
    stored = await services.fhir.read(resource_type, resource_id)
    if request.headers.get("if-none-match") == stored.etag:
        return Response(status_code=304, headers={"ETag": stored.etag})
    return FhirResponse(stored.resource, headers=_version_headers(stored))


@router.put("/{resource_type}/{resource_id}", response_class=FhirResponse, openapi_extra=_JSON_BODY,
            responses={201: {"description": "created with the client's id"},
                       **errors(400, 401, 404, 405, 406, 412, 413, 415, 422)})
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


@router.delete("/{resource_type}/{resource_id}", status_code=204,
               responses=errors(400, 401, 404, 405, 406, 412))
async def delete(resource_type: str, resource_id: str, request: Request, services: ServicesDep,
                 caller: CallerDep) -> Response:
    """Delete an input resource; its patient is re-evaluated."""
    if resource_type not in INPUT_TYPES:
        raise MethodNotAllowed(f"{resource_type} cannot be deleted here", ["GET"])
    await services.fhir.delete(resource_type, resource_id, if_match=request.headers.get("if-match"),
                               actor=caller)
    return Response(status_code=204)


@router.get("/{resource_type}/{resource_id}/_history", response_class=FhirResponse,
            responses=errors(400, 401, 404, 406))
async def instance_history(resource_type: str, resource_id: str, request: Request, services: ServicesDep,
                           _: CallerDep) -> Any:
    """Every version of one resource, newest first (deletions included)."""
    base = f"{_base(request, services)}/fhir"
    return await services.fhir.history(resource_type, resource_id, request.query_params.multi_items(),
                                       base, f"{base}/{resource_type}/{resource_id}/_history")


@router.get("/{resource_type}/{resource_id}/_history/{version_id}", response_class=FhirResponse,
            responses=errors(400, 401, 404, 406, 410))
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


def _fhir_id(value: str, where: str) -> str:
    """A logical id from the URL, refused (400) unless it is a FHIR id: nothing else is stored."""
    if not is_fhir_id(value):
        raise InvalidResource(f"{where} must be a FHIR id ([A-Za-z0-9-.]{{1,64}})",
                              [Issue(where, "not a FHIR id", "value")], status=400)
    return value


def _base(request: Request, services: ServicesDep) -> str:
    return services.settings.base_url or str(request.base_url).rstrip("/")
