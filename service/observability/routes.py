"""GET /metrics in the Prometheus text format (no PHI: counts and rule ids only)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

router = APIRouter(tags=["Operations"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    collected = request.app.state.metrics
    services = request.app.state.services
    await collected.refresh(services.engine, services.clock())
    return Response(generate_latest(collected.registry), media_type=CONTENT_TYPE_LATEST)
