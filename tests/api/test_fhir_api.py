"""The FHIR API as an EHR or integration engine uses it: ingest, read back, errors as OperationOutcome."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.conftest import FIXTURES, make_settings

LOINC, LRP, SNOMED = "http://loinc.org", "http://example.org/CodeSystem/lrp-exam", "http://snomed.info/sct"


def observation(code: str, system: str = LOINC, **value: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": "obs-1", "status": "final",
            "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-03-01T09:00:00Z",
            "code": {"coding": [{"system": system, "code": code}]}, **value}


def condition(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "Condition", "id": "dx-1", "subject": {"reference": "Patient/p1"},
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": "active"}]},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M54.17"}]},
            "onsetDateTime": "2026-02-26T09:00:00Z", **extra}


def assert_outcome(response: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    text = json.dumps(body).lower()
    for word in words:
        assert word.lower() in text, f"{word!r} not in {text}"
    return body


async def test_posting_a_condition_stores_it_and_proposes_a_care_plan(client: httpx.AsyncClient) -> None:
    created = await client.put("/fhir/Condition/dx-1", json=condition())
    assert created.status_code == 201
    assert created.headers["etag"] == 'W/"1"'
    assert created.headers["location"].endswith("/fhir/Condition/dx-1/_history/1")
    plans = (await client.get("/fhir/CarePlan", params={"subject": "Patient/p1"})).json()
    assert plans["type"] == "searchset" and plans["total"] == 1
    requests = (await client.get("/fhir/ServiceRequest", params={"subject": "Patient/p1"})).json()
    [physio] = [e["resource"] for e in requests["entry"]]
    assert physio["code"]["coding"][0]["code"] == "306170007"
    assert (physio["intent"], physio["priority"], physio["status"]) == ("proposal", "routine", "draft")
    assert physio["identifier"][0]["value"] == "urn:lrp:p1:dx-1:R6:306170007"


async def test_reposting_identical_data_creates_nothing_new(client: httpx.AsyncClient) -> None:
    await client.put("/fhir/Condition/dx-1", json=condition())
    again = await client.put("/fhir/Condition/dx-1", json=condition())
    assert again.status_code == 200 and again.headers["etag"] == 'W/"1"'
    plan = (await client.get("/fhir/CarePlan", params={"patient": "p1"})).json()["entry"][0]["resource"]
    assert plan["meta"]["versionId"] == "1"


async def test_changed_data_revises_the_one_care_plan(client: httpx.AsyncClient) -> None:
    await client.put("/fhir/Condition/dx-1", json=condition())
    saddle = observation("LRP-SADDLE", LRP, valueCodeableConcept={"coding": [{"system": SNOMED, "code": "52101004"}]})
    await client.put("/fhir/Observation/obs-1", json=saddle)
    plans = (await client.get("/fhir/CarePlan", params={"subject": "Patient/p1"})).json()
    assert plans["total"] == 1
    plan = plans["entry"][0]["resource"]
    assert plan["meta"]["versionId"] == "2"
    urgency = next(e["valueCode"] for e in plan["extension"] if e["url"].endswith("episode-urgency"))
    assert urgency == "stat"


async def test_read_returns_the_resource_with_its_etag_and_404_otherwise(client: httpx.AsyncClient) -> None:
    await client.put("/fhir/Condition/dx-1", json=condition())
    read = await client.get("/fhir/Condition/dx-1")
    assert read.status_code == 200 and read.headers["etag"] == 'W/"1"'
    assert (await client.get("/fhir/Condition/dx-1", headers={"If-None-Match": 'W/"1"'})).status_code == 304
    assert_outcome(await client.get("/fhir/Condition/nope"), 404, "Condition/nope")


async def test_malformed_json_is_a_400_outcome(client: httpx.AsyncClient) -> None:
    response = await client.post("/fhir/Observation", content=b'{"resourceType": "Obs',
                                 headers={"Content-Type": "application/fhir+json"})
    assert_outcome(response, 400, "malformed JSON")


async def test_resource_type_not_matching_the_url_is_a_400(client: httpx.AsyncClient) -> None:
    assert_outcome(await client.put("/fhir/Observation/obs-1", json=condition()), 400, "does not match")


async def test_unknown_resource_type_is_a_400(client: httpx.AsyncClient) -> None:
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": "Banana"}, "request": {"method": "POST", "url": "Banana"}}]}
    body = assert_outcome(await client.post("/fhir", json={**bundle, "type": "transaction"}), 422, "Banana")
    assert body["issue"][0]["expression"] == ["Bundle.entry[0].resource.resourceType"]


async def test_invalid_fhir_names_the_element(client: httpx.AsyncClient) -> None:
    bad = observation("72514-3", valueInteger=5, status="finished")
    body = assert_outcome(await client.put("/fhir/Observation/obs-1", json=bad), 422, "status")
    assert any("status" in e for i in body["issue"] for e in i["expression"])


async def test_values_the_pathway_cannot_use_are_stored_with_a_located_warning(client: httpx.AsyncClient) -> None:
    """2a.12: an NRS of 11, a missing or unknown unit, an unflagged raw score are valid R4: stored,
    left out of the rules, and the answer names the value with a warning."""
    cases = [(observation("72514-3", valueInteger=11), "Observation.valueInteger", "outside 0-10"),
             (observation("97909-6", valueQuantity={"value": 22}), "Observation.valueQuantity", "unit is missing"),
             (observation("97909-6", valueQuantity={"value": 22, "unit": "{score}", "code": "{score}",
                                                    "system": "http://unitsofmeasure.org"}),
              "Observation.valueQuantity", "must be flagged"),
             (observation("LRP-PVR", LRP, valueQuantity={"value": 300, "unit": "oz"}),
              "Observation.valueQuantity", "'oz' not accepted")]
    for n, (resource, where, words) in enumerate(cases):
        response = await client.put(f"/fhir/Observation/w{n}", json={**resource, "id": f"w{n}"})
        body = assert_outcome(response, 201, words)
        assert [(i["severity"], i["expression"]) for i in body["issue"]] == [("warning", [where])]
        assert (await client.get(f"/fhir/Observation/w{n}")).status_code == 200
    plan = (await client.get("/fhir/CarePlan", params={"subject": "Patient/p1"})).json()
    assert "entry" not in plan  # no usable data: nothing decided, nothing proposed


async def test_a_flagged_raw_odi_score_is_accepted(client: httpx.AsyncClient) -> None:
    raw = observation("97909-6", valueQuantity={"value": 22, "unit": "{score}", "code": "{score}",
                                                       "system": "http://unitsofmeasure.org"},
                      method={"coding": [{"system": LRP, "code": "LRP-ODI-RAW"}]})
    assert (await client.put("/fhir/Observation/obs-1", json=raw)).status_code == 201


async def test_a_resource_without_a_patient_subject_is_stored_with_information(client: httpx.AsyncClient) -> None:
    orphan = {k: v for k, v in observation("72514-3", valueInteger=5).items() if k != "subject"}
    body = assert_outcome(await client.put("/fhir/Observation/obs-1", json=orphan), 201, "not a Patient")
    assert [(i["severity"], i["expression"]) for i in body["issue"]] == [("information", ["Observation.subject"])]
    group = {**orphan, "subject": {"reference": "Group/g1"}}
    assert (await client.put("/fhir/Observation/obs-1", json=group)).status_code == 200


async def test_oversized_bodies_get_413(client_for, sqlite_url) -> None:  # type: ignore[no-untyped-def]
    client = await client_for(make_settings(sqlite_url, max_body_bytes=1000))
    big = observation("72514-3", valueInteger=5, note=[{"text": "x" * 2000}])
    assert_outcome(await client.put("/fhir/Observation/obs-1", json=big), 413, "exceeds the limit")


async def test_wrong_media_type_gets_415(client: httpx.AsyncClient) -> None:
    response = await client.post("/fhir/Observation", content=b"<Observation/>",
                                 headers={"Content-Type": "application/fhir+xml"})
    assert_outcome(response, 415, "not supported")


async def test_missing_or_wrong_token_gets_401(client: httpx.AsyncClient) -> None:
    missing = await client.get("/fhir/CarePlan", headers={"Authorization": ""})
    assert_outcome(missing, 401, "missing bearer token")
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert_outcome(await client.post("/fhir/Condition", json=condition(), headers={"Authorization": "Bearer x"}),
                   401, "invalid bearer token")
    assert (await client.get("/fhir/Condition/dx-1")).status_code == 404  # nothing was stored


async def test_a_transaction_with_one_bad_entry_stores_nothing(client: httpx.AsyncClient) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": condition(), "request": {"method": "PUT", "url": "Condition/dx-1"}},
        {"resource": observation("72514-3", valueInteger=4, status="bogus"),
         "request": {"method": "POST", "url": "Observation"}}]}
    body = assert_outcome(await client.post("/fhir", json=bundle), 422, "bogus")
    assert body["issue"][0]["expression"][0].startswith("Bundle.entry[1].resource")
    assert (await client.get("/fhir/Condition/dx-1")).status_code == 404


async def test_a_batch_stores_good_entries_and_reports_bad_ones(client: httpx.AsyncClient) -> None:
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": condition(), "request": {"method": "PUT", "url": "Condition/dx-1"}},
        {"resource": observation("72514-3", valueInteger=4, status="bogus"),
         "request": {"method": "POST", "url": "Observation"}}]}
    response = await client.post("/fhir", json=bundle)
    assert response.status_code == 200
    statuses = [e["response"]["status"] for e in response.json()["entry"]]
    assert statuses == ["201 Created", "422 Unprocessable Entity"]
    assert response.json()["type"] == "batch-response"
    assert (await client.get("/fhir/Condition/dx-1")).status_code == 200


async def test_urn_uuid_references_inside_a_bundle_resolve_to_the_patient(client: httpx.AsyncClient) -> None:
    patient_url = "urn:uuid:5b4e3c2a-1111-4222-8333-944445555666"
    dx = {**condition(), "subject": {"reference": patient_url}}
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": patient_url, "resource": {"resourceType": "Patient", "id": "p9"},
         "request": {"method": "PUT", "url": "Patient/p9"}},
        {"resource": dx, "request": {"method": "POST", "url": "Condition"}}]}
    response = await client.post("/fhir", json=bundle)
    assert response.status_code == 200, response.text
    assert response.json()["type"] == "transaction-response"
    assert (await client.get("/fhir/CarePlan", params={"subject": "Patient/p9"})).json()["total"] == 1


async def test_unsupported_bundle_type_and_methods_are_400(client: httpx.AsyncClient) -> None:
    assert_outcome(await client.post("/fhir", json={"resourceType": "Bundle", "type": "searchset"}), 400, "Bundle.type")
    delete = {"resourceType": "Bundle", "type": "batch",
              "entry": [{"resource": condition(), "request": {"method": "DELETE", "url": "Condition/dx-1"}}]}
    assert_outcome(await client.post("/fhir", json=delete), 400, "DELETE")


async def test_apply_returns_the_care_plan_with_contained_requests_and_stores_nothing(
        client: httpx.AsyncClient) -> None:
    bundle = (FIXTURES / "03-urinary-retention" / "step-1.bundle.json").read_bytes()
    await client.post("/fhir", content=bundle, headers={"Content-Type": "application/fhir+json"})
    before = (await client.get("/fhir/ServiceRequest", params={"subject": "Patient/lrp-03"})).json()["total"]
    response = await client.post("/fhir/PlanDefinition/lumbar-radiculopathy/$apply",
                                 params={"subject": "Patient/lrp-03"})
    assert response.status_code == 200
    plan = response.json()
    assert plan["resourceType"] == "CarePlan"
    contained = {r["id"]: r for r in plan["contained"]}
    references = [a["reference"]["reference"] for a in plan["activity"] if "reference" in a]
    assert all(ref.startswith("#") and ref[1:] in contained for ref in references)
    assert {r["priority"] for r in contained.values() if r["resourceType"] == "ServiceRequest"} == {"stat"}
    after = (await client.get("/fhir/ServiceRequest", params={"subject": "Patient/lrp-03"})).json()["total"]
    assert after == before


async def test_apply_takes_parameters_and_rejects_a_missing_subject(client: httpx.AsyncClient) -> None:
    await client.put("/fhir/Condition/dx-1", json=condition())
    params = {"resourceType": "Parameters", "parameter": [{"name": "subject", "valueString": "Patient/p1"}]}
    ok = await client.post("/fhir/PlanDefinition/lumbar-radiculopathy/$apply", json=params)
    assert ok.status_code == 200 and ok.json()["resourceType"] == "CarePlan"
    assert_outcome(await client.post("/fhir/PlanDefinition/lumbar-radiculopathy/$apply"), 400, "subject")
    assert_outcome(await client.post("/fhir/PlanDefinition/nope/$apply?subject=Patient/p1"), 404, "nope")


async def test_plan_definition_export_lists_every_rule(client: httpx.AsyncClient) -> None:
    plan = (await client.get("/fhir/PlanDefinition/lumbar-radiculopathy")).json()
    assert plan["resourceType"] == "PlanDefinition" and plan["version"] == "1.0.0"
    assert [a["id"] for a in plan["action"]] == ["R1", "R2", "R3", "R4", "R8", "R7", "R9", "R6", "R0", "R5"]


async def test_metadata_is_public_and_lists_what_is_supported(client: httpx.AsyncClient) -> None:
    response = await client.get("/fhir/metadata", headers={"Authorization": ""})
    assert response.status_code == 200
    statement = response.json()
    assert statement["fhirVersion"] == "4.0.1"
    kinds = {r["type"]: {i["code"] for i in r["interaction"]} for r in statement["rest"][0]["resource"]}
    assert "create" in kinds["Observation"] and "create" not in kinds["CarePlan"]
    assert {"read", "search-type"} <= kinds["CarePlan"]
