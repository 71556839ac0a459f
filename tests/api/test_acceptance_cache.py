"""Contents found acceptable are not re-checked, but a refusal is never remembered as acceptance."""

from __future__ import annotations

import copy

import httpx

from tests.integration.test_durability import services_of


def pain(value: object) -> dict[str, object]:
    return {"resourceType": "Observation", "status": "final", "subject": {"reference": "Patient/p1"},
            "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3"}]},
            "effectiveDateTime": "2026-03-01T09:00:00Z", "valueInteger": value}


async def test_an_acceptable_resource_stays_acceptable_and_a_bad_one_is_refused_every_time(
        client: httpx.AsyncClient) -> None:
    ingestor = services_of(client.app).ingestor  # type: ignore[attr-defined]
    good = pain(5)
    assert ingestor.problems(good) == [] and ingestor.problems(copy.deepcopy(good)) == []
    bad = {**pain(5), "status": "finished"}  # not in the required value set
    for _ in range(3):
        assert [i.expression for i in ingestor.problems(bad)] == ["Observation.status"]
    changed = {**good, "status": "finished"}  # a cached acceptance says nothing of other contents
    assert [i.expression for i in ingestor.problems(changed)] == ["Observation.status"]
