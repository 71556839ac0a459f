"""Request ids (X-Request-Id in and out, bound to every log line of the request) and one access
log line plus metrics per request. Routes are logged by template, so no patient id appears."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import structlog

from service.observability.logs import logger
from service.observability.metrics import Metrics

_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
HEADER = "x-request-id"


class RequestContext:
    """Pure ASGI middleware (no body buffering, so streaming and size limits still work)."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(HEADER.encode(), b"").decode("latin-1")
        request_id = given if _VALID_ID.match(given) else uuid.uuid4().hex
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []),
                                      (HEADER.encode(), request_id.encode())]
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                route = getattr(scope.get("route"), "path", None) or "unmatched"
                elapsed = time.perf_counter() - started
                self.metrics.requests.labels(scope["method"], route, str(status)).inc()
                self.metrics.latency.labels(route).observe(elapsed)
                logger("carepath.access").info("request", method=scope["method"], route=route,
                                               status=status, ms=round(elapsed * 1000, 1))
