"""HTTP plumbing shared by all routes: FHIR JSON responses, bounded body reading, auth, errors."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.errors import (
    BodyTooLarge,
    CarepathError,
    MalformedBody,
    MethodNotAllowed,
    NotAcceptable,
    Unauthorized,
    UnsupportedMediaType,
)
from service.fhir.models import Issue
from service.fhir.outcome import operation_outcome
from service.webhooks.signatures import bearer_matches

FHIR_JSON = "application/fhir+json"
_JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")


class FhirResponse(Response):
    media_type = FHIR_JSON

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing more than `limit` bytes without reading them all."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"request body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


_SERVED = ("application/fhir+json", "application/json", "application/json+fhir", "json",
           "*/*", "application/*")


def negotiate_format(request: Request) -> None:
    """`_format` and `Accept` (R4 http.html#mime-type): JSON is served; asking only for XML,
    Turtle or another format is 406."""
    wanted = request.query_params.get("_format")
    if wanted is not None:
        if wanted.split(";")[0].strip().lower() not in _SERVED:
            raise NotAcceptable(f"_format {wanted!r} is not served; use json or {FHIR_JSON}")
        return
    accept = request.headers.get("accept", "")
    if not accept.strip():
        return
    kinds = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    refused = [part for part in accept.split(",") if "q=0" in part.replace(" ", "") and
               "q=0." not in part.replace(" ", "")]
    if not any(k in _SERVED and not any(r.split(";")[0].strip().lower() == k for r in refused) for k in kinds):
        raise NotAcceptable(f"Accept {accept!r} names no format served here; use {FHIR_JSON}")


def require_json_type(request: Request) -> None:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type and content_type not in _JSON_TYPES:
        raise UnsupportedMediaType(f"content type {content_type!r} is not supported; send {FHIR_JSON}")


async def read_json(request: Request, limit: int) -> Any:
    require_json_type(request)
    return parse_json(await read_body(request, limit))


def parse_json(body: bytes) -> Any:
    if not body.strip():
        raise MalformedBody("request body is empty", [Issue("$", "request body is empty", "required")])
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedBody(f"malformed JSON: {exc}", [Issue("$", f"malformed JSON: {exc}", "structure")]) from exc


def require_bearer(request: Request, tokens: list[str]) -> str:
    """Check `Authorization: Bearer <token>` against the configured API tokens (constant time)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer token (Authorization: Bearer <token>)")
    if not tokens:
        raise Unauthorized("no API tokens are configured on this server (CAREPATH_API_TOKENS)")
    if not bearer_matches(header, tokens):
        raise Unauthorized("invalid bearer token")
    return "api:" + hashlib.sha256(token.strip().encode()).hexdigest()[:12]


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves as a FHIR OperationOutcome with a 4xx/5xx status."""

    @app.exception_handler(CarepathError)
    async def _carepath(_: Request, exc: CarepathError) -> Response:
        headers = {"WWW-Authenticate": 'Bearer realm="carepath"'} if exc.status == 401 else None
        if isinstance(exc, MethodNotAllowed):
            headers = {"Allow": ", ".join(exc.allow)}
        return FhirResponse(operation_outcome(exc.message, exc.issues, exc.code), exc.status, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> Response:
        issues = [Issue(".".join(str(p) for p in e["loc"]), e["msg"]) for e in exc.errors()]
        return FhirResponse(operation_outcome("invalid request", issues), 400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not-found", 405: "not-supported"}.get(exc.status_code, "processing")
        return FhirResponse(operation_outcome(str(exc.detail), code=code), exc.status_code,
                            getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        logging.getLogger("carepath").exception("unhandled error on %s %s", request.method, request.url.path)
        return FhirResponse(operation_outcome("internal error; the request was logged", code="exception"), 500)
