"""Write-back throughput: deliveries per second from the outbox to a FHIR server on loopback.

`python -m bench.writeback [patients]`: stages the CarePlans and ServiceRequests of N synthetic
patients, then times workers draining the outbox into the FHIR test server (tests/fhirserver),
healthy and with half the calls failing after the write (each resource must still arrive once).
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
from tests.fhirserver.app import create_fhir_test_server
from tests.fhirserver.serve import serving
from tests.writeback.support import (
    assert_each_arrived_once,
    drain,
    expected_outputs,
    make_outputs,
    outbox_counts,
)


async def one_run(
    patients: int, workers: int, fail_ratio: float, fhir_url: str, directory: Path
) -> tuple[int, float]:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{directory / 'bench.db'}",
        api_tokens=["bench"],
        fhir_server_url=fhir_url,
        run_worker=False,
        log_level="WARNING",
        outbox_backoff_seconds=0.01,
        outbox_max_attempts=100,
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
        httpx.post(
            f"{fhir_url}/_control",
            json={"failRatio": fail_ratio, "failAfterWrite": True, "seed": 1},
        )
        pool = [build_worker(services.engine, settings, services.http) for _ in range(workers)]
        started = time.perf_counter()
        await drain(pool, services.engine, seconds=300)
        elapsed = time.perf_counter() - started
        httpx.post(f"{fhir_url}/_control", json={})
        state = httpx.get(f"{fhir_url}/_control/state").json()
        assert_each_arrived_once(state, await expected_outputs(services.engine))
        await client.aclose()
    return rows, elapsed


async def main(patients: int) -> None:
    configure_logging("WARNING")  # one line per delivery at INFO would bury the results
    print(f"write-back benchmark: {patients} patients, SQLite, FHIR test server on loopback")
    for workers, fail_ratio in ((1, 0.0), (2, 0.0), (1, 0.5), (2, 0.5)):
        with serving(create_fhir_test_server()) as url, tempfile.TemporaryDirectory() as d:
            rows, elapsed = await one_run(patients, workers, fail_ratio, url, Path(d))
        print(
            f"  workers={workers} fail={fail_ratio:.0%}: {rows} deliveries in {elapsed:.2f}s "
            f"= {rows / elapsed:.0f} deliveries/s (each arrived once)"
        )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 200))
