"""Where a CDS call's data comes from: the EHR's prefetch, its fhirServer, or the record Carepath
already holds for the patient (received through the FHIR API and webhooks); 412 only when none."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from service.cds import prefetch
from service.fhir.models import INPUT_TYPES
from tests.cds.support import FakeEhr, call, hook_request, prefetch_of, scenario, serve
from tests.conftest import FIXTURES

PV = "carepath-patient-view"
OSEL = "carepath-imaging-order-select"
CT_72131 = {"resourceType": "ServiceRequest", "id": "ct-1", "status": "draft", "intent": "order",
            "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "72131"}]},
            "subject": {"reference": "Patient/lrp-02"}}


async def store_scenario(client: Any, case: str) -> None:
    bundle = (FIXTURES / case / "step-1.bundle.json").read_bytes()
    response = await client.post("/fhir", content=bundle, headers={"Content-Type": "application/fhir+json"})
    assert response.status_code == 200, response.text


def test_prefetch_asks_for_every_resource_type_the_pathway_reads_each_bounded() -> None:
    asked = {prefetch.resource_type(key) for key in prefetch.TEMPLATES}
    assert INPUT_TYPES <= asked
    assert {"MedicationRequest", "MedicationStatement"} <= asked  # conservative-care evidence
    for key, template in prefetch.TEMPLATES.items():
        if "?" in template:
            assert "patient={{context.patientId}}" in template and "_count=" in template, key
        assert prefetch.render(template, {"patientId": "p-1"}).count("p-1") == 1


async def test_without_prefetch_or_fhir_server_the_stored_record_is_used_and_the_card_says_so(cds, keys) -> None:
    await store_scenario(cds, "02-clinician-mri-blocked")
    body = hook_request("order-select", "lrp-02", draft_orders=[CT_72131])
    response = await call(cds, OSEL, body, keys["es"])
    assert response.status_code == 200, response.text
    [card] = response.json()["cards"]
    assert card["summary"] == ("CT lumbar spine without contrast not indicated yet: radicular pain for 10 days, "
                               "no red flags")
    assert card["source"]["label"] == ("Carepath: lumbar radiculopathy care pathway 1.0.0 "
                                       "(from Carepath's stored record: not prefetched)")
    assert "*Data: the EHR sent no prefetch; Carepath used what it holds for this patient.*" in card["detail"]


async def test_patient_view_from_the_stored_record_shows_the_blocked_imaging_proposal(cds, keys) -> None:
    """Scenario 2: the clinician's MRI proposal is on file; patient-view sees it and the gate."""
    await store_scenario(cds, "02-clinician-mri-blocked")
    response = await call(cds, PV, hook_request("patient-view", "lrp-02"), keys["es"])
    assert response.status_code == 200, response.text
    [card] = response.json()["cards"]
    assert card["summary"] == "Lumbar radiculopathy: Referral to physiotherapy; imaging not indicated yet"
    assert ("- **Imaging-appropriateness gate: imaging not indicated yet**: episode is 10 days old (< 42). "
            "Evidence: imaging proposed: MR Lumbar spine WO contrast (LOINC 30679-5) on 2 Mar 2026.") in card["detail"]
    assert "imaging proposed: MR Lumbar spine WO contrast (LOINC 30679-5) on 2 Mar 2026" in card["detail"]
    assert "ServiceRequest/" not in card["detail"]


async def test_prefetched_service_requests_show_the_blocked_proposal_too(cds, keys) -> None:
    body = hook_request("patient-view", "lrp-02", prefetch=prefetch_of(scenario("02-clinician-mri-blocked")))
    response = await call(cds, PV, body, keys["es"])
    [card] = response.json()["cards"]
    assert "imaging proposed: MR Lumbar spine WO contrast (LOINC 30679-5) on 2 Mar 2026" in card["detail"]
    assert card["source"]["label"] == "Carepath: lumbar radiculopathy care pathway 1.0.0"


