"""Search, paging and the R4 interactions as an ordinary FHIR client uses them (the failures of
issue 12: wrong search answers, unreadable versions, POST overwriting, no PUT/DELETE)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from service.adapters.store import Store
from service.entrypoints.app import services_of
from tests.api.test_fhir_api import LOINC, LRP, SNOMED, assert_outcome, condition, observation
from tests.conftest import FIXTURES, make_settings

SCENARIOS = sorted(p for p in FIXTURES.iterdir() if p.is_dir())


async def _post_all_scenarios(client: httpx.AsyncClient, count: int = 24) -> None:
    for folder in SCENARIOS[:count]:
        for step in sorted(folder.glob("step-*.bundle.json")):
            response = await client.post("/fhir", content=step.read_bytes(),
                                         headers={"Content-Type": "application/fhir+json"})
            assert response.status_code == 200, response.text


def _ids(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def _link(bundle: dict[str, Any], relation: str) -> str | None:
    return next((link["url"] for link in bundle["link"] if link["relation"] == relation), None)


@pytest.fixture
async def loaded(client: httpx.AsyncClient) -> httpx.AsyncClient:
    await _post_all_scenarios(client)
    return client


async def test_search_filters_by_status_id_code_priority_and_subject(loaded: httpx.AsyncClient) -> None:
    client = loaded
    every = (await client.get("/fhir/ServiceRequest", params={"_count": 1000})).json()
    assert every["total"] == len(_ids(every)) >= 25
    active = (await client.get("/fhir/ServiceRequest", params={"subject": "Patient/lrp-03"})).json()
    assert active["total"] == 2
    revoked = await client.get("/fhir/ServiceRequest", params={"subject": "Patient/lrp-03", "status": "revoked"})
    assert revoked.json()["total"] == 0 and "entry" not in revoked.json()  # R4: no empty arrays
    one = _ids(active)[0]
    assert _ids((await client.get("/fhir/ServiceRequest", params={"_id": one})).json()) == [one]
    mri = (await client.get("/fhir/ServiceRequest", params={"code": f"{LOINC}|30679-5",
                                                            "subject": "lrp-03"})).json()
    assert mri["total"] == 1
    stat = (await client.get("/fhir/ServiceRequest", params={"priority": "stat"})).json()
    assert stat["total"] >= 2 and all(e["resource"]["priority"] == "stat" for e in stat["entry"])
    mine = (await client.get("/fhir/CarePlan", params={"subject:Patient": "lrp-03"})).json()
    assert mine["total"] == 1 and mine["entry"][0]["resource"]["subject"]["reference"] == "Patient/lrp-03"
    assert (await client.get("/fhir/CarePlan", params={"patient": "Patient/lrp-03"})).json()["total"] == 1
    proposals = (await client.get("/fhir/Task", params={"intent": "proposal", "_count": 1000})).json()
    assert proposals["total"] == len(_ids(proposals)) >= 9


async def test_paging_gives_the_true_total_and_working_links(loaded: httpx.AsyncClient) -> None:
    client = loaded
    total = (await client.get("/fhir/CarePlan", params={"_summary": "count"})).json()
    assert total["total"] == 24 and "entry" not in total
    seen: list[str] = []
    page = (await client.get("/fhir/CarePlan", params={"_count": 5})).json()
    assert page["total"] == 24 and _link(page, "previous") is None
    while True:
        seen += _ids(page)
        following = _link(page, "next")
        if following is None:
            break
        page = (await client.get(following)).json()
        assert page["total"] == 24 and _link(page, "previous")
    assert len(seen) == len(set(seen)) == 24
    again = (await client.get(_link(page, "self"))).json()
    assert _ids(again) == _ids(page)


async def test_sort_by_last_updated_and_include_the_care_plan_activities(loaded: httpx.AsyncClient) -> None:
    client = loaded
    newest = (await client.get("/fhir/ServiceRequest", params={"_sort": "-_lastUpdated", "_count": 1000})).json()
    stamps = [e["resource"]["meta"]["lastUpdated"] for e in newest["entry"]]
    assert stamps == sorted(stamps, reverse=True)
    plan = (await client.get("/fhir/CarePlan", params={"subject": "Patient/lrp-03",
                                                       "_include": "CarePlan:activity-reference"})).json()
    assert plan["total"] == 1
    included = {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in plan["entry"]
                if e["search"]["mode"] == "include"}
    activities = {a["reference"]["reference"] for a in plan["entry"][0]["resource"]["activity"] if "reference" in a}
    assert included == activities and len(included) >= 2


async def test_unknown_parameters_are_ignored_leniently_and_refused_strictly(client: httpx.AsyncClient) -> None:
    await client.put("/fhir/Condition/dx-1", json=condition())
    lenient = (await client.get("/fhir/CarePlan", params={"subject": "Patient/p1", "colour": "red"})).json()
    assert lenient["total"] == 1
    assert "colour" not in _link(lenient, "self") and "subject" in parse_qs(urlsplit(_link(lenient, "self")).query)
    strict = await client.get("/fhir/CarePlan", params={"subject": "Patient/p1", "colour": "red"},
                              headers={"Prefer": "handling=strict"})
    body = assert_outcome(strict, 400, "colour")
    assert body["issue"][0]["expression"] == ["colour"]
    # Patient has neither subject nor patient in R4
    assert_outcome(await client.get("/fhir/Patient", params={"subject": "x"}, headers={"Prefer": "handling=strict"}),
                   400, "subject")


async def test_post_assigns_the_id_and_never_overwrites_another_patients_resource(client: httpx.AsyncClient) -> None:
    first = await client.post("/fhir/Observation", json=observation("72514-3", valueInteger=6))
    assert first.status_code == 201
    moved = observation("72514-3", valueInteger=6, subject={"reference": "Patient/other"})
    second = await client.post("/fhir/Observation", json=moved)  # same client id "obs-1", other patient
    assert second.status_code == 201
    assert first.json()["id"] != second.json()["id"] != "obs-1"
    kept = (await client.get(f"/fhir/Observation/{first.json()['id']}")).json()
    assert kept["subject"]["reference"] == "Patient/p1"
    again = await client.post("/fhir/Observation", json=moved)  # the same content again: nothing new
    assert again.status_code == 200 and again.json()["id"] == second.json()["id"]


async def test_conditional_create_with_if_none_exist(client: httpx.AsyncClient) -> None:
    tagged = observation("72514-3", valueInteger=6, identifier=[{"system": "urn:ehr", "value": "n-1"}])
    made = await client.post("/fhir/Observation", json=tagged, headers={"If-None-Exist": "identifier=urn:ehr|n-1"})
    assert made.status_code == 201
    edited = {**tagged, "valueInteger": 7}
    same = await client.post("/fhir/Observation", json=edited, headers={"If-None-Exist": "identifier=urn:ehr|n-1"})
    assert same.status_code == 200 and same.json()["id"] == made.json()["id"] and same.json()["valueInteger"] == 6
    # criteria the server cannot honour would match everything: refused, not ignored
    assert_outcome(await client.post("/fhir/Observation", json=edited, headers={"If-None-Exist": "colour=red"}),
                   400, "colour")


async def test_put_updates_with_if_match_and_versions_are_readable(client: httpx.AsyncClient) -> None:
    created = await client.put("/fhir/Condition/dx-1", json=condition())
    assert created.status_code == 201 and created.headers["etag"] == 'W/"1"'
    stale = await client.put("/fhir/Condition/dx-1", json=condition(note=[{"text": "x"}]), headers={"If-Match": 'W/"7"'})
    assert_outcome(stale, 412, "If-Match")
    updated = await client.put("/fhir/Condition/dx-1", json=condition(note=[{"text": "x"}]), headers={"If-Match": 'W/"1"'})
    assert updated.status_code == 200 and updated.headers["etag"] == 'W/"2"'
    location = created.headers["location"]
    assert location.endswith("/fhir/Condition/dx-1/_history/1")
    first = await client.get(location)
    assert first.status_code == 200 and "note" not in first.json()
    history = (await client.get("/fhir/Condition/dx-1/_history")).json()
    assert history["type"] == "history" and history["total"] == 2
    assert [e["response"]["etag"] for e in history["entry"]] == ['W/"2"', 'W/"1"']
    typed = (await client.get("/fhir/Condition/_history")).json()
    assert typed["total"] == 2
    plan_id = (await client.get("/fhir/CarePlan", params={"subject": "Patient/p1"})).json()["entry"][0]["resource"]["id"]
    assert (await client.get(f"/fhir/CarePlan/{plan_id}/_history/1")).status_code == 200
    mismatched = await client.put("/fhir/Condition/dx-2", json=condition())
    assert_outcome(mismatched, 400, "URL's id")


async def test_delete_removes_an_input_and_re_evaluates_the_patient(client: httpx.AsyncClient) -> None:
    services = services_of(client.app)  # type: ignore[attr-defined]
    await client.put("/fhir/Condition/dx-1", json=condition())
    saddle = observation("LRP-SADDLE", LRP, valueCodeableConcept={"coding": [{"system": SNOMED, "code": "52101004"}]})
    await client.put("/fhir/Observation/obs-1", json=saddle)
    assert (await client.get("/fhir/CarePlan", params={"subject": "Patient/p1"})).json()["entry"][0]["resource"][
        "description"].startswith("Episode urgency: stat")
    deleted = await client.delete("/fhir/Observation/obs-1")
    assert deleted.status_code == 204
    assert_outcome(await client.get("/fhir/Observation/obs-1"), 410, "deleted")
    async with services.engine.connect() as conn:
        evaluations = await Store(conn).evaluations_of("p1")
    assert len(evaluations) == 3  # re-evaluated without the finding
    tasks = (await client.get("/fhir/Task", params={"subject": "Patient/p1"})).json()
    assert tasks["total"] >= 1  # the kept stat escalation lost its evidence: a review Task
    assert (await client.delete("/fhir/Observation/obs-1")).status_code == 204  # idempotent
    history = (await client.get("/fhir/Observation/obs-1/_history")).json()
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "PUT"]
    assert_outcome(await client.get("/fhir/Observation/obs-1/_history/2"), 410, "deletion")
    await client.delete("/fhir/Condition/dx-1")
    recreated = await client.put("/fhir/Condition/dx-1", json=condition())
    assert recreated.status_code == 201 and recreated.headers["etag"] == 'W/"3"'
    plan = (await client.get("/fhir/CarePlan", params={"subject": "Patient/p1"})).json()["entry"][0]["resource"]
    response = await client.delete(f"/fhir/CarePlan/{plan['id']}")
    assert_outcome(response, 405, "cannot be deleted")
    assert response.headers["allow"] == "GET"


async def test_a_bundle_recreating_deleted_resources_continues_their_history(client_for, database_url) -> None:  # type: ignore[no-untyped-def]
    client = await client_for(make_settings(database_url))
    await client.put("/fhir/Condition/dx-1", json=condition())
    scores = [{**observation("72514-3", valueInteger=v), "id": f"obs-{v}"} for v in (5, 6)]
    for score in scores:
        await client.put(f"/fhir/Observation/{score['id']}", json=score)
    await client.delete("/fhir/Observation/obs-5")  # obs-5: version 1, then its deletion (2)
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {**s, "valueInteger": 7}, "request": {"method": "PUT", "url": f"Observation/{s['id']}"}}
        for s in scores] + [{"resource": {**scores[0], "id": "obs-new"}, "request": {
            "method": "PUT", "url": "Observation/obs-new"}}]}
    answers = (await client.post("/fhir", json=bundle)).json()["entry"]
    assert [(a["response"]["status"], a["response"]["etag"]) for a in answers] == [
        ("201 Created", 'W/"3"'), ("200 OK", 'W/"2"'), ("201 Created", 'W/"1"')]
    history = (await client.get("/fhir/Observation/obs-5/_history")).json()
    assert [(e["request"]["method"], e["response"]["etag"]) for e in history["entry"]] == [
        ("PUT", 'W/"3"'), ("DELETE", 'W/"2"'), ("PUT", 'W/"1"')]


async def test_batch_with_get_put_and_delete_entries(client: httpx.AsyncClient) -> None:
    await client.put("/fhir/Condition/dx-1", json=condition())
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": observation("72514-3", valueInteger=5), "request": {"method": "PUT", "url": "Observation/obs-1"}},
        {"request": {"method": "GET", "url": "Condition/dx-1"}},
        {"request": {"method": "GET", "url": "CarePlan?subject=Patient/p1"}},
        {"request": {"method": "DELETE", "url": "Observation/none"}},
        {"request": {"method": "GET", "url": "Condition/nope"}}]}
    response = await client.post("/fhir", json=bundle)
    assert response.status_code == 200, response.text
    answers = response.json()["entry"]
    assert [a["response"]["status"] for a in answers] == ["201 Created", "200 OK", "200 OK", "204 No Content",
                                                          "404 Not Found"]
    assert answers[1]["resource"]["id"] == "dx-1" and answers[2]["resource"]["type"] == "searchset"


async def test_prefer_return_and_format_negotiation(client: httpx.AsyncClient) -> None:
    minimal = await client.put("/fhir/Condition/dx-1", json=condition(), headers={"Prefer": "return=minimal"})
    assert minimal.status_code == 201 and minimal.content == b"" and minimal.headers["location"]
    outcome = await client.put("/fhir/Condition/dx-1", json=condition(note=[{"text": "n"}]),
                               headers={"Prefer": "return=OperationOutcome"})
    assert outcome.status_code == 200 and outcome.json()["resourceType"] == "OperationOutcome"
    full = await client.put("/fhir/Condition/dx-1", json=condition(), headers={"Prefer": "return=representation"})
    assert full.json()["resourceType"] == "Condition"
    assert_outcome(await client.get("/fhir/Condition/dx-1", headers={"Accept": "application/fhir+xml"}), 406, "xml")
    assert_outcome(await client.get("/fhir/Condition/dx-1", params={"_format": "xml"}), 406, "xml")
    assert (await client.get("/fhir/Condition/dx-1", params={"_format": "json"})).status_code == 200
    assert (await client.get("/fhir/Condition/dx-1", headers={"Accept": "application/fhir+json"})).status_code == 200


async def test_the_requester_device_resolves(client: httpx.AsyncClient) -> None:
    await client.put("/fhir/Condition/dx-1", json=condition())
    request = (await client.get("/fhir/ServiceRequest", params={"subject": "Patient/p1"})).json()["entry"][0]["resource"]
    device = await client.get(f"/fhir/{request['requester']['reference']}")
    assert device.status_code == 200 and device.json()["resourceType"] == "Device"


async def test_capability_statement_lists_exactly_what_works(client: httpx.AsyncClient) -> None:
    statement = (await client.get("/fhir/metadata")).json()
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    patient = {p["name"] for p in resources["Patient"]["searchParam"]}
    assert "subject" not in patient and "patient" not in patient
    interactions = {i["code"] for i in resources["Observation"]["interaction"]}
    assert {"create", "update", "delete", "read", "vread", "history-instance", "search-type"} <= interactions
    assert "update" not in {i["code"] for i in resources["CarePlan"]["interaction"]}
    assert resources["CarePlan"]["searchInclude"] == ["CarePlan:activity-reference"]
    for kind, entry in resources.items():  # every advertised parameter is honoured (strict search)
        for param in entry.get("searchParam", []):
            value = {"_lastUpdated": "ge2020-01-01", "subject": "Patient/p1", "patient": "p1"}.get(param["name"], "x")
            response = await client.get(f"/fhir/{kind}", params={param["name"]: value},
                                        headers={"Prefer": "handling=strict"})
            assert response.status_code == 200, (kind, param["name"], response.text)


async def test_a_value_left_out_is_noted_on_the_care_plan(client: httpx.AsyncClient) -> None:
    """2a.12: a decimal pain score is stored and answered with a warning; the CarePlan says it was
    left out, so a reader knows the decision did not use it."""
    await client.put("/fhir/Condition/dx-1", json=condition())
    pain = observation("72514-3", valueQuantity={"value": 6.5, "unit": "{score}", "system": "http://unitsofmeasure.org",
                                                 "code": "{score}"})
    response = await client.put("/fhir/Observation/obs-1", json=pain)
    body = assert_outcome(response, 201, "not a whole number")
    assert body["issue"][0]["severity"] == "warning"
    plan = (await client.get("/fhir/CarePlan", params={"subject": "Patient/p1"})).json()["entry"][0]["resource"]
    notes = [n["text"] for n in plan["note"] if n["text"].startswith("Data quality")]
    assert notes and "Observation/obs-1" in notes[0] and "not a whole number" in notes[0]
