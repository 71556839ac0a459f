"""Operator endpoints: the write-back outbox (counts, items) and re-trying a failed delivery."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query

from service.adapters import outbox
from service.entrypoints.deps import CallerDep, ServicesDep
from service.errors import NotFound

router = APIRouter(prefix="/admin", tags=["Admin"])


@router.get("/outbox")
async def list_outbox(
    services: ServicesDep,
    _: CallerDep,
    status: Literal["pending", "delivered", "failed", "superseded"] | None = None,
    kind: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    """Pending, failed and delivered counts, and the most recent items (newest first)."""
    return await outbox.summary(services.engine, kind=kind, status=status, limit=limit)


@router.post("/outbox/{item_id}/retry")
async def retry_outbox_item(
    item_id: int, services: ServicesDep, caller: CallerDep
) -> dict[str, Any]:
    """Put a failed delivery back in the queue, due now, with a fresh attempt budget."""
    if not await outbox.requeue(services.engine, item_id, services.clock()):
        raise NotFound(f"outbox item {item_id} does not exist or has not failed")
    async with services.engine.begin() as conn:
        from service.adapters.store import Store

        await Store(conn).audit(
            actor=caller,
            action="outbox-retry",
            patient_id=None,
            detail={"outbox": item_id},
            now=services.clock(),
        )
    return {"id": item_id, "status": "pending"}
