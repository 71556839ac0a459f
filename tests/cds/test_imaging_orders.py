"""Lumbar imaging orders as EHRs send them: every coding (CPT, LOINC, SNOMED CT, a site's own code),
the specification's and the PAMA connectathon's request shapes, orders without ids, and cards a
clinician can read in seconds."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.cds.support import (
    BASE,
    ISSUER,
    FakeEhr,
    call,
    hook_request,
    prefetch_of,
    scenario,
    serve,
)
from tests.conftest import ROOT, make_settings

OSEL = "carepath-imaging-order-select"
OSIGN = "carepath-imaging-order-sign"
CORPUS = ROOT.parent / "shared" / "corpora" / "cds-hooks"
CPT = "http://www.ama-assn.org/go/cpt"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
SITE = "http://example.org/CodeSystem/site-orderables"


def corpus(name: str) -> dict[str, Any]:
    return json.loads((CORPUS / name).read_text())


def as_patient(groups: dict[str, list[dict[str, Any]]], old: str, new: str) -> dict[str, list[dict[str, Any]]]:
    """The same record for another patient id (the corpus requests name their own patients)."""
    return json.loads(json.dumps(groups).replace(f'"Patient/{old}"', f'"Patient/{new}"')
                      .replace(f'"id": "{old}"', f'"id": "{new}"'))


def coded_order(code: tuple[str, str], rid: str | None = "draft-1", text: str | None = None,
                  patient: str = "lrp-02") -> dict[str, Any]:
    """A draft order coded only by system and code, as a US EHR sends a CPT-coded order."""
    order: dict[str, Any] = {"resourceType": "ServiceRequest", "status": "draft", "intent": "order",
                             "code": {"coding": [{"system": code[0], "code": code[1]}]},
                             "subject": {"reference": f"Patient/{patient}"}}
    if text:
        order["code"]["text"] = text
    if rid:
        order["id"] = rid
    return order


def day10_prefetch() -> dict[str, Any]:
    """Scenario 2: day 10 of a lumbar radiculopathy, no red flags, physiotherapy not yet started."""
    return prefetch_of(scenario("02-clinician-mri-blocked"))


def only_card(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    cards = response.json()["cards"]
    assert len(cards) == 1, cards
    return cards[0]  # type: ignore[no-any-return]


def actions(card: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for action in card["suggestions"][0]["actions"]:
        found.setdefault(action["type"], []).append(action)
    return found


@pytest.mark.parametrize(("code", "named"), [
    ((CPT, "72133"), "CT lumbar spine without and with contrast (CPT 72133)"),
    ((CPT, "72131"), "CT lumbar spine without contrast (CPT 72131)"),
    ((CPT, "72100"), "X-ray lumbosacral spine, 2 or 3 views (CPT 72100)"),
    ((CPT, "72148"), "MRI lumbar spine without contrast (CPT 72148)"),
    ((LOINC, "30679-5"), "MRI lumbar spine without contrast (LOINC 30679-5)"),
    ((LOINC, "30620-9"), "CT lumbar spine without contrast (LOINC 30620-9)"),
    ((SNOMED, "433141005"), "MRI lumbar and sacral spine (SNOMED CT 433141005)"),
    ((SNOMED, "22791004"), "X-ray lumbar and sacral spine (SNOMED CT 22791004)"),
    ((SITE, "IMG-LSPINE-CT"), f"CT lumbar spine (code IMG-LSPINE-CT ({SITE}))"),
])
async def test_every_coding_of_a_lumbar_imaging_order_gets_the_imaging_gate_card(cds, keys, code, named) -> None:
    body = hook_request("order-sign", "lrp-02", prefetch=day10_prefetch(), draft_orders=[coded_order(code)])
    card = only_card(await call(cds, OSIGN, body, keys["es"]))
    assert card["indicator"] == "warning"
    assert card["summary"] == (f"{named.split(' (')[0]} not indicated yet: radicular pain for 10 days, "
                               "no red flags")
    assert f"**Ordered**\n- {named}\n" in card["detail"]
    assert actions(card)["delete"] == [{"type": "delete", "resourceId": "ServiceRequest/draft-1",
                                        "description": f"Remove the draft order: {named}"}]
    assert actions(card)["create"][0]["resource"]["code"]["coding"][0]["code"] == "306170007"


async def test_a_matching_code_is_not_recognised_under_another_system(cds, keys) -> None:
    """Codes match on system and code: CPT 72133 sent as a LOINC code is not a lumbar CT."""
    body = hook_request("order-sign", "lrp-02", prefetch=day10_prefetch(),
                        draft_orders=[coded_order((LOINC, "72133"))])
    response = await call(cds, OSIGN, body, keys["es"])
    assert response.json() == {"cards": []}


async def test_the_pama_connectathon_request_gets_a_card_naming_the_lumbar_ct(cds, keys) -> None:
    """The Argonaut PAMA request as sent (CPT 72133, intent plan, no prefetch), its fhirServer
    serving day 10 of a radiculopathy for its patient."""
    body = corpus("pama-scenario-01-outbound-request.json")
    record = as_patient(scenario("02-clinician-mri-blocked"), "lrp-02", "MRI-59879846")
    with serve(FakeEhr(data=record)) as ehr:
        body["fhirServer"] = f"{ehr.url}/fhir"
        card = only_card(await call(cds, OSEL, body, keys["es"]))
    assert card["summary"] == "Lumbar spine CT not indicated yet: radicular pain for 10 days, no red flags"
    assert "- Lumbar spine CT (CPT 72133)" in card["detail"]
    assert actions(card)["delete"][0]["resourceId"] == "ServiceRequest/example-MRI-59879846"
    assert {p.split("?")[0] for p, _ in ehr.seen} >= {"/fhir/Patient/MRI-59879846", "/fhir/ServiceRequest"}


async def test_the_specification_order_select_example_without_imaging_is_silent(cds, keys) -> None:
    """The spec's basket (a pureed diet and an antibiotic) holds no imaging: no card, no error."""
    body = corpus("spec-order-select-example.json")
    body.update(hook="order-select", hookInstance="d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
                prefetch=prefetch_of(as_patient(scenario("02-clinician-mri-blocked"), "lrp-02", "1288992")))
    response = await call(cds, OSEL, body, keys["es"])
    assert response.status_code == 200, response.text
    assert response.json() == {"cards": []}


