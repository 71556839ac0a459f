"""Write-back throughput: decisions per second from the outbox to a FHIR server on loopback.

`python -m bench.writeback [patients]`: stages the decisions (CarePlans, ServiceRequests, Tasks)
of N synthetic patients, then times workers draining the outbox into Medplum's FHIR router
(tests/node/fhir-server.mjs, by transaction Bundles), healthy and with half the calls failing
(503 or reset, half of them after applying): each resource must still arrive once, resolvable.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

import httpx

from service.config import Settings
from service.entrypoints.app import create_app
from service.entrypoints.worker import build_worker
from service.observability.logs import configure_logging
from tests.writeback.medplum import Medplum, medplum_server
from tests.writeback.support import (
    assert_each_arrived_once,
    drain,
    make_outputs,
    outbox_counts,
)


async def one_run(
    patients: int, workers: int, fail_ratio: float, medplum: Medplum, directory: Path
) -> tuple[int, float]:
    fhir_url = medplum.url
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{directory / 'bench.db'}",
        api_tokens=["bench"],
        fhir_server_url=fhir_url,
        run_worker=False,
        log_level="WARNING",
        outbox_backoff_seconds=0.01,
        outbox_backoff_max_seconds=0.5,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://cp",
            headers={"Authorization": "Bearer bench"},
        )
        await make_outputs(client, patients, prefix="bench")
        services = app.state.services
        rows = (await outbox_counts(services.engine))["pending"]
        medplum.control(failRatio=fail_ratio, retryAfter=0, seed=1)
        pool = [build_worker(services.engine, settings, services.http) for _ in range(workers)]
        started = time.perf_counter()
        await drain(pool, services.engine, seconds=300)
        elapsed = time.perf_counter() - started
        medplum.control()
        await assert_each_arrived_once(medplum.state(), services.engine)
        await client.aclose()
    return rows, elapsed


async def main(patients: int) -> None:
    configure_logging("WARNING")  # one line per delivery at INFO would bury the results
    print(f"write-back benchmark: {patients} patients, SQLite, Medplum's FHIR router on loopback")
    with medplum_server() as medplum:
        for workers, fail_ratio in ((1, 0.0), (2, 0.0), (1, 0.5), (2, 0.5)):
            medplum.reset()
            with tempfile.TemporaryDirectory() as d:
                rows, elapsed = await one_run(patients, workers, fail_ratio, medplum, Path(d))
            print(
                f"  workers={workers} fail={fail_ratio:.0%}: {rows} decisions in {elapsed:.2f}s "
                f"= {rows / elapsed:.0f} decisions/s (each resource arrived once)"
            )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 60))
