"""The hard cases: a worker killed with SIGKILL mid-delivery (twice), and two workers racing over
one outbox on PostgreSQL (`FOR UPDATE SKIP LOCKED`)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from service.adapters.database import create_engine
from service.entrypoints.worker import build_worker
from tests.conftest import make_settings
from tests.writeback.support import (
    assert_each_arrived_once,
    drain,
    expected_outputs,
    make_outputs,
    outbox_counts,
)

ROOT = Path(__file__).resolve().parents[2]


def _start_worker(database_url: str, fhir_url: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CAREPATH_DATABASE_URL": database_url,
        "FHIR_SERVER_URL": fhir_url,
        "CAREPATH_OUTBOX_LEASE_SECONDS": "1",
        "CAREPATH_OUTBOX_BACKOFF_SECONDS": "0.01",
        "CAREPATH_OUTBOX_POLL_SECONDS": "0.05",
        "CAREPATH_OUTBOX_MAX_ATTEMPTS": "100",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "service.entrypoints.worker"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _calls(peer) -> int:  # type: ignore[no-untyped-def]
    return sum(peer.state()["calls"].values())


async def test_kill_9_twice_with_half_the_calls_failing_delivers_each_once(
    client_for, sqlite_url, fhir_peer
):  # type: ignore[no-untyped-def]
    client = await client_for(make_settings(sqlite_url, fhir_server_url=fhir_peer.url))
    await make_outputs(client, 12)
    engine = client.app.state.services.engine
    fhir_peer.control(failRatio=0.5, failAfterWrite=True, stallSeconds=0.03, seed=3)
    for kill in range(2):
        worker = _start_worker(sqlite_url, fhir_peer.url)
        target, deadline = _calls(fhir_peer) + 8, time.monotonic() + 30
        while _calls(fhir_peer) < target and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        assert worker.returncode == -signal.SIGKILL, f"kill {kill + 1} did not land mid-run"
    assert (await outbox_counts(engine)).get("pending"), "nothing left to resume: kill earlier"
    worker = _start_worker(sqlite_url, fhir_peer.url)
    try:
        deadline = time.monotonic() + 90
        while (await outbox_counts(engine)).get("pending") and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    fhir_peer.control()
    counts = await outbox_counts(engine)
    assert not counts.get("pending") and not counts.get("failed"), counts
    assert_each_arrived_once(fhir_peer.state(), await expected_outputs(engine))


async def test_two_workers_racing_on_postgres_deliver_each_row_once(
    client_for, postgres_url, fhir_peer
):  # type: ignore[no-untyped-def]
    settings = make_settings(
        postgres_url,
        fhir_server_url=fhir_peer.url,
        outbox_backoff_seconds=0.01,
        outbox_max_attempts=50,
    )
    client = await client_for(settings)
    await make_outputs(client, 10)
    engine = client.app.state.services.engine
    pending = (await outbox_counts(engine))["pending"]
    fhir_peer.control(stallSeconds=0.01)
    engines = [create_engine(postgres_url), create_engine(postgres_url)]
    try:
        http = client.app.state.services.http
        workers = [build_worker(e, settings, http) for e in engines]
        await asyncio.gather(*(drain([w], engine) for w in workers))
    finally:
        for e in engines:
            await e.dispose()
    calls = fhir_peer.state()["calls"]
    expected = await expected_outputs(engine)
    assert calls.get("POST CarePlan", 0) + calls.get("POST ServiceRequest", 0) == pending
    assert calls.get("PUT CarePlan", 0) == 0 and calls.get("POST Provenance") == pending
    assert (await outbox_counts(engine)).get("delivered") == pending
    assert_each_arrived_once(fhir_peer.state(), expected)


async def test_two_workers_racing_on_postgres_through_failures(client_for, postgres_url, fhir_peer):  # type: ignore[no-untyped-def]
    settings = make_settings(
        postgres_url,
        fhir_server_url=fhir_peer.url,
        outbox_backoff_seconds=0.01,
        outbox_max_attempts=50,
    )
    client = await client_for(settings)
    await make_outputs(client, 8)
    engine = client.app.state.services.engine
    fhir_peer.control(failRatio=0.5, failAfterWrite=True, seed=11)
    engines = [create_engine(postgres_url), create_engine(postgres_url)]
    try:
        http = client.app.state.services.http
        workers = [build_worker(e, settings, http) for e in engines]
        await asyncio.gather(*(drain([w], engine) for w in workers))
    finally:
        for e in engines:
            await e.dispose()
    fhir_peer.control()
    assert_each_arrived_once(fhir_peer.state(), await expected_outputs(engine))