async def test_a_key_the_ehr_left_out_is_answered_from_the_stored_record(cds, keys) -> None:
    await store_scenario(cds, "02-clinician-mri-blocked")
    prefetched = prefetch_of(scenario("02-clinician-mri-blocked"), without=("serviceRequests",))
    response = await call(cds, PV, hook_request("patient-view", "lrp-02", prefetch=prefetched), keys["es"])
    [card] = response.json()["cards"]
    assert "imaging proposed: MR Lumbar spine WO contrast (LOINC 30679-5)" in card["detail"]
    assert "*Data: the EHR sent no serviceRequests; Carepath used what it holds for this patient.*" in card["detail"]


async def test_without_prefetch_fhir_server_or_stored_record_the_answer_is_412(cds, keys) -> None:
    await store_scenario(cds, "01-conservative-start")  # another patient's record does not count
    response = await call(cds, OSEL, hook_request("order-select", "lrp-02", draft_orders=[CT_72131]), keys["es"])
    assert response.status_code == 412
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "Carepath holds no data for this patient" in json.dumps(outcome)


async def test_prefetched_medication_requests_are_accepted_without_noise(cds, keys) -> None:
    groups = scenario("02-clinician-mri-blocked")
    groups["medicationRequests"] = [{
        "resourceType": "MedicationRequest", "id": "naproxen", "status": "active", "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                  "code": "198013", "display": "Naproxen 500 MG Oral Tablet"}]},
        "subject": {"reference": "Patient/lrp-02"}, "authoredOn": "2026-02-23"}]
    response = await call(cds, PV, hook_request("patient-view", "lrp-02", prefetch=prefetch_of(groups)), keys["es"])
    assert response.status_code == 200, response.text
    assert "could not be read" not in response.json()["cards"][0]["detail"]


@pytest.mark.parametrize("case", sorted(p.name for p in FIXTURES.iterdir() if p.is_dir()))
async def test_no_card_shows_resource_ids_or_product_default_markers(cds, keys, case) -> None:
    """Every scenario's patient-view card: evidence in words, never ids, "PD" or rule ids alone."""
    groups = scenario(case)
    patient = groups["patient"][0]["id"]
    response = await call(cds, PV, hook_request("patient-view", patient, prefetch=prefetch_of(groups)), keys["es"])
    [card] = response.json()["cards"]
    assert len(card["summary"]) < 140
    ids = {r["id"] for rs in groups.values() for r in rs if r["resourceType"] != "Patient"}
    shown = card["summary"] + card["detail"]
    assert [i for i in ids if i in shown] == []
    assert not re.search(r"\b(PD|R\d)\b|(Observation|Condition|Procedure|ServiceRequest)/", shown), shown


async def test_a_fhir_server_without_medication_statements_still_gets_a_card(cds, keys) -> None:
    groups = scenario("02-clinician-mri-blocked")
    with serve(FakeEhr(data=groups, unsupported=frozenset({"MedicationStatement"}))) as ehr:
        body = hook_request("order-select", "lrp-02", draft_orders=[CT_72131], fhirServer=f"{ehr.url}/fhir")
        response = await call(cds, OSEL, body, keys["es"])
    assert response.status_code == 200, response.text
    [card] = response.json()["cards"]
    assert card["summary"].startswith("CT lumbar spine without contrast not indicated yet")
    assert "*Data: no medicationStatements were available" in card["detail"]


async def test_medications_missing_everywhere_do_not_stop_the_decision(cds, keys) -> None:
    prefetched = prefetch_of(scenario("02-clinician-mri-blocked"),
                             without=("medicationRequests", "medicationStatements"))
    body = hook_request("order-select", "lrp-02", prefetch=prefetched, draft_orders=[CT_72131])
    response = await call(cds, OSEL, body, keys["es"])
    assert response.status_code == 200, response.text
    [card] = response.json()["cards"]
    assert "*Data: no medicationRequests, medicationStatements were available" in card["detail"]


async def test_a_core_key_the_fhir_server_cannot_answer_is_412(cds, keys) -> None:
    with serve(FakeEhr(data=scenario("02-clinician-mri-blocked"), unsupported=frozenset({"Observation"}))) as ehr:
        body = hook_request("order-select", "lrp-02", draft_orders=[CT_72131], fhirServer=f"{ehr.url}/fhir")
        response = await call(cds, OSEL, body, keys["es"])
    assert response.status_code == 412
    assert "Observation" in response.text
