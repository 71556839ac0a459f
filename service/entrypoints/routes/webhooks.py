"""Inbound webhooks from integration engines and FHIR servers, one URL per configured source:

- `/webhooks/{source}/subscription`: Subscriptions Backport 1.1 rest-hook notifications,
  authenticated by the Subscription's `channel.header` (`Authorization: Bearer <secret>`) or an
  `X-Signature`;
- `/webhooks/{source}/resource`: a bare resource with `X-Signature` (Medplum);
- `/webhooks/{source}/json`: a generic JSON webhook signed per Standard Webhooks 1.0.

The body is checked (size, then signature, then JSON, then FHIR) before anything is stored; what
is accepted is committed before the answer; evaluation (and any `$events` gap recovery) runs after.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, BackgroundTasks, Request

from service.bootstrap import Services
from service.config import WebhookSource
from service.entrypoints.api_docs import OUTCOME, errors
from service.entrypoints.deps import ServicesDep
from service.entrypoints.http import FhirResponse, parse_json, read_body, require_json_type
from service.errors import BadGateway, InvalidResource, MalformedBody, Unauthorized
from service.fhir.models import Issue
from service.webhooks.notification import parse_notification
from service.webhooks.receiver import FetchFailed, FetchRefused, Received
from service.webhooks.report import answer
from service.webhooks.signatures import (
    bearer_matches,
    hex_hmac_matches,
    standard_signature_problem,
)

log = logging.getLogger("carepath.webhooks")
router = APIRouter(prefix="/webhooks", tags=["Webhooks"])
_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"description": "nothing new (heartbeat, handshake, redelivery)", "content": {
        "application/fhir+json": {"schema": OUTCOME}}},
    202: {"description": "new data stored; evaluation follows", "content": {
        "application/fhir+json": {"schema": OUTCOME}}},
    **errors(400, 401, 413, 415, 422, 502)}
_BODY = {"requestBody": {"required": True, "content": {
    "application/fhir+json": {"schema": {"type": "object", "additionalProperties": True}},
    "application/json": {"schema": {"type": "object", "additionalProperties": True}}}}}


async def _signed_body(name: str, request: Request, services: Services,
                       check: Any) -> tuple[WebhookSource, bytes]:
    source = services.settings.webhook_source(name)
    if source is None:
        raise Unauthorized(f"unknown webhook source {name!r}")
    require_json_type(request)
    body = await read_body(request, services.settings.max_body_bytes)
    problem = check(source, body)
    if problem:
        log.warning("webhook from %s refused: %s", name, problem)
        raise Unauthorized(problem)
    return source, body


def _respond(received: Received, source: WebhookSource, services: Services,
             background: BackgroundTasks) -> FhirResponse:
    if received.patients or (received.gaps and source.fhir_server):
        background.add_task(_afterwards, services, source, received)
    status, outcome = answer(received)
    return FhirResponse(outcome, status_code=status)


async def _afterwards(services: Services, source: WebhookSource, received: Received) -> None:
    """After the answer: evaluate, and ask the source for missing events (its answer is processed
    like a notification). Failures leave patients pending and gaps open, both retried/visible."""
    actor = f"webhook:{source.name}"
    try:
        await services.ingestor.evaluate_patients(received.patients, actor=actor)
        for gap in received.gaps if source.fhir_server else []:
            recovered = await services.receiver.recover(source, gap, actor=actor)
            await services.ingestor.evaluate_patients(recovered.patients, actor=actor)
    except Exception:  # noqa: BLE001  (after the answer: logged; the pending sweep retries)
        log.exception("follow-up of a webhook from %s failed", source.name)


@router.post("/{source}/subscription", response_class=FhirResponse, openapi_extra=_BODY,
             responses=_ANSWERS)
async def subscription_notification(source: str, request: Request, services: ServicesDep,
                                    background: BackgroundTasks) -> FhirResponse:
    """A Subscriptions Backport 1.1 notification Bundle (handshake, heartbeat, event)."""
    def check(src: WebhookSource, body: bytes) -> str | None:
        if bearer_matches(request.headers.get("authorization"), src.secrets) or \
                hex_hmac_matches(body, request.headers.get("x-signature"), src.secrets):
            return None
        return "missing or invalid credentials (Authorization: Bearer from channel.header, " \
               "or X-Signature)"

    src, body = await _signed_body(source, request, services, check)
    note, issues = parse_notification(parse_json(body))
    if note is None:
        raise InvalidResource("not a Subscriptions Backport notification Bundle: "
                              + issues[0].message, issues, status=400)
    try:
        received = await services.receiver.notification(src, note, actor=f"webhook:{src.name}")
    except FetchRefused as exc:
        raise InvalidResource(str(exc), [Issue("Bundle.entry", str(exc), "not-supported")]) from exc
    except FetchFailed as exc:
        raise BadGateway(str(exc)) from exc
    return _respond(received, src, services, background)


@router.post("/{source}/resource", response_class=FhirResponse, openapi_extra=_BODY,
             responses=_ANSWERS)
async def bare_resource(source: str, request: Request, services: ServicesDep,
                        background: BackgroundTasks) -> FhirResponse:
    """One resource, signed with `X-Signature` (hex HMAC-SHA256 of the body, Medplum-style);
    `X-Medplum-Deleted-Resource: Type/id` reports a deletion."""
    def check(src: WebhookSource, body: bytes) -> str | None:
        if hex_hmac_matches(body, request.headers.get("x-signature"), src.secrets):
            return None
        return "missing or invalid X-Signature (hex HMAC-SHA256 of the body)"

    src, body = await _signed_body(source, request, services, check)
    actor = f"webhook:{src.name}"
    deleted = request.headers.get("x-medplum-deleted-resource")
    if deleted:
        if deleted.count("/") != 1 or not all(deleted.split("/")):
            raise InvalidResource("X-Medplum-Deleted-Resource must be Type/id", [
                Issue("X-Medplum-Deleted-Resource", f"{deleted!r} is not Type/id", "value")],
                status=400)
        received = await services.receiver.deleted(src.name, deleted, actor=actor)
        return _respond(received, src, services, background)
    resource = parse_json(body)
    if not isinstance(resource, dict) or "resourceType" not in resource:
        raise MalformedBody("the body must be a FHIR resource",
                            [Issue("resourceType", "a FHIR resource is required", "required")])
    received = await services.receiver.resources(src.name, [resource], actor=actor)
    return _respond(received, src, services, background)


@router.post("/{source}/json", response_class=FhirResponse, openapi_extra=_BODY,
             responses=_ANSWERS)
async def signed_json(source: str, request: Request, services: ServicesDep,
                      background: BackgroundTasks) -> FhirResponse:
    """A generic JSON webhook signed per Standard Webhooks 1.0 (`webhook-id`, `webhook-timestamp`,
    `webhook-signature`). Its `data` (or the body itself) is a FHIR resource or a Bundle."""
    def check(src: WebhookSource, body: bytes) -> str | None:
        problem = standard_signature_problem(body, request.headers, src.secrets)
        return f"Standard Webhooks signature not accepted: {problem}" if problem else None

    src, body = await _signed_body(source, request, services, check)
    payload = parse_json(body)
    data = payload.get("data") if isinstance(payload, dict) and "resourceType" not in payload \
        else payload
    if not isinstance(data, dict) or "resourceType" not in data:
        raise MalformedBody("the webhook's data must be a FHIR resource or Bundle",
                            [Issue("data", "a FHIR resource or Bundle is required", "required")])
    if data["resourceType"] == "Bundle":
        entries = data.get("entry") or []
        if not isinstance(entries, list):
            raise MalformedBody("the Bundle's entry must be an array",
                                [Issue("data.entry", "expected an array", "structure")])
        resources = [e.get("resource") if isinstance(e, dict) else e for e in entries]
        where = "data.entry[{i}].resource."
    else:
        resources, where = [data], ""
    received = await services.receiver.resources(src.name, resources, actor=f"webhook:{src.name}",
                                                 where=where)
    return _respond(received, src, services, background)
