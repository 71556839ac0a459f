"""Helpers for write-back tests: make outputs, drain the outbox, and check the EHR's copy."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.data import condition
from service.adapters import tables as t
from service.entrypoints.worker import Worker

WRITTEN = ("CarePlan", "ServiceRequest")


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


async def expected_outputs(engine: AsyncEngine) -> dict[tuple[str, str], dict[str, Any]]:
    """Our latest CarePlans and ServiceRequests, by (type, id)."""
    r = t.resources
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(r.c.resource_type, r.c.id, r.c.content).where(r.c.resource_type.in_(WRITTEN))
        )
        return {(row.resource_type, row.id): orjson.loads(row.content) for row in rows}


def assert_each_arrived_once(
    server_state: dict[str, Any], expected: dict[tuple[str, str], dict[str, Any]]
) -> None:
    """Every output is on the server exactly once, at its latest version, with one Provenance
    per server version written."""
    remote = [h for key, h in server_state["resources"].items() if key.split("/")[0] in WRITTEN]
    by_mark: dict[str, list[list[dict[str, Any]]]] = {}
    for history in remote:
        source = history[-1]["meta"]["source"]
        by_mark.setdefault(source.rsplit("/_history/", 1)[0], []).append(history)
    assert len(remote) == len(expected), (len(remote), len(expected))
    for (kind, rid), ours in expected.items():
        copies = by_mark.get(f"urn:carepath:{kind}/{rid}", [])
        assert len(copies) == 1, f"{kind}/{rid} is on the server {len(copies)} times"
        latest = copies[0][-1]
        assert latest["meta"]["source"].endswith(f"/_history/{ours['meta']['versionId']}")
        assert latest["identifier"] == ours["identifier"]
        assert latest["status"] == ours["status"]
    provenance = [
        h[-1] for key, h in server_state["resources"].items() if key.startswith("Provenance/")
    ]
    targets = [p["target"][0]["reference"] for p in provenance]
    assert len(targets) == len(set(targets)), "a Provenance was written twice"
    written = {
        f"{k}/{h['id']}/_history/{h['meta']['versionId']}"
        for k in WRITTEN
        for hs in remote
        for h in hs
        if h["resourceType"] == k
    }
    assert set(targets) <= written
    for history in remote:
        last = history[-1]
        assert (
            f"{last['resourceType']}/{last['id']}/_history/{last['meta']['versionId']}" in targets
        )
