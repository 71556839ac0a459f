"""Concurrency on one process: reads never wait for writers on SQLite, writers queue instead of
failing, and concurrent posts for one patient share evaluations without losing any input.

Asserted by the order of events and by what is stored, never by time; `asyncio.wait_for` only
keeps a regression from hanging the suite.
"""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from service.adapters import tables as t
from service.adapters.store import Store
from service.entrypoints.app import services_of
from tests.api.test_fhir_api import condition, observation
from tests.conftest import make_settings

GUARD = 60  # seconds: a hang guard, not a performance bound


def pain(n: int) -> dict[str, object]:
    return {**observation("72514-3", valueInteger=n % 10), "id": f"nrs-{n}",
            "effectiveDateTime": f"2026-02-{1 + n % 27:02d}T{n % 24:02d}:00:00Z"}


async def test_an_open_read_does_not_block_a_write_on_sqlite(client_for, sqlite_url) -> None:  # type: ignore[no-untyped-def]
    """$apply, searches and CDS read like this: the write commits while the read is still open,
    and the read keeps its snapshot."""
    client = await client_for(make_settings(sqlite_url))
    await client.post("/fhir/Condition", json=condition())
    services = services_of(client.app)
    events = []
    async with services.engine.connect() as reading:
        before = await Store(reading).for_patient("p1", ["Observation"])
        events.append("read open")
        posted = await asyncio.wait_for(client.post("/fhir/Observation", json=pain(1)), GUARD)
        events.append(f"write answered {posted.status_code}")
        assert await Store(reading).for_patient("p1", ["Observation"]) == before  # snapshot
        events.append("read closed")
    assert events == ["read open", "write answered 201", "read closed"]
    applied = await client.post("/fhir/PlanDefinition/lumbar-radiculopathy/$apply",
                                params={"subject": "Patient/p1"})
    assert applied.status_code == 200


async def test_concurrent_writers_queue_and_a_nested_write_fails_fast(
        client_for, sqlite_url) -> None:  # type: ignore[no-untyped-def]
    services = services_of((await client_for(make_settings(sqlite_url))).app)
    order: list[int] = []

    async def write(n: int) -> None:
        async with services.engine.begin() as conn:
            await Store(conn).audit(actor=f"t{n}", action="test", patient_id=None, detail={},
                                    now=services.clock())
            await asyncio.sleep(0)  # yield inside the transaction: others must wait, not fail
            order.append(n)

    await asyncio.wait_for(asyncio.gather(*(write(n) for n in range(20))), GUARD)
    assert sorted(order) == list(range(20))
    async with services.engine.connect() as conn:
        count = (await conn.execute(sa.select(sa.func.count()).select_from(t.audit_log)
                                    .where(t.audit_log.c.action == "test"))).scalar()
    assert count == 20
    with pytest.raises(RuntimeError, match="nested write transaction"):
        async with services.engine.begin(), services.engine.begin():
            pass
    with pytest.raises(RuntimeError, match="inside a write transaction"):
        async with services.engine.begin():
            await services.evaluator.evaluate("p1")


async def test_concurrent_posts_for_one_patient_share_evaluations_and_lose_nothing(
        client_for, sqlite_url) -> None:  # type: ignore[no-untyped-def]
    client = await client_for(make_settings(sqlite_url))
    await client.post("/fhir/Condition", json=condition())
    services = services_of(client.app)
    posts = [client.post("/fhir/Observation", json=pain(n)) for n in range(20)]
    answers = await asyncio.wait_for(asyncio.gather(*posts), GUARD)
    assert {a.status_code for a in answers} == {201}
    async with services.engine.connect() as conn:
        store = Store(conn)
        stored = await store.for_patient("p1", ["Observation"])
        evaluations = await store.evaluations_of("p1")
        assert await store.pending() == []
    assert len(stored) == 20
    assert 2 <= len(evaluations) < 21  # the Condition's, then shared ones for the 20 posts
    plans = (await client.get("/fhir/CarePlan", params={"subject": "Patient/p1"})).json()
    assert plans["total"] == 1
    # the last evaluation saw every Observation: its evidence can cite any of them
    applied = await client.post("/fhir/PlanDefinition/lumbar-radiculopathy/$apply",
                                params={"subject": "Patient/p1"})
    assert applied.json()["status"] == plans["entry"][0]["resource"]["status"]
