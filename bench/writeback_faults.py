"""Write-back of all 24 scenarios to Medplum's FHIR router: clean, then under faults.

`python -m bench.writeback_faults [sqlite|postgres]`: the clean run drains with one in-process
worker; the fault run answers half the calls with a 503 or a reset (half of them after applying
the call), 0-400 ms latency and `Retry-After: 1`, while worker processes are killed with SIGKILL
three times (two replicas on PostgreSQL, `TEST_DATABASE_URL`). Prints, per run: resources expected
/ on the server / duplicated / unresolved references, the 412s and how they were resolved, and how
long the outbox took to drain once the faults stopped.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from service.entrypoints.app import create_app
from service.entrypoints.worker import build_worker
from tests.conftest import make_settings
from tests.writeback.medplum import Medplum, Report, check, medplum_server, our_outputs
from tests.writeback.support import drain
from tests.writeback.test_medplum import CASES, _fault_run, post_cases


def line(name: str, report: Report, resolved: dict[str, int]) -> str:
    return (f"| {name} | {report.expected} | {report.on_server} | {report.duplicated} | "
            f"{len(report.unresolved)} of {report.references} | {report.statuses.get('412', 0)} "
            f"({', '.join(f'{v} {k}' for k, v in resolved.items()) or '-'}) | "
            f"{report.provenance} ({len(report.provenance_wrong)} wrong) | "
            f"{report.drain_seconds:.1f} s |")


async def client_for(database_url: str, medplum: Medplum):  # type: ignore[no-untyped-def]
    settings = make_settings(database_url, fhir_server_url=medplum.url,
                             outbox_backoff_seconds=0.01, api_tokens=["bench"])
    app = create_app(settings)
    return app, settings


async def run(database_urls: list[str], replicas: int) -> None:
    print("| run | expected | on server | duplicated | unresolved refs | 412s (resolution) "
          "| Provenance | drain after faults |")
    print("|---|---|---|---|---|---|---|---|")
    with medplum_server() as medplum:
        for faults, database_url in zip((False, True), database_urls, strict=True):
            medplum.reset()
            app, settings = await client_for(database_url, medplum)
            async with app.router.lifespan_context(app):
                client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                           base_url="http://cp",
                                           headers={"Authorization": "Bearer bench"})
                client.app = app  # type: ignore[attr-defined]  (as the tests' client has)
                engine = app.state.services.engine
                if not faults:
                    await post_cases(client, medplum, CASES)
                    started = time.perf_counter()
                    await drain([build_worker(engine, settings, app.state.services.http)], engine,
                                seconds=600)
                    report = check(medplum.state(), await our_outputs(engine))
                    report.drain_seconds = time.perf_counter() - started
                    print(line("clean", report, {}))
                    continue
                with tempfile.NamedTemporaryFile("w+b", suffix=".log") as log:
                    report = await _fault_run(client, database_url, medplum, replicas, CASES,
                                              log, faults_seconds=20)
                    log.seek(0)
                    text = log.read().decode()
                resolved = {"already applied": text.count("the server already holds our version"),
                            "re-applied on fresh ETag": text.count("re-applying on the ETag")}
                print(line(f"faults, {replicas} worker(s), 3 x kill -9", report, resolved))
                print(f"    faults injected: {report.faults}; problems: {report.problems()}; "
                      f"deliveries that crashed (a bug, retried): {text.count('crashed')}")
                await client.aclose()


async def main(kind: str) -> None:
    if kind == "postgres":
        base = os.environ["TEST_DATABASE_URL"]
        names = [f"bench_{uuid.uuid4().hex[:8]}" for _ in range(2)]
        admin = create_async_engine(base, isolation_level="AUTOCOMMIT")
        async with admin.connect() as conn:
            for name in names:
                await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            await run([base.rsplit("/", 1)[0] + f"/{name}" for name in names], replicas=2)
        finally:
            async with admin.connect() as conn:
                for name in names:
                    await conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
            await admin.dispose()
    else:
        with tempfile.TemporaryDirectory() as d:
            await run([f"sqlite+aiosqlite:///{Path(d) / f'bench-{n}.db'}" for n in range(2)],
                      replicas=1)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "sqlite"))
