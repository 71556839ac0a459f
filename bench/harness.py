"""Where the benchmark sends its requests, how it reads CPU time, and the interleaved baseline.

Two targets share one interface: the app in this process over ASGI (`in_process`), and a real
`carepath serve` child over loopback (`served`), whose CPU time is read from the operating system
(psutil), so it is the server's alone. The baseline, fhir.resources R4B `Observation.model_validate`
of the same JSON, is measured in this process between the measured rounds, never once at the end.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
import sqlalchemy as sa
from fhir.resources.R4B.observation import Observation
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bench import data
from bench.data import AS_OF
from service.adapters import tables
from service.adapters.database import create_engine, migrate
from service.config import Settings
from service.entrypoints.app import create_app, services_of

TOKEN = "bench-token"
ISSUER = "https://ehr.bench"


@dataclass
class Target:
    """A running Carepath and a client for it."""

    mode: str  # "in-process" or "http"
    database: str  # "SQLite" or "PostgreSQL"
    client: httpx.AsyncClient
    engine: AsyncEngine  # for seeding and checks; in http mode a second engine on the same database
    base_url: str
    pid: int | None = None
    app: Any = None

    def cpu(self) -> float:
        """CPU seconds so far: the server process's (http), or this whole process's (in-process,
        which includes the client's share)."""
        if self.pid is None:
            return time.process_time()
        times = psutil.Process(self.pid).cpu_times()
        return times.user + times.system


def settings_env(database_url: str, jwks: Path) -> dict[str, str]:
    return {"DATABASE_URL": database_url, "CAREPATH_API_TOKENS": TOKEN,
            "CAREPATH_FIXED_NOW": AS_OF.isoformat(), "CAREPATH_RUN_WORKER": "false",
            "CAREPATH_LOG_LEVEL": "WARNING", "CAREPATH_CDS_ALLOWED_ISSUERS": ISSUER,
            "CAREPATH_CDS_JWKS_FILE": str(jwks)}


def _headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/fhir+json"}


@asynccontextmanager
async def in_process(database_url: str, jwks: Path) -> AsyncIterator[Target]:
    settings = Settings(database_url=database_url, api_tokens=[TOKEN], fixed_now=AS_OF,
                        run_worker=False, log_level="WARNING", cds_allowed_issuers=[ISSUER],
                        cds_jwks_file=jwks)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://bench", headers=_headers()) as client:
            yield Target("in-process", _database(database_url), client,
                         services_of(app).engine, "http://bench", app=app)


@asynccontextmanager
async def served(database_url: str, jwks: Path) -> AsyncIterator[Target]:
    """`carepath serve` as a child process on a free loopback port."""
    port = _free_port()
    env = {**os.environ, **settings_env(database_url, jwks), "CAREPATH_HOST": "127.0.0.1",
           "CAREPATH_PORT": str(port)}
    command = shutil.which("carepath", path=str(Path(sys.executable).parent)) or "carepath"
    child = subprocess.Popen([command, "serve"], env=env, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    engine = create_engine(database_url)
    try:
        async with httpx.AsyncClient(base_url=base, headers=_headers(), timeout=120,
                                     limits=httpx.Limits(max_connections=64)) as client:
            await _wait_until_up(client, child)
            yield Target("http", _database(database_url), client, engine, base, pid=child.pid)
    finally:
        child.terminate()
        child.wait(30)
        await engine.dispose()


async def _wait_until_up(client: httpx.AsyncClient, child: subprocess.Popen[bytes]) -> None:
    for _ in range(600):
        if child.poll() is not None:
            raise SystemExit(f"carepath serve exited with {child.returncode}")
        try:
            if (await client.get("/fhir/metadata")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    raise SystemExit("carepath serve did not answer within 60 s")


@asynccontextmanager
async def database(kind: str, directory: Path, name: str) -> AsyncIterator[str]:
    """A fresh database: a SQLite file, or a new PostgreSQL database (dropped afterwards) on the
    server named by BENCH_DATABASE_URL or TEST_DATABASE_URL."""
    if kind == "SQLite":
        url = f"sqlite+aiosqlite:///{directory / f'{name}.db'}"
        engine = create_engine(url)
        await migrate(engine)
        await engine.dispose()
        yield url
        return
    base = Settings(database_url=postgres_server() or "").database_url
    db = f"carepath_bench_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(base, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(sa.text(f'CREATE DATABASE "{db}"'))
    url = base.rsplit("/", 1)[0] + f"/{db}"
    try:
        engine = create_engine(url)
        await migrate(engine)
        await engine.dispose()
        yield url
    finally:
        async with admin.connect() as conn:
            await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        await admin.dispose()


def postgres_server() -> str | None:
    return os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")


def _database(url: str) -> str:
    return "SQLite" if url.startswith("sqlite") else "PostgreSQL"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def seed(engine: AsyncEngine, resources: list[dict[str, Any]],
               patient_of: Callable[[dict[str, Any]], str]) -> None:
    """Insert stored inputs directly (no evaluation): the fast way to fill the database."""
    now = datetime.now(UTC)
    rows = [{"resource_type": r["resourceType"], "id": r["id"], "patient_id": patient_of(r),
             "version_id": 1, "last_updated": now, "origin": "input",
             "content": orjson.dumps({**r, "meta": {"versionId": "1"}}).decode()}
            for r in resources]
    async with engine.begin() as conn:
        for start in range(0, len(rows), 5000):
            await conn.execute(sa.insert(tables.resources), rows[start:start + 5000])


class Baseline:
    """fhir.resources R4B parsing of the same Observations (orjson + model_validate), timed in
    CPU and wall seconds each time it is called, so it runs under the same load as what it
    is compared with."""

    def __init__(self) -> None:
        self.cpu: list[float] = []
        self.wall: list[float] = []
        for n in range(200):  # warm: pydantic's first validations of a model cost several times more
            Observation.model_validate(data.observation("warm", n))

    def parse(self, bodies: list[bytes]) -> tuple[float, float]:
        """CPU and wall seconds per Observation for this call."""
        cpu, wall = time.process_time(), time.perf_counter()
        for body in bodies:
            Observation.model_validate(orjson.loads(body))
        cpu = (time.process_time() - cpu) / len(bodies)
        wall = (time.perf_counter() - wall) / len(bodies)
        self.cpu.append(cpu)
        self.wall.append(wall)
        return cpu, wall


async def timed(call: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await call()
    return time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def median(values: list[float]) -> float:
    return statistics.median(values)


def loadavg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


async def timings(call: Callable[[], Awaitable[Any]], runs: int) -> list[float]:
    return [await timed(call) for _ in range(runs)]