async def test_a_lumbar_ct_without_id_in_the_specification_basket_is_identified_by_its_position(cds, keys) -> None:
    body = corpus("spec-order-select-example.json")
    body["context"]["draftOrders"]["entry"].append(
        {"resource": coded_order((CPT, "72131"), rid=None, patient="1288992")})
    body.update(hook="order-select", hookInstance="3d0a3b8e-6a86-4a5e-8a0c-1b7d3b0f6c11",
                prefetch=prefetch_of(as_patient(scenario("02-clinician-mri-blocked"), "lrp-02", "1288992")))
    card = only_card(await call(cds, OSEL, body, keys["es"]))
    assert card["summary"].startswith("CT lumbar spine without contrast not indicated yet")
    assert ("- CT lumbar spine without contrast (CPT 72131) (order 3 in this list; the EHR gave it no id, "
            "so remove it by hand)") in card["detail"]
    assert set(actions(card)) == {"create"}  # no reference an EHR could apply to delete it
    assert card["suggestions"][0]["label"] == "Refer to physiotherapy instead"


@pytest.mark.parametrize(("full_url", "resource_id"), [
    ("urn:uuid:0c3b5a3e-57a4-4e07-9f6a-3b1c2e9d4f10", "urn:uuid:0c3b5a3e-57a4-4e07-9f6a-3b1c2e9d4f10"),
    ("https://ehr.example.org/fhir/ServiceRequest/basket-7", "ServiceRequest/basket-7"),
])
async def test_an_order_without_id_is_named_by_its_full_url_in_the_delete_action(cds, keys, full_url,
                                                                                 resource_id) -> None:
    body = hook_request("order-sign", "lrp-02", prefetch=day10_prefetch(), draft_orders=[])
    body["context"]["draftOrders"]["entry"] = [
        {"fullUrl": full_url, "resource": coded_order((CPT, "72148"), rid=None)}]
    card = only_card(await call(cds, OSIGN, body, keys["es"]))
    assert actions(card)["delete"][0]["resourceId"] == resource_id
    assert "remove it by hand" not in card["detail"]


