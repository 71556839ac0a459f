"""HTTP plumbing shared by all routes: FHIR JSON responses, bounded body reading, auth, errors."""

from __future__ import annotations

import hashlib
import logging
import traceback
from itertools import accumulate
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

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
MAX_JSON_DEPTH = 64  # FHIR resources nest far less (a Bundle of resources with extensions ~15)
log = logging.getLogger("carepath")
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


async def negotiate_format(request: Request) -> None:
    """`_format` and `Accept` (R4 http.html#mime-type): JSON is served; asking only for XML,
    Turtle or another format is 406. (`async def`, as every dependency: FastAPI runs a plain
    `def` in its threadpool, a thread hop per request.)"""
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
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedBody(f"malformed JSON: {exc}", [Issue("$", f"malformed JSON: {exc}", "structure")]) from exc
    if nesting_depth(body) > MAX_JSON_DEPTH:
        message = f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
        raise MalformedBody(message, [Issue("$", message, "too-costly")])
    return parsed


_NOT_QUOTE_OR_BRACKET = bytes(b for b in range(256) if b not in b'"[]{}')
_SQUARE = bytes.maketrans(b"{}", b"[]")
_STEP = [{ord("["): 1, ord("]"): -1}.get(b, 0) for b in range(256)]
_PEELED = 8  # innermost levels removed by bytes.replace before the running count


def nesting_depth(document: bytes) -> int:
    """How many levels objects/arrays nest in a well-formed JSON document (0 for a scalar), read
    from its bytes, so that validators, comparisons and serialisers that do recurse never meet a
    deeper one. Linear in the body, with no recursion and no walk over the parsed value: the
    brackets outside strings are kept, the innermost pairs peeled a few times, and the rest
    counted (about 0.2 ms for a 100 KB CDS request; the walk it replaces took 0.8 ms)."""
    if b"\\" in document:  # an escaped backslash, then an escaped quote: neither ends a string
        document = document.replace(b"\\\\", b"").replace(b'\\"', b"")
    # Only quotes and brackets are left. Two adjacent quotes are an empty string, or the seam
    # between two strings with no bracket between them: either way they can go. A quote left
    # belongs to a string holding a bracket, and every second piece between quotes is inside one.
    kept = document.translate(None, _NOT_QUOTE_OR_BRACKET).replace(b'""', b"")
    if b'"' in kept:
        kept = b"".join(kept.split(b'"')[::2])
    brackets = kept.translate(_SQUARE)  # the document parsed, so the pairs match: one kind will do
    depth = 0
    while brackets and depth < _PEELED:
        brackets = brackets.replace(b"[]", b"")  # every innermost container, one level down
        depth += 1
    return depth + max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


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
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not-found", 405: "not-supported"}.get(exc.status_code, "processing")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # every method of the path, not only the first route's
            headers["Allow"] = ", ".join(allowed_methods(request))
        return FhirResponse(operation_outcome(str(exc.detail), code=code), exc.status_code,
                            headers or None)

    app.add_middleware(LastResort)


def allowed_methods(request: Request) -> list[str]:
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods - {"HEAD"})  # HEAD is implied by GET and not in the OpenAPI document


class LastResort:
    """Innermost ASGI middleware: an exception no handler mapped still leaves as an
    OperationOutcome 500 with `Connection: close` (Starlette's own error middleware re-raises
    after answering, and the server then drops the keep-alive connection without saying so).
    The log line names the exception type and where it was raised, never its message, which may
    carry statement parameters or resource content."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: dict[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:  # noqa: BLE001  (the last resort: answered, logged without values)
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            log.error("unhandled %s on %s %s at %s", type(exc).__name__, scope["method"], route,
                      where_raised(exc))
            if started:
                raise
            response = FhirResponse(
                operation_outcome("internal error; the request was logged", code="exception"), 500,
                {"Connection": "close"})
            await response(scope, receive, send)


def where_raised(exc: BaseException) -> str:
    """`file:line function` frames of a traceback, innermost first, with no values."""
    frames = traceback.extract_tb(exc.__traceback__)[-6:]
    return " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(frames))
