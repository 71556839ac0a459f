"""Prefetched resources the pathway cannot use (by their codes) are left out before validation;
what it can use is still validated, and a problem in it is still named on the card."""

from __future__ import annotations

import copy
from typing import Any

from service.cds.relevance import usable
from service.fhir.models import validate_resource
from service.rules.registry import Pathway
from tests.cds.support import hook_request, prefetch_of, scenario
from tests.cds.test_cds_hooks import PV, call

HEART_RATE = {"system": "http://loinc.org", "code": "8867-4"}
PAIN = {"system": "http://loinc.org", "code": "72514-3"}


def observation(rid: str, coding: dict[str, str] | None, **extra: Any) -> dict[str, Any]:
    code = {"coding": [coding]} if coding else {"text": "free text only"}
    return {"resourceType": "Observation", "id": rid, "status": "final", "code": code,
            "subject": {"reference": "Patient/lrp-01"}, "effectiveDateTime": "2026-03-01T09:00:00Z",
            **extra}


def test_only_resources_coded_outside_every_concept_are_left_out(pathway: Pathway) -> None:
    concepts = [pathway.concepts]
    assert not usable(observation("hr", HEART_RATE), concepts)
    assert usable(observation("nrs", PAIN), concepts)
    assert usable(observation("uncoded", None), concepts)  # unreadable code: validate, name it
    assert usable(observation("odd", {"system": 7, "code": "x"}), concepts)  # type: ignore[dict-item]
    assert usable({"resourceType": "Patient", "id": "p"}, concepts)
    assert usable("not a resource", concepts)


def test_a_content_seen_valid_is_accepted_again_and_a_bad_one_is_still_refused() -> None:
    good = observation("cache-1", PAIN, valueInteger=4)
    assert validate_resource(good) == [] and validate_resource(copy.deepcopy(good)) == []
    bad = {**good, "status": ["not", "a", "code"]}
    assert validate_resource(bad) and validate_resource(copy.deepcopy(bad))


async def test_unusable_prefetch_is_ignored_and_usable_prefetch_still_validated(cds, key) -> None:
    groups = scenario("01-conservative-start", "lrp-01")
    plain = (await call(cds, PV, hook_request("patient-view", "lrp-01",
                                              prefetch=prefetch_of(groups)), key)).json()
    groups["observations"] += [observation("vitals", HEART_RATE, status="nonsense"),
                               observation("pain-bad", PAIN, status="nonsense")]
    response = await call(cds, PV, hook_request("patient-view", "lrp-01",
                                                prefetch=prefetch_of(groups)), key)
    assert response.status_code == 200, response.text
    [card] = response.json()["cards"]
    last = len(groups["observations"]) - 1
    # the invalid pain score is named; the invalid heart rate is not the pathway's business
    assert "*1 record(s) could not be read and were left out: " in card["detail"]
    assert f"prefetch.observations[{last}].status" in card["detail"]
    assert card["summary"] == plain["cards"][0]["summary"]
    assert card["indicator"] == plain["cards"][0]["indicator"]