async def test_two_imaging_orders_without_ids_are_both_named(cds, keys) -> None:
    orders = [coded_order((CPT, "72100"), rid=None), coded_order((LOINC, "30679-5"), rid=None)]
    body = hook_request("order-sign", "lrp-02", prefetch=day10_prefetch(), draft_orders=[])
    body["context"]["draftOrders"]["entry"] = [{"resource": o} for o in orders]
    card = only_card(await call(cds, OSIGN, body, keys["es"]))
    assert card["summary"].startswith("2 lumbar imaging orders not indicated yet")
    assert "X-ray lumbosacral spine, 2 or 3 views (CPT 72100) (order 1" in card["detail"]
    assert "MRI lumbar spine without contrast (LOINC 30679-5) (order 2" in card["detail"]


async def test_the_imaging_gate_card_speaks_plain_clinical_language(cds, keys) -> None:
    body = hook_request("order-select", "lrp-02", prefetch=day10_prefetch(),
                        draft_orders=[coded_order((CPT, "72133"), text="CT L-spine w/o+w contrast")])
    card = only_card(await call(cds, OSEL, body, keys["es"]))
    detail = card["detail"]
    assert len(card["summary"]) < 140
    assert card["summary"] == "CT L-spine w/o+w contrast not indicated yet: radicular pain for 10 days, no red flags"
    assert ("- Radicular symptoms since 20 Feb 2026 (10 days): Intervertebral disc disorders with "
            "radiculopathy, lumbar region (ICD-10-CM M51.16).") in detail
    assert ("- Red-flag screen on 23 Feb 2026: saddle / perianal / perineal / genital sensory change absent; "
            "bladder symptom screen absent; bowel symptom / loss of rectal-fullness sensation absent.") in detail
    assert "NICE NG59 1.1.4-1.1.6; ACR V1-V3; HEDIS/CMS166 (no imaging within 28 days)" in detail
    assert "- Reassess from 3 Apr 2026 (6 weeks)" in detail
    assert "**Instead**\n- Refer to physiotherapy (suggested below)" in detail
    for leak in ("Observation/", "Condition/", "ServiceRequest/", "02-radic", "draft-1", "lumbar_imaging",
                 "R5", "PD", "met"):
        assert not re.search(rf"\b{re.escape(leak)}", detail), leak


async def test_a_red_flag_patient_ordering_lumbar_imaging_gets_the_critical_card_not_the_gate(cds, keys) -> None:
    body = hook_request("order-select", "lrp-03", prefetch=prefetch_of(scenario("03-urinary-retention")),
                        draft_orders=[coded_order((CPT, "72148"), patient="lrp-03")])
    card = only_card(await call(cds, OSEL, body, keys["es"]))
    assert card["indicator"] == "critical"
    assert card["summary"].startswith("RED FLAG")
    assert "not indicated yet" not in json.dumps(card)


async def test_an_invalid_draft_order_is_refused_where_it_is(cds, keys) -> None:
    order = coded_order((CPT, "72131"))
    order["status"] = "pending"
    body = hook_request("order-sign", "lrp-02", prefetch=day10_prefetch(), draft_orders=[order])
    response = await call(cds, OSIGN, body, keys["es"])
    assert response.status_code in (400, 422)
    assert "context.draftOrders.entry[0].resource.status" in json.dumps(response.json())


