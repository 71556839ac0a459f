"""The write-back delivery loop: claim due outbox rows, deliver them, settle them.

Started from the app's lifespan when `run_worker` is on and a FHIR server is configured, or on its
own: `python -m service.entrypoints.worker` (same settings, from the environment). Any number of
workers may share one database: claims are leased (see adapters.outbox), deliveries idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import uuid
from datetime import timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from service.adapters import outbox, remote_ids
from service.adapters.fhir_client import DeliveryError, HttpxFhirServer
from service.config import Settings
from service.service_layer.clock import Clock, system_clock
from service.service_layer.writeback import Deliverer

log = logging.getLogger("carepath.worker")
MAX_BACKOFF = 300.0


def backoff(attempts: int, base: float, retry_after: float | None) -> float:
    """Exponential backoff with full jitter; a server's Retry-After is a floor."""
    delay = random.uniform(0, min(MAX_BACKOFF, base * 2**attempts))  # noqa: S311
    return max(delay, retry_after or 0.0)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker:
    def __init__(
        self,
        engine: AsyncEngine,
        server: HttpxFhirServer,
        settings: Settings,
        clock: Clock = system_clock,
        name: str | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock
        self.name = name or worker_name()
        self.deliver = Deliverer(engine, server, clock)

    async def run_once(self, limit: int = 20) -> int:
        """One claim-and-deliver round; returns how many rows were claimed."""
        items = await outbox.claim(
            self.engine,
            kind="fhir",
            worker=self.name,
            now=self.clock(),
            lease=self.settings.outbox_lease_seconds,
            limit=limit,
        )
        keys = [(i.payload["resource"]["resourceType"], i.payload["resource"]["id"]) for i in items]
        known = await remote_ids.known_many(self.engine, self.deliver.server.base_url, keys)
        await asyncio.gather(
            *(self._one(item, known.get(key)) for item, key in zip(items, keys, strict=True))
        )
        return len(items)

    async def _one(self, item: outbox.OutboxItem, known: remote_ids.RemoteId | None) -> None:
        try:
            status = await self.deliver(item, known)
        except DeliveryError as exc:
            await self._failed(item, exc)
        except Exception as exc:  # noqa: BLE001  (a bug must not kill the loop: kept, retried)
            log.exception("write-back of %s crashed", item.dedupe_key)
            await self._failed(item, DeliveryError(f"{type(exc).__name__}: {exc}"))
        else:
            await outbox.delivered(self.engine, item.id, self.name, self.clock(), status)

    async def _failed(self, item: outbox.OutboxItem, exc: DeliveryError) -> None:
        if exc.permanent or item.attempts + 1 >= self.settings.outbox_max_attempts:
            log.warning("write-back of %s failed for good: %s", item.dedupe_key, exc)
            await outbox.failed(self.engine, item.id, self.name, exc.status, str(exc))
            return
        delay = backoff(item.attempts, self.settings.outbox_backoff_seconds, exc.retry_after)
        await outbox.retry_later(
            self.engine,
            item.id,
            self.name,
            self.clock() + timedelta(seconds=delay),
            exc.status,
            str(exc),
        )

    async def run(self) -> None:
        """Forever: deliver while there is work, otherwise sleep one poll interval."""
        while True:
            try:
                if await self.run_once():
                    continue
            except Exception:  # noqa: BLE001  (the loop must survive a database outage)
                log.exception("outbox round failed")
            await asyncio.sleep(self.settings.outbox_poll_seconds)


def build_worker(
    engine: AsyncEngine, settings: Settings, http: httpx.AsyncClient, clock: Clock = system_clock
) -> Worker:
    from service.adapters.smart_auth import token_source

    if not settings.fhir_server_url:
        raise ValueError("write-back needs FHIR_SERVER_URL")
    if settings.fhir_write_mode != "conditional":
        raise ValueError("CAREPATH_FHIR_WRITE_MODE=transaction is not implemented: use conditional")
    server = HttpxFhirServer(settings.fhir_server_url, http, token_source(settings, http))
    return Worker(engine, server, settings, clock)


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
