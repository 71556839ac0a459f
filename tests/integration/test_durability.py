"""Accepted input is durable before the response, and evaluation failures lose nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa

from service.adapters.database import create_engine
from service.adapters.store import Store
from service.entrypoints.app import services_of
from service.service_layer.pending import evaluate_pending
from tests.api.test_fhir_api import condition, observation
from tests.conftest import make_settings


class FailingUntilRepaired:
    """A change listener that breaks every evaluation (as a bug or outage would) until repaired,
    so the background sweep (every second) cannot make the outcome depend on timing."""

    def __init__(self) -> None:
        self.repaired = False

    async def __call__(self, store: Store, event: Any, now: Any) -> None:
        if not self.repaired:
            raise RuntimeError("write-back staging failed")


async def test_a_failed_evaluation_keeps_the_input_and_retries_it(client_for, sqlite_url) -> None:  # type: ignore[no-untyped-def]
    client = await client_for(make_settings(sqlite_url))
    services = services_of(client.app)
    outage = FailingUntilRepaired()
    services.evaluator.listeners.append(outage)
    response = await client.put("/fhir/Condition/dx-1", json=condition())
    assert response.status_code == 201
    assert (await client.get("/fhir/Condition/dx-1")).status_code == 200
    assert (await client.get("/fhir/CarePlan", params={"subject": "Patient/p1"})).json()["total"] == 0
    async with services.engine.connect() as conn:
        assert await Store(conn).pending() == ["p1"]
    outage.repaired = True
    # this sweep or the background one (whichever comes first) evaluates the patient now
    assert await evaluate_pending(services.evaluator, services.engine) in (0, 1)
    assert (await client.get("/fhir/CarePlan", params={"subject": "Patient/p1"})).json()["total"] == 1
    async with services.engine.connect() as conn:
        assert await Store(conn).pending() == []


@pytest.mark.postgres
async def test_concurrent_posts_for_one_patient_give_one_consistent_care_plan(client_for, postgres_url) -> None:  # type: ignore[no-untyped-def]
    client = await client_for(make_settings(postgres_url))
    scores = [{**observation("72514-3", valueInteger=v), "id": f"nrs-{i}",
               "effectiveDateTime": f"2026-02-{10 + i:02d}T09:00:00Z"} for i, v in enumerate([8, 7, 7, 6, 8, 7])]
    results = await asyncio.gather(client.put("/fhir/Condition/dx-1", json=condition()),
                                   *(client.put(f"/fhir/Observation/{s['id']}", json=s) for s in scores))
    assert {r.status_code for r in results} == {201}
    plans = (await client.get("/fhir/CarePlan", params={"subject": "Patient/p1"})).json()
    assert plans["total"] == 1
    requests = (await client.get("/fhir/ServiceRequest", params={"subject": "Patient/p1"})).json()
    keys = [e["resource"]["identifier"][0]["value"] for e in requests["entry"]]
    assert len(keys) == len(set(keys)) == 1


async def test_sqlite_commits_reach_the_disk_before_the_answer(sqlite_url) -> None:  # type: ignore[no-untyped-def]
    """WAL with synchronous=FULL: each commit fsyncs the log, so an accepted write survives a power
    loss too (NORMAL survives only a crash of the process)."""
    engine = create_engine(sqlite_url)
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(sa.text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await conn.execute(sa.text("PRAGMA synchronous"))).scalar() == 2  # FULL
    finally:
        await engine.dispose()
