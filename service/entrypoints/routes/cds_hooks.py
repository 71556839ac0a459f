"""CDS Hooks 2.0.1: discovery, service invocation, feedback (JWT-authenticated, EHR-facing)."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from service.bootstrap import Services
from service.cds import hooks
from service.cds.auth import JwtVerifier
from service.cds.feedback import list_feedback, record_feedback
from service.cds.models import FeedbackIn, HookRequestIn
from service.entrypoints.api_docs import CDS_JWT, errors
from service.entrypoints.deps import CallerDep, ServicesDep
from service.entrypoints.http import read_json
from service.errors import MalformedBody
from service.fhir.models import Issue

M = TypeVar("M", bound=BaseModel)
router = APIRouter(prefix="/cds-services", tags=["CDS Hooks"])
_JSON_BODY = {"security": CDS_JWT, "requestBody": {"required": True, "content": {
    "application/json": {"schema": {"type": "object", "additionalProperties": True}}}}}


class _Json(JSONResponse):
    """JSON written by orjson; returned as it is, FastAPI does not encode the content again."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _verifier(services: Services) -> JwtVerifier:
    verifier = services.extras.get("cds_jwt")
    if verifier is None:
        s = services.settings
        verifier = services.extras["cds_jwt"] = JwtVerifier(
            services.engine, services.http, issuers=s.cds_allowed_issuers, jwks_file=s.cds_jwks_file,
            allowed_jku=s.cds_allowed_jku)
    return verifier  # type: ignore[no-any-return]


async def _authenticate(request: Request, services: Services) -> None:
    base = services.settings.base_url
    url = (base.rstrip("/") + request.url.path) if base else str(request.url.replace(query=None, fragment=None))
    await _verifier(services).verify(request.headers.get("authorization"), url)


async def _parse(request: Request, services: Services, model: type[M]) -> M:
    body = await read_json(request, services.settings.max_body_bytes)
    if not isinstance(body, dict):
        raise MalformedBody("the request body must be a JSON object",
                            [Issue("$", "the request body must be a JSON object", "structure")])
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        issues = [Issue(".".join(str(p) for p in e["loc"]) or "$", e["msg"]) for e in exc.errors()]
        raise MalformedBody(f"invalid CDS Hooks request: {issues[0].expression}: {issues[0].message}",
                            issues) from exc


@router.get("", response_class=JSONResponse)
async def discovery() -> Any:
    """The CDS services this server offers (public, as the spec requires)."""
    return hooks.discovery().model_dump(mode="json", exclude_none=True)


@router.post("/{service_id}", response_class=JSONResponse, openapi_extra=_JSON_BODY,
             responses=errors(400, 401, 404, 412, 413, 415))
async def call_service(service_id: str, request: Request, services: ServicesDep) -> Any:
    """Invoke a CDS service: cards from the pathway for the prefetched (or fetched) data."""
    service = hooks.service_named(service_id)
    await _authenticate(request, services)
    hook_request = await _parse(request, services, HookRequestIn)
    return _Json((await hooks.invoke(services, service, hook_request)).wire())


@router.post("/{service_id}/feedback", response_class=JSONResponse, openapi_extra=_JSON_BODY,
             responses=errors(400, 401, 404, 413, 415))
async def post_feedback(service_id: str, request: Request, services: ServicesDep) -> Any:
    """Record accepted/overridden card outcomes (duplicates are ignored)."""
    hooks.service_named(service_id)
    await _authenticate(request, services)
    body = await _parse(request, services, FeedbackIn)
    await record_feedback(services.engine, service_id, body, services.clock())
    return {}


@router.get("/{service_id}/feedback", response_class=JSONResponse, responses=errors(401, 404))
async def get_feedback(service_id: str, services: ServicesDep, _: CallerDep) -> Any:
    """The feedback recorded for a service (API bearer token, like /fhir)."""
    hooks.service_named(service_id)
    return {"feedback": await list_feedback(services.engine, service_id)}
