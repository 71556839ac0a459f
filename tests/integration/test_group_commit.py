"""Writes that arrive together are committed together, with one evaluation per patient, and a
refused or failing write in a group costs the others nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa

from service.adapters import tables
from service.adapters.store import Store
from service.entrypoints.app import services_of
from service.errors import PreconditionFailed
from service.service_layer.ingest import Write
from tests.api.test_fhir_api import condition, observation
from tests.conftest import make_settings


def _score(n: int, value: int) -> dict[str, Any]:
    return {**observation("72514-3", valueInteger=value), "id": f"nrs-{n}",
            "effectiveDateTime": f"2026-02-{10 + n:02d}T09:00:00Z"}


async def _evaluations(services: Any, patient: str) -> int:
    async with services.engine.connect() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(tables.evaluations).where(
            tables.evaluations.c.patient_id == patient))).scalar() or 0)


async def test_writes_queued_together_are_stored_with_one_evaluation_and_a_refusal_answers_alone(
        client_for, database_url) -> None:  # type: ignore[no-untyped-def]
    client = await client_for(make_settings(database_url))
    services = services_of(client.app)
    assert (await client.put("/fhir/Condition/dx-1", json=condition())).status_code == 201
    before = await _evaluations(services, "p1")
    group = services.fhir.group
    writes = [group.write([Write("Observation", s["id"], s)], actor="test")
              for s in (_score(n, v) for n, v in enumerate([8, 7, 7, 6, 8]))]
    stale = group.write([Write("Condition", "dx-1", {**condition(), "note": [{"text": "edited"}]},
                               if_match='W/"7"')], actor="test")
    answers = await asyncio.gather(*writes, stale, return_exceptions=True)
    assert all(isinstance(a, list) and a[0].created for a in answers[:5])
    assert isinstance(answers[5], PreconditionFailed)
    scores = (await client.get("/fhir/Observation", params={"subject": "Patient/p1"})).json()
    assert scores["total"] == 5
    kept = (await client.get("/fhir/Condition/dx-1")).json()
    assert "note" not in kept and kept["meta"]["versionId"] == "1"
    assert await _evaluations(services, "p1") == before + 1  # five writes, one evaluation
    plans = (await client.get("/fhir/CarePlan", params={"subject": "Patient/p1"})).json()
    assert plans["total"] == 1
    async with services.engine.connect() as conn:
        assert await Store(conn).pending() == []


class _BrokenEvaluation:
    """A change listener that fails every evaluation (a rule bug or an outage)."""

    async def __call__(self, store: Store, event: Any, now: Any) -> None:
        raise RuntimeError("staging failed")


@pytest.mark.parametrize("writers", [1, 4])
async def test_when_the_evaluation_fails_every_write_is_still_stored_and_its_patient_left_pending(
        client_for, sqlite_url, writers: int) -> None:  # type: ignore[no-untyped-def]
    client = await client_for(make_settings(sqlite_url))
    services = services_of(client.app)
    services.evaluator.listeners.append(_BrokenEvaluation())
    answers = await asyncio.gather(client.put("/fhir/Condition/dx-1", json=condition()),
                                   *(client.put(f"/fhir/Observation/nrs-{n}", json=_score(n, 7))
                                     for n in range(writers - 1)))
    assert {a.status_code for a in answers} == {201}
    scores = (await client.get("/fhir/Observation", params={"subject": "Patient/p1"})).json()
    assert scores["total"] == writers - 1
    assert (await client.get("/fhir/Condition/dx-1")).status_code == 200
    async with services.engine.connect() as conn:
        assert await Store(conn).pending() == ["p1"]
        failure = (await conn.execute(sa.select(tables.pending_evaluations.c.last_error))).scalar()
    assert failure is not None and "staging failed" in failure
