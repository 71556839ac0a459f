"""Operator endpoints: the outbox (counts, items, re-trying a failed delivery), outbound webhook
subscribers, inbound Subscription streams with their event-number gaps, and the time-driven
re-evaluation schedule."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field, field_validator

from service.adapters import outbox, schedule, subscription_streams, webhook_subscribers
from service.adapters.store import Store
from service.config import EVENT_TYPES, EventType, StandardWebhookSecret
from service.entrypoints.api_docs import errors
from service.entrypoints.deps import CallerDep, ServicesDep
from service.errors import NotFound, PreconditionFailed
from service.webhooks.signatures import new_secret

router = APIRouter(prefix="/admin", tags=["Admin"])
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
SubscriberId = Annotated[str, Path(pattern=r"^[A-Za-z0-9._:-]{1,64}$")]


async def _audit(services: ServicesDep, caller: str, action: str, detail: Any) -> None:
    async with services.engine.begin() as conn:
        await Store(conn).audit(actor=caller, action=action, patient_id=None, detail=detail,
                                now=services.clock())


@router.get("/outbox", responses=errors(400, 401))
async def list_outbox(
    services: ServicesDep,
    _: CallerDep,
    status: Literal["pending", "delivered", "failed", "superseded"] | None = None,
    kind: Literal["fhir", "webhook"] | None = None,
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    """Pending, failed and delivered counts, the age of the oldest undelivered row, and the most
    recent items (newest first)."""
    return await outbox.summary(services.engine, kind=kind, status=status, limit=limit)


@router.post("/outbox/{item_id}/retry", responses=errors(400, 401, 404))
async def retry_outbox_item(
    item_id: Annotated[int, Path(ge=1, le=2**31 - 1, description="outbox row id")],
    services: ServicesDep, caller: CallerDep
) -> dict[str, Any]:
    """Put a failed delivery back in the queue, due now, with a fresh attempt budget."""
    if not await outbox.requeue(services.engine, item_id, services.clock()):
        raise NotFound(f"outbox item {item_id} does not exist or has not failed")
    await _audit(services, caller, "outbox-retry", {"outbox": item_id})
    return {"id": item_id, "status": "pending"}


class NewSubscriber(BaseModel):
    url: str = Field(max_length=1000, description="https URL (plain http only on loopback)")
    events: list[EventType] = Field(default_factory=lambda: list(EVENT_TYPES))
    secret: StandardWebhookSecret | None = Field(
        None, description="whsec_ + base64 of 24-64 bytes; generated if omitted, and returned once")

    @field_validator("url")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an absolute http(s) URL")
        if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
            raise ValueError("plain http is only allowed on loopback; use https")
        return value


@router.get("/webhook-subscribers", responses=errors(401))
async def list_subscribers(services: ServicesDep, _: CallerDep) -> list[dict[str, Any]]:
    """Every subscriber (secrets are never shown again)."""
    async with services.engine.connect() as conn:
        return [s.public() for s in await webhook_subscribers.listing(conn)]


@router.post("/webhook-subscribers", status_code=201, responses=errors(400, 401))
async def add_subscriber(body: NewSubscriber, services: ServicesDep, caller: CallerDep
                         ) -> dict[str, Any]:
    """Register an endpoint; the answer holds its signing secret, shown this once."""
    secret = body.secret or new_secret()
    async with services.engine.begin() as conn:
        subscriber = await webhook_subscribers.add(conn, url=body.url, secret=secret,
                                                   events=list(body.events), now=services.clock())
    await _audit(services, caller, "webhook-subscriber-add", subscriber.public())
    return {**subscriber.public(), "secret": secret}


@router.delete("/webhook-subscribers/{subscriber_id}", status_code=204,
               responses=errors(400, 401, 404, 412))
async def remove_subscriber(subscriber_id: SubscriberId, services: ServicesDep, caller: CallerDep
                            ) -> Response:
    """Remove an endpoint registered through this API (configured ones live in configuration)."""
    async with services.engine.begin() as conn:
        found = await webhook_subscribers.get(conn, subscriber_id)
        if found is None:
            raise NotFound(f"webhook subscriber {subscriber_id} does not exist")
        if found.origin != "api":
            raise PreconditionFailed(f"{subscriber_id} comes from CAREPATH_WEBHOOK_SUBSCRIBERS; "
                                     "remove it there")
        await webhook_subscribers.remove(conn, subscriber_id)
    await _audit(services, caller, "webhook-subscriber-remove", {"id": subscriber_id})
    return Response(status_code=204)


@router.post("/webhook-subscribers/{subscriber_id}/enable", responses=errors(400, 401, 404))
async def enable_subscriber(subscriber_id: SubscriberId, services: ServicesDep, caller: CallerDep
                            ) -> dict[str, Any]:
    """Enable an endpoint again (e.g. after a 410) and re-queue its failed events."""
    async with services.engine.begin() as conn:
        if not await webhook_subscribers.set_enabled(conn, subscriber_id, True):
            raise NotFound(f"webhook subscriber {subscriber_id} does not exist")
    requeued = await outbox.requeue_destination(services.engine, "webhook", subscriber_id,
                                                services.clock())
    await _audit(services, caller, "webhook-subscriber-enable",
                 {"id": subscriber_id, "requeued": requeued})
    return {"id": subscriber_id, "enabled": True, "requeued": requeued}


@router.get("/subscriptions", responses=errors(401))
async def list_subscription_streams(services: ServicesDep, _: CallerDep) -> dict[str, Any]:
    """Inbound Subscription streams (last event number, status) and event-number gaps."""
    async with services.engine.connect() as conn:
        return await subscription_streams.report(conn)


@router.post("/subscriptions/recover", responses=errors(401))
async def recover_gaps(services: ServicesDep, caller: CallerDep) -> dict[str, Any]:
    """Ask each source with a FHIR server for its open gaps' events again (`$events`)."""
    async with services.engine.connect() as conn:
        gaps = await subscription_streams.open_gaps(conn)
    notes: list[str] = []
    for gap in gaps:
        source = services.settings.webhook_source(gap.source)
        if source is None:
            notes.append(f"gap {gap.id}: source {gap.source} is no longer configured")
            continue
        received = await services.receiver.recover(source, gap, actor=caller)
        await services.ingestor.evaluate_patients(received.patients, actor=caller)
        notes += received.notes
    async with services.engine.connect() as conn:
        still_open = len(await subscription_streams.open_gaps(conn))
    return {"attempted": len(gaps), "open": still_open, "notes": notes}


@router.get("/schedule", responses=errors(400, 401))
async def list_schedule(services: ServicesDep, _: CallerDep,
                        limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
    """Time-driven re-evaluation: patients due now, the oldest due instant and its age (a stuck
    scheduler shows as a growing age), failing re-evaluations, and the next patients due."""
    return await schedule.report(services.engine, services.clock(), limit=limit)
