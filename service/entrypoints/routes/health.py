"""Liveness (`/health`) and readiness (`/ready`: the database and the FHIR server, if any)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from service.adapters.fhir_client import HttpxFhirServer
from service.entrypoints.deps import ServicesDep

router = APIRouter(tags=["Health"])


@router.get("/health")
async def health() -> dict[str, Any]:
    """The process is up and serving."""
    return {"status": "ok"}


@router.get("/ready", responses={503: {"description": "a dependency is unreachable", "content": {
    "application/json": {"schema": {"type": "object"}}}}})
async def ready(services: ServicesDep) -> JSONResponse:
    """Ready when the database answers and the FHIR write-back server (if any) is reachable."""
    checks: dict[str, str] = {}
    try:
        async with services.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001  (reported, not raised)
        checks["database"] = f"unreachable: {type(exc).__name__}"
    url = services.settings.fhir_server_url
    if url:
        checks["fhirServer"] = (
            "ok" if await HttpxFhirServer(url, services.http).ping() else "unreachable"
        )
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503
    )
