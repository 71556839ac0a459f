"""Helpers for write-back tests: make outputs, drain the outbox, and check the EHR's copy."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.data import condition
from service.adapters import tables as t
from service.entrypoints.worker import Worker
from tests.writeback.medplum import Report, check, our_outputs


async def make_outputs(client: httpx.AsyncClient, patients: int, prefix: str = "wb") -> None:
    for n in range(patients):
        response = await client.post("/fhir/Condition", json=condition(f"{prefix}-{n}"))
        assert response.status_code in (200, 201), response.text


async def outbox_counts(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(t.outbox.c.status, sa.func.count()).group_by(t.outbox.c.status)
        )
        return {r[0]: r[1] for r in rows}


async def drain(workers: list[Worker], engine: AsyncEngine, seconds: float = 60) -> None:
    """Run the workers until nothing is pending (bounded: fails the test after `seconds`)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        claimed = sum(await asyncio.gather(*(w.run_once() for w in workers)))
        if not claimed:
            if not (await outbox_counts(engine)).get("pending"):
                return
            await asyncio.sleep(0.02)
    raise AssertionError(f"outbox not drained: {await outbox_counts(engine)}")


async def assert_each_arrived_once(server_state: dict[str, Any], engine: AsyncEngine,
                                   ehr_inputs: bool = False) -> Report:
    """Every output once on the server at its newest version, the Device once, every reference
    among them resolvable there, one correct Provenance per version written (see medplum.check)."""
    report = check(server_state, await our_outputs(engine), ehr_inputs=ehr_inputs)
    assert not report.problems(), report.problems()
    assert report.on_server == report.expected
    return report
