"""Webhook throughput and latency.

`python -m bench.webhooks [patients]`:
- outbound: stages the events of N synthetic patients (careplan.revised, servicerequest.created)
  for one subscriber, then times workers draining them to a receiver on loopback that verifies
  every Standard Webhooks signature; healthy, and with 30% of answers 503 (each event must still
  arrive, once, verified);
- inbound: full-resource Backport notifications posted one at a time (store, answer, evaluate),
  then the same notifications redelivered (duplicates: receipt check only); p50/p99 latency.
"""

from __future__ import annotations

import asyncio
import random
import resource
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
from fastapi import FastAPI

from bench.data import condition, observation
from bench.harness import percentile
from service.config import Settings, WebhookSource
from service.entrypoints.app import create_app
from service.entrypoints.worker import build_worker
from service.observability.logs import configure_logging
from tests.fhirserver.serve import serving
from tests.webhooks.receiver import create_receiver
from tests.webhooks.support import SECRET, WHSEC, notification
from tests.writeback.support import drain, make_outputs, outbox_counts


@asynccontextmanager
async def app_client(directory: Path, **extra: Any) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{directory / 'bench.db'}",
                        api_tokens=["bench"], run_worker=False, log_level="WARNING",
                        webhook_backoff_scale=0.001, webhook_max_attempts=50, **extra)
    app = create_app(settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://cp",
            headers={"Authorization": "Bearer bench"}) as client:
        client.app = app  # type: ignore[attr-defined]
        yield client


def flaky(receiver: FastAPI, share: float) -> None:
    """Answer about `share` of deliveries with 503 (seeded, so runs compare)."""
    rng = random.Random(1)
    receiver.state.statuses = [503 if rng.random() < share else 204 for _ in range(100_000)]


async def outbound(patients: int, workers: int, fail: float) -> tuple[int, float, int]:
    receiver = create_receiver({"/hooks/a": WHSEC})
    with serving(receiver) as url, tempfile.TemporaryDirectory() as d:
        async with app_client(Path(d)) as client:
            made = await client.post("/admin/webhook-subscribers",
                                     json={"url": f"{url}/hooks/a", "secret": WHSEC})
            made.raise_for_status()
            await make_outputs(client, patients, prefix="bw")
            services = client.app.state.services  # type: ignore[attr-defined]
            events = (await outbox_counts(services.engine))["pending"]
            flaky(receiver, fail)
            pool = [build_worker(services.engine, services.settings, services.http)
                    for _ in range(workers)]
            started = time.perf_counter()
            await drain(pool, services.engine, seconds=600)
            elapsed = time.perf_counter() - started
        deliveries = receiver.state.deliveries
        ok = [d for d in deliveries if d["status"] == 204]
        assert all(d["verified"] for d in deliveries), "a signature did not verify"
        assert len({d["id"] for d in ok}) == len(ok) == events, "an event arrived twice or never"
    return events, elapsed, len(deliveries)


async def inbound(count: int) -> dict[str, list[float]]:
    bodies = []
    for n in range(count):
        patient = f"in-{n}"
        resources = [condition(patient), observation(patient, 0), observation(patient, 1)]
        bodies.append(orjson.dumps(notification(
            "event-notification", events=[(n + 1, None)], since_start=n + 1,
            resources=[{**r, "meta": {"versionId": "1"}} for r in resources])))
    headers = {"Authorization": f"Bearer {SECRET}", "Content-Type": "application/fhir+json"}
    spent: dict[str, list[float]] = {"new": [], "duplicate": []}
    with tempfile.TemporaryDirectory() as d:
        async with app_client(Path(d), webhook_sources=[
                WebhookSource(name="engine", secrets=[SECRET])]) as client:
            for label in ("new", "duplicate"):
                for body in bodies:
                    started = time.perf_counter()
                    response = await client.post("/webhooks/engine/subscription", content=body,
                                                  headers=headers)
                    spent[label].append(time.perf_counter() - started)
                    assert response.status_code == (202 if label == "new" else 200), response.text
    return spent


async def main(patients: int) -> None:
    configure_logging("WARNING")
    print(f"webhook benchmark: SQLite, receiver on loopback, {patients} patients")
    for workers, fail in ((1, 0.0), (2, 0.0), (1, 0.3)):
        events, elapsed, attempts = await outbound(patients, workers, fail)
        print(f"  outbound workers={workers} 503s={fail:.0%}: {events} events "
              f"({attempts} attempts) in {elapsed:.2f}s = {events / elapsed:.0f} deliveries/s "
              "(each arrived once, signature verified)")
    spent = await inbound(patients)
    for label, times in spent.items():
        print(f"  inbound {label:9} notifications (3 resources each): "
              f"{len(times) / sum(times):.0f}/s, p50 {percentile(times, 0.5) * 1000:.1f} ms, "
              f"p99 {percentile(times, 0.99) * 1000:.1f} ms")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 200))
