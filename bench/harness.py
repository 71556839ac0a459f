"""The real app over ASGI on a throwaway SQLite file, plus direct seeding for large data sets."""

from __future__ import annotations

import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import sqlalchemy as sa

from bench.data import AS_OF
from service.adapters import tables
from service.config import Settings
from service.entrypoints.app import create_app, services_of

TOKEN = "bench-token"


@asynccontextmanager
async def running_app(directory: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{directory / 'bench.db'}",
                        api_tokens=[TOKEN], fixed_now=AS_OF, run_worker=False, log_level="WARNING")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench",
                                     headers={"Authorization": f"Bearer {TOKEN}",
                                              "Content-Type": "application/fhir+json"}) as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


async def seed(client: httpx.AsyncClient, resources: list[dict[str, Any]],
               patient_of: Callable[[dict[str, Any]], str]) -> None:
    """Insert stored inputs directly (no evaluation): the fast way to fill the database."""
    engine = services_of(client.app).engine  # type: ignore[attr-defined]
    now = datetime.now(UTC)
    rows = [{"resource_type": r["resourceType"], "id": r["id"], "patient_id": patient_of(r),
             "version_id": 1, "last_updated": now, "origin": "input",
             "content": orjson.dumps({**r, "meta": {"versionId": "1"}}).decode()}
            for r in resources]
    async with engine.begin() as conn:
        for start in range(0, len(rows), 5000):
            await conn.execute(sa.insert(tables.resources), rows[start:start + 5000])


async def timings(call: Callable[[], Awaitable[Any]], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        await call()
        out.append(time.perf_counter() - started)
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def median(values: list[float]) -> float:
    return statistics.median(values)
