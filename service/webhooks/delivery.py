"""Delivering outbound webhooks (Standard Webhooks 1.0) from the outbox.

Each attempt is signed afresh (the timestamp is the attempt's; the `webhook-id` never changes).
2xx is success; 410 Gone disables the subscriber (its queued events then fail as "disabled" and
stay re-triable from /admin/outbox once it is enabled again); anything else, or no answer, is
retried on the Standard Webhooks schedule, with a server's `Retry-After` as a floor. Signatures
carry real time, not the service clock: receivers reject timestamps more than 5 minutes off.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

import httpx
import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from service import __version__
from service.adapters import webhook_subscribers
from service.adapters.delivery import DeliveryError, retry_after_seconds
from service.adapters.outbox import OutboxItem
from service.adapters.webhook_subscribers import Subscriber
from service.webhooks.signatures import standard_headers

# Standard Webhooks' suggested schedule: seconds after the first attempt failed, then after each.
SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)


class WebhookChannel:
    kind = "webhook"

    def __init__(self, engine: AsyncEngine, http: httpx.AsyncClient, *, timeout: float,
                 max_attempts: int, scale: float = 1.0) -> None:
        self.engine = engine
        self.http = http
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.scale = scale

    def retry_delay(self, attempts: int, retry_after: float | None) -> float:
        """Seconds before the next attempt, after `attempts` + 1 failed ones (±10% jitter)."""
        base = SCHEDULE[min(attempts, len(SCHEDULE) - 1)] * self.scale
        return max(base * random.uniform(0.9, 1.1), retry_after or 0.0)  # noqa: S311

    def exhausted(self, item: OutboxItem, _: datetime) -> bool:
        return item.attempts + 1 >= self.max_attempts

    async def deliver(self, items: list[OutboxItem]) -> list[int | DeliveryError]:
        async with self.engine.connect() as conn:
            subscribers = {s.id: s for s in await webhook_subscribers.listing(conn)}
        return list(await asyncio.gather(*(
            self._attempt(item, subscribers.get(item.payload["subscriber"])) for item in items)))

    async def _attempt(self, item: OutboxItem, subscriber: Subscriber | None
                       ) -> int | DeliveryError:
        try:
            return await self._one(item, subscriber)
        except DeliveryError as exc:
            return exc

    async def _one(self, item: OutboxItem, subscriber: Subscriber | None) -> int:
        if subscriber is None:
            raise DeliveryError("the subscriber was removed", permanent=True)
        if not subscriber.enabled:
            raise DeliveryError(f"the subscriber is disabled ({subscriber.disabled_reason})",
                                permanent=True)
        body = orjson.dumps(item.payload["message"])
        headers = {"content-type": "application/json", "user-agent": f"carepath/{__version__}",
                   **standard_headers(subscriber.secret, item.payload["id"], datetime.now(UTC),
                                      body)}
        try:
            response = await self.http.post(subscriber.url, content=body, headers=headers,
                                            timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"POST {subscriber.url}: {type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if 200 <= status < 300:
            return status
        if status == 410:
            async with self.engine.begin() as conn:
                await webhook_subscribers.set_enabled(
                    conn, subscriber.id, False, f"410 Gone from {subscriber.url}")
            raise DeliveryError(f"POST {subscriber.url}: 410 Gone; subscriber disabled",
                                status=status, permanent=True)
        raise DeliveryError(f"POST {subscriber.url}: HTTP {status} {response.text[:300]}",
                            status=status,
                            retry_after=retry_after_seconds(response.headers.get("retry-after")))
