"""An EHR sends the same prefetch every time a chart is opened, and Carepath remembers what it made
of a prefetch by its content. A chart opened again gets the same card, with its problems named
every time; a prefetch that changed in any way, or the same prefetch for another patient, is read
afresh."""

from __future__ import annotations

import copy
from typing import Any

from tests.cds.support import SigningKey, hook_request, prefetch_of, scenario
from tests.cds.test_cds_hooks import PV, call

PATIENT = "lrp-03"


async def card(client: Any, key: SigningKey, prefetch: dict[str, Any], patient: str = PATIENT) -> dict[str, Any]:
    response = await call(client, PV, hook_request("patient-view", patient, prefetch=prefetch), key)
    assert response.status_code == 200, response.text
    [only] = response.json()["cards"]
    only.pop("uuid")  # the card's and its suggestions' uuids differ per hookInstance, by design
    for suggestion in only.get("suggestions", []):
        suggestion.pop("uuid")
    return only  # type: ignore[no-any-return]


def red_flag_groups() -> dict[str, list[dict[str, Any]]]:
    groups = scenario("03-urinary-retention", PATIENT)
    groups["observations"].append({  # a pain score the rules would read, with an invalid status
        "resourceType": "Observation", "id": "pain-bad", "status": "nonsense",
        "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3"}]},
        "subject": {"reference": f"Patient/{PATIENT}"}, "effectiveDateTime": "2026-03-01T09:00:00Z",
        "valueInteger": 4})
    return groups


async def test_a_chart_opened_again_gets_the_same_card_with_its_problems_named(cds, key) -> None:
    prefetch = prefetch_of(red_flag_groups())
    cards = [await card(cds, key, copy.deepcopy(prefetch)) for _ in range(3)]
    assert cards[0] == cards[1] == cards[2]
    assert cards[0]["summary"].startswith("RED FLAG")
    last = len(prefetch["observations"]["entry"]) - 1
    assert f"prefetch.observations[{last}].status" in cards[0]["detail"]


async def test_a_prefetch_that_changed_is_read_afresh(cds, key) -> None:
    groups = red_flag_groups()
    assert (await card(cds, key, prefetch_of(groups)))["summary"].startswith("RED FLAG")
    withdrawn = copy.deepcopy(groups)
    retention = next(c for c in withdrawn["conditions"] if c["id"] == "03-retention")
    retention["verificationStatus"]["coding"][0]["code"] = "entered-in-error"  # same ids, new content
    assert not (await card(cds, key, prefetch_of(withdrawn)))["summary"].startswith("RED FLAG")
    fixed = copy.deepcopy(groups)
    fixed["observations"][-1]["status"] = "final"
    again = await card(cds, key, prefetch_of(fixed))
    assert again["summary"].startswith("RED FLAG")
    assert "could not be read" not in again["detail"]
    assert (await card(cds, key, prefetch_of(groups)))["summary"].startswith("RED FLAG")


async def test_the_same_prefetch_for_another_patient_is_not_read_as_theirs(cds, key) -> None:
    prefetch = prefetch_of(red_flag_groups())
    assert (await card(cds, key, prefetch))["summary"].startswith("RED FLAG")
    other = await card(cds, key, prefetch, patient="lrp-99")
    assert not other["summary"].startswith("RED FLAG")
    assert "belongs to another patient" in other["detail"]
