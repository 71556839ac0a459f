"""The delivery loop: claim due outbox rows, deliver them, settle them. Rows are FHIR write-backs
(`kind="fhir"`) or outbound webhooks (`kind="webhook"`); a Channel knows how to deliver each.

Started from the app's lifespan when `run_worker` is on, or on its own:
`python -m service.entrypoints.worker` (same settings, from the environment). Any number of workers
may share one database: claims are leased (see adapters.outbox), deliveries idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import uuid
from datetime import datetime, timedelta
from typing import Protocol

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from service.adapters import outbox
from service.adapters.delivery import DeliveryError
from service.adapters.fhir_client import HttpxFhirServer
from service.config import Settings
from service.service_layer.clock import Clock, system_clock
from service.service_layer.writeback import Deliverer

log = logging.getLogger("carepath.worker")
MAX_BACKOFF = 300.0


def backoff(attempts: int, base: float, retry_after: float | None,
            cap: float = MAX_BACKOFF) -> float:
    """Exponential backoff with full jitter, capped; a server's Retry-After is a floor."""
    delay = random.uniform(0, min(cap, base * 2 ** min(attempts, 40)))  # noqa: S311
    return max(delay, retry_after or 0.0)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Channel(Protocol):
    """One kind of outbox row and how to deliver it."""

    kind: str

    async def deliver(self, items: list[outbox.OutboxItem]) -> list[int | DeliveryError]: ...

    def retry_delay(self, attempts: int, retry_after: float | None) -> float: ...

    def exhausted(self, item: outbox.OutboxItem, now: datetime) -> bool:
        """Whether a row that just failed again should be given up (marked failed)."""
        ...


class FhirChannel:
    """Write-back to the EHR's FHIR server (see service_layer.writeback): retried with capped
    exponential backoff for `outbox_retry_hours` after staging, however many attempts that is."""

    kind = "fhir"

    def __init__(self, engine: AsyncEngine, server: HttpxFhirServer, settings: Settings,
                 clock: Clock) -> None:
        self.engine = engine
        self.settings = settings
        self.budget = timedelta(hours=settings.outbox_retry_hours)
        self.deliverer = Deliverer(engine, server, clock, settings.fhir_write_mode)

    def retry_delay(self, attempts: int, retry_after: float | None) -> float:
        return backoff(attempts, self.settings.outbox_backoff_seconds, retry_after,
                       self.settings.outbox_backoff_max_seconds)

    def exhausted(self, item: outbox.OutboxItem, now: datetime) -> bool:
        return now - item.created_at >= self.budget

    async def deliver(self, items: list[outbox.OutboxItem]) -> list[int | DeliveryError]:
        return list(await asyncio.gather(*(self._one(item) for item in items)))

    async def _one(self, item: outbox.OutboxItem) -> int | DeliveryError:
        try:
            return await self.deliverer(item)
        except DeliveryError as exc:
            return exc
        except Exception as exc:  # noqa: BLE001  (a bug must not kill the loop: kept, retried)
            log.exception("write-back of outbox item %s crashed", item.id)  # no resource ids
            return DeliveryError(f"{type(exc).__name__}: {exc}")


class Worker:
    def __init__(
        self,
        engine: AsyncEngine,
        channels: list[Channel],
        settings: Settings,
        clock: Clock = system_clock,
        name: str | None = None,
    ) -> None:
        self.engine = engine
        self.channels = channels
        self.settings = settings
        self.clock = clock
        self.name = name or worker_name()

    async def run_once(self, limit: int = 20) -> int:
        """One claim-and-deliver round per channel; returns how many rows were claimed."""
        claimed = 0
        for channel in self.channels:
            items = await outbox.claim(
                self.engine,
                kind=channel.kind,
                worker=self.name,
                now=self.clock(),
                lease=self.settings.outbox_lease_seconds,
                limit=limit,
            )
            if not items:
                continue
            claimed += len(items)
            try:
                results = await channel.deliver(items)
            except Exception as exc:  # noqa: BLE001  (a bug must not kill the loop: kept, retried)
                log.exception("%s delivery crashed", channel.kind)
                results = [DeliveryError(f"{type(exc).__name__}: {exc}")] * len(items)
            done = [(item.id, result) for item, result in zip(items, results, strict=True)
                    if not isinstance(result, DeliveryError)]
            if done:
                await outbox.delivered(self.engine, self.name, self.clock(), done)
            await asyncio.gather(*(self._failed(channel, item, result)
                                   for item, result in zip(items, results, strict=True)
                                   if isinstance(result, DeliveryError)))
        return claimed

    async def _failed(self, channel: Channel, item: outbox.OutboxItem,
                      result: DeliveryError) -> None:
        if result.permanent or channel.exhausted(item, self.clock()):
            log.warning("%s delivery of outbox item %s failed for good (status %s; the reason is "
                        "in /admin/outbox)", channel.kind, item.id, result.status)
            await outbox.failed(self.engine, item.id, self.name, result.status, str(result))
        else:
            delay = channel.retry_delay(item.attempts, result.retry_after)
            await outbox.retry_later(self.engine, item.id, self.name,
                                     self.clock() + timedelta(seconds=delay), result.status,
                                     str(result))

    async def run(self) -> None:
        """Forever: deliver while there is work, otherwise sleep one poll interval."""
        while True:
            try:
                if await self.run_once():
                    continue
            except Exception:  # noqa: BLE001  (the loop must survive a database outage)
                log.exception("outbox round failed")
            await asyncio.sleep(self.settings.outbox_poll_seconds)


def build_channels(engine: AsyncEngine, settings: Settings, http: httpx.AsyncClient,
                   clock: Clock = system_clock) -> list[Channel]:
    """Webhooks always (subscribers may be added at any time); FHIR write-back when configured."""
    from service.adapters.smart_auth import token_source
    from service.webhooks.delivery import WebhookChannel

    channels: list[Channel] = [WebhookChannel(
        engine, http, timeout=settings.webhook_timeout_seconds,
        max_attempts=settings.webhook_max_attempts, scale=settings.webhook_backoff_scale)]
    if settings.fhir_server_url:
        server = HttpxFhirServer(settings.fhir_server_url, http, token_source(settings, http))
        channels.insert(0, FhirChannel(engine, server, settings, clock))
    return channels


def build_worker(
    engine: AsyncEngine, settings: Settings, http: httpx.AsyncClient, clock: Clock = system_clock
) -> Worker:
    return Worker(engine, build_channels(engine, settings, http, clock), settings, clock)


async def _main() -> None:
    from service.adapters.database import create_engine, migrate

    settings = Settings()
    engine = create_engine(settings.database_url)
    await migrate(engine)
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=5.0)) as http:
        await build_worker(engine, settings, http).run()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(_main())