async def test_a_draft_order_for_another_patient_is_refused(cds, keys) -> None:
    body = hook_request("order-sign", "lrp-02", prefetch=day10_prefetch(),
                        draft_orders=[coded_order((CPT, "72131"), patient="someone-else")])
    response = await call(cds, OSIGN, body, keys["es"])
    assert response.status_code == 400
    assert "context.draftOrders.entry[0].resource.subject" in response.text


async def test_with_a_public_base_url_cards_link_to_the_clinician_view_as_a_smart_app(
        client_for, sqlite_url: str, jwks_file: Path, keys) -> None:
    client = await client_for(make_settings(sqlite_url, cds_allowed_issuers=[ISSUER], cds_jwks_file=jwks_file,
                                            base_url=BASE))
    body = hook_request("order-select", "lrp-02", prefetch=day10_prefetch(),
                        draft_orders=[coded_order((CPT, "72133"))])
    card = only_card(await call(client, OSEL, body, keys["es"]))
    assert card["links"] == [{"label": "Open the Carepath clinician view (pathway, evidence, timeline)",
                              "url": f"{BASE}/app/launch", "type": "smart"}]
    assert card["source"]["url"] == f"{BASE}/fhir/PlanDefinition/lumbar-radiculopathy"
    assert "example.org" not in json.dumps([card["links"], card["source"]["url"]])



@pytest.mark.parametrize(("selected", "cards"), [("mri", 1), ("physio", 0)])
async def test_order_select_judges_the_orders_just_selected(cds, keys, selected, cards) -> None:
    """An MRI already in the basket is not warned about again when physiotherapy is selected."""
    physio = coded_order((SNOMED, "306170007"), rid="physio")
    body = hook_request("order-select", "lrp-02", prefetch=day10_prefetch(),
                        draft_orders=[coded_order((CPT, "72148"), rid="mri"), physio])
    body["context"]["selections"] = [f"ServiceRequest/{selected}"]
    response = await call(cds, OSEL, body, keys["es"])
    assert response.status_code == 200, response.text
    assert len(response.json()["cards"]) == cards
    signed = hook_request("order-sign", "lrp-02", prefetch=day10_prefetch(),
                          draft_orders=[coded_order((CPT, "72148"), rid="mri"), physio])
    assert len((await call(cds, OSIGN, signed, keys["es"])).json()["cards"]) == 1


async def test_when_treatment_response_cannot_be_judged_the_card_says_what_is_missing(cds, keys) -> None:
    """Scenario 13: day 45, no pain or ODI score in 14 days: the gate holds, for want of data."""
    body = hook_request("order-sign", "lrp-13", prefetch=prefetch_of(scenario("13-r7-stale-outcomes")),
                        draft_orders=[coded_order((CPT, "72131"), patient="lrp-13")])
    card = only_card(await call(cds, OSIGN, body, keys["es"]))
    assert card["summary"] == ("CT lumbar spine without contrast not indicated yet: no red flags; the response "
                               "to treatment cannot be judged yet")
    assert "- Failed conservative care cannot be judged yet: no pain NRS or ODI in the last 14 days" in card["detail"]
    assert "- Record the missing scores, then reassess" in card["detail"]


async def test_a_draft_order_replaces_its_earlier_version_from_the_prefetch(cds, keys) -> None:
    """The EHR prefetched the order as an MRI; the clinician changed it to physiotherapy."""
    groups = scenario("02-clinician-mri-blocked")
    groups["serviceRequests"].append(coded_order((CPT, "72148"), rid="order-9"))
    body = hook_request("order-select", "lrp-02", prefetch=prefetch_of(groups),
                        draft_orders=[coded_order((SNOMED, "306170007"), rid="order-9")])
    response = await call(cds, OSEL, body, keys["es"])
    assert response.status_code == 200, response.text
    assert response.json() == {"cards": []}
