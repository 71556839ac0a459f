"""CDS Hooks 2.0.1 service through the real app: discovery, cards, prefetch/fetch/412, JWT, feedback, CORS."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest

from tests.cds.support import (
    BASE,
    ISSUER,
    FakeEhr,
    SigningKey,
    call,
    draft_order,
    es384,
    hook_request,
    prefetch_of,
    scenario,
    serve,
)
from tests.conftest import make_settings

PV = "carepath-patient-view"
OSEL = "carepath-imaging-order-select"
OSIGN = "carepath-imaging-order-sign"
LOINC_MRI = ("http://loinc.org", "30679-5", "MR Lumbar spine WO contrast")
PHYSIO = ("http://snomed.info/sct", "306170007", "Referral to physiotherapy service")


async def test_discovery_lists_patient_view_and_order_services_with_prefetch(cds) -> None:
    response = await cds.get("/cds-services", headers={"Authorization": ""})
    assert response.status_code == 200
    services = {s["id"]: s for s in response.json()["services"]}
    assert services[PV]["hook"] == "patient-view"
    assert {services[OSEL]["hook"], services[OSIGN]["hook"]} == {"order-select", "order-sign"}
    for service in services.values():
        assert service["description"] and service["title"]
        assert service["prefetch"]["observations"] == (
            "Observation?patient={{context.patientId}}&_sort=-date&_count=500")
        assert set(service["prefetch"]) == {
            "patient", "observations", "conditions", "procedures", "serviceRequests", "diagnosticReports",
            "imagingStudies", "medicationRequests", "medicationStatements"}


async def test_patient_view_gives_a_status_card_with_source_and_evidence(cds, keys) -> None:
    groups = scenario("01-conservative-start", "lrp-01")
    response = await call(cds, PV, hook_request("patient-view", "lrp-01", prefetch=prefetch_of(groups)), keys["es"])
    assert response.status_code == 200, response.text
    [card] = response.json()["cards"]
    assert len(card["summary"]) < 140
    assert card["indicator"] == "info"
    assert card["source"]["label"] == "Carepath: lumbar radiculopathy care pathway 1.0.0"
    assert "**Start conservative care**" in card["detail"]
    assert "links" not in card and "url" not in card["source"]  # no public base URL configured
    assert "null" not in json.dumps(card)


async def test_red_flag_patient_gets_a_critical_card_with_create_suggestions(cds, keys) -> None:
    groups = scenario("03-urinary-retention", "lrp-03")
    response = await call(cds, PV, hook_request("patient-view", "lrp-03", prefetch=prefetch_of(groups)), keys["rs"])
    [card] = response.json()["cards"]
    assert card["indicator"] == "critical"
    assert card["summary"].startswith("RED FLAG")
    assert card["selectionBehavior"] == "at-most-one"
    actions = card["suggestions"][0]["actions"]
    codes = {c["code"] for a in actions for c in a["resource"]["code"]["coding"]}
    assert all(a["type"] == "create" and a["resource"]["priority"] == "stat" for a in actions)
    assert {"183866009", "30679-5"} <= codes


async def test_early_lumbar_mri_order_gets_a_warning_and_a_physiotherapy_suggestion(cds, keys) -> None:
    groups = scenario("02-clinician-mri-blocked", "lrp-02")
    mri = draft_order("draft-mri", "lrp-02", *LOINC_MRI)
    body = hook_request("order-select", "lrp-02", prefetch=prefetch_of(groups), draft_orders=[mri])
    response = await call(cds, OSEL, body, keys["es"])
    assert response.status_code == 200, response.text
    [card] = response.json()["cards"]
    assert card["indicator"] == "warning"
    assert card["summary"].startswith("MR Lumbar spine WO contrast not indicated yet: radicular pain for 10 days")
    assert "draft-mri" not in card["detail"]
    [suggestion] = card["suggestions"]
    assert card["selectionBehavior"] == "at-most-one"
    kinds = {a["type"]: a for a in suggestion["actions"]}
    assert kinds["delete"]["resourceId"] == "ServiceRequest/draft-mri"
    assert kinds["create"]["resource"]["code"]["coding"][0]["code"] == "306170007"
    assert all(r["display"] for r in card["overrideReasons"])


async def test_an_order_that_matches_the_pathway_is_silent(cds, keys) -> None:
    groups = scenario("02-clinician-mri-blocked", "lrp-02")
    physio = draft_order("draft-physio", "lrp-02", *PHYSIO)
    body = hook_request("order-sign", "lrp-02", prefetch=prefetch_of(groups), draft_orders=[physio])
    response = await call(cds, OSIGN, body, keys["es"])
    assert response.status_code == 200, response.text
    assert response.json() == {"cards": []}


async def test_invalid_prefetched_resources_are_skipped_and_named_in_the_detail(cds, keys) -> None:
    groups = scenario("01-conservative-start", "lrp-01")
    groups["observations"].append({"resourceType": "Observation", "id": "broken", "status": "nonsense",
                                   "code": {"text": "x"}, "subject": {"reference": "Patient/lrp-01"}})
    body = hook_request("patient-view", "lrp-01", prefetch=prefetch_of(groups), hookVersion="3.0",
                        futureField={"anything": True})
    response = await call(cds, PV, body, keys["es"])
    assert response.status_code == 200, response.text
    assert "1 record(s) could not be read and were left out: prefetch.observations[" in (
        response.json()["cards"][0]["detail"])


@pytest.mark.parametrize(("body", "where"), [
    (b'{"hook": "patient-view", "hookInstance": ', "malformed JSON"),
    ({"hook": "patient-view", "hookInstance": "x"}, "context"),
    ({"hook": "patient-view", "hookInstance": "x", "context": {"userId": "Practitioner/1"}}, "patientId"),
    ({"hook": "order-sign", "hookInstance": "x", "context": {"userId": "P/1", "patientId": "p"}}, "patient-view"),
    ([1, 2], "object"),
])
async def test_malformed_requests_are_refused_with_400_and_a_clear_message(cds, keys, body, where) -> None:
    response = await call(cds, PV, body, keys["es"])
    assert response.status_code == 400
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert where.lower() in json.dumps(outcome).lower()


async def test_order_hook_without_draft_orders_is_400(cds, keys) -> None:
    body = hook_request("order-select", "lrp-02", prefetch=prefetch_of(scenario("02-clinician-mri-blocked", "")))
    response = await call(cds, OSEL, body, keys["es"])
    assert response.status_code == 400
    assert "draftOrders" in response.text


async def test_missing_prefetch_without_fhir_server_is_412(cds, keys) -> None:
    prefetch = prefetch_of(scenario("01-conservative-start", "lrp-01"))
    del prefetch["observations"]
    response = await call(cds, PV, hook_request("patient-view", "lrp-01", prefetch=prefetch), keys["es"])
    assert response.status_code == 412
    assert "observations" in response.text


async def test_missing_prefetch_is_fetched_from_the_fhir_server_with_its_token(cds, keys) -> None:
    groups = scenario("03-urinary-retention", "lrp-03")
    with serve(FakeEhr(data=groups)) as ehr:
        body = hook_request("patient-view", "lrp-03", fhirServer=f"{ehr.url}/fhir", fhirAuthorization={
            "access_token": "ehr-access-token", "token_type": "Bearer", "expires_in": 300,
            "scope": "user/Observation.read user/Condition.read", "subject": "carepath"},
            prefetch={"patient": groups["patient"][0]})
        response = await call(cds, PV, body, keys["es"])
    assert response.status_code == 200, response.text
    assert response.json()["cards"][0]["indicator"] == "critical"
    paths = sorted(p.split("?")[0] for p, _ in ehr.seen)
    assert paths == ["/fhir/Condition", "/fhir/DiagnosticReport", "/fhir/ImagingStudy", "/fhir/MedicationRequest",
                     "/fhir/MedicationStatement", "/fhir/Observation", "/fhir/Procedure", "/fhir/ServiceRequest"]
    assert {auth for _, auth in ehr.seen} == {"Bearer ehr-access-token"}


@pytest.mark.parametrize("server", ["http://127.0.0.1:9/fhir", "http://[bad/fhir", "ftp://ehr/fhir"])
async def test_unreachable_fhir_server_is_412(cds, keys, server) -> None:
    body = hook_request("patient-view", "lrp-01", fhirServer=server)
    response = await call(cds, PV, body, keys["es"])
    assert response.status_code == 412


def _body() -> dict[str, Any]:
    return hook_request("patient-view", "lrp-01", prefetch=prefetch_of(scenario("01-conservative-start", "")))


async def test_missing_or_wrong_tokens_are_401(cds, keys) -> None:
    url = f"{BASE}/cds-services/{PV}"
    es = keys["es"]
    now = __import__("time").time()
    cases = {
        "missing": None,
        "wrong audience": es.token(f"{BASE}/cds-services/other"),
        "wrong issuer": es.token(url, iss="https://evil.example.org"),
        "expired": es.token(url, exp_in=-3600),
        "unknown kid": SigningKey("stranger", "ES384", es384().private).token(url),
        "forged signature": es384(es.kid).token(url),
        "hmac": jwt.encode({"iss": ISSUER, "aud": url, "exp": now + 300, "iat": now, "jti": "h"},
                           "secret" * 8, algorithm="HS256", headers={"kid": es.kid}),
        "none": jwt.encode({"iss": ISSUER, "aud": url, "exp": now + 300, "iat": now, "jti": "n"},
                           None, algorithm="none", headers={"kid": es.kid}),
        "garbage": "not.a.jwt",
        "jku not allowed": es.token(url, jku="https://evil.example.org/jwks.json"),
    }
    for name, token in cases.items():
        headers = {"Authorization": f"Bearer {token}" if token else "", "Content-Type": "application/json"}
        response = await cds.post(url, content=json.dumps(_body()), headers=headers)
        assert response.status_code == 401, name
        assert response.json()["resourceType"] == "OperationOutcome", name


async def test_a_replayed_jti_is_refused(cds, keys) -> None:
    url = f"{BASE}/cds-services/{PV}"
    token = keys["es"].token(url)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    first = await cds.post(url, content=json.dumps(_body()), headers=headers)
    second = await cds.post(url, content=json.dumps(_body()), headers=headers)
    assert first.status_code == 200
    assert second.status_code == 401
    assert "replayed" in second.text


async def test_a_jwt_sent_several_times_at_once_is_accepted_once(client_for, database_url: str,
                                                                jwks_file: Path, keys) -> None:
    cds = await client_for(make_settings(database_url, cds_allowed_issuers=[ISSUER], cds_jwks_file=jwks_file))
    url = f"{BASE}/cds-services/{PV}"
    token = keys["es"].token(url)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    body = json.dumps(_body())
    same = await asyncio.gather(*(cds.post(url, content=body, headers=headers) for _ in range(6)))
    assert sorted(r.status_code for r in same) == [200] + [401] * 5
    assert all("replayed" in r.text for r in same if r.status_code == 401)
    distinct = await asyncio.gather(*(call(cds, PV, _body(), keys["es"]) for _ in range(6)))
    assert [r.status_code for r in distinct] == [200] * 6


async def test_keys_from_an_allow_listed_jku_are_fetched(client_for, sqlite_url: str) -> None:
    key = es384("rotating")
    with serve(FakeEhr(jwks={"keys": [key.jwk()]})) as ehr:
        jku = f"{ehr.url}/jwks.json"
        client = await client_for(make_settings(sqlite_url, cds_allowed_issuers=[ISSUER], cds_allowed_jku=[jku]))
        ok = await call(client, PV, _body(), key, jku=jku)
        again = await call(client, PV, _body(), key, jku=jku)
        no_jku = await call(client, PV, _body(), key)
    assert ok.status_code == 200 and again.status_code == 200
    assert sum(p.startswith("/jwks.json") for p, _ in ehr.seen) == 1  # cached
    assert no_jku.status_code == 401


async def test_without_configured_issuers_every_call_is_refused(client, keys) -> None:
    response = await call(client, PV, _body(), keys["es"])
    assert response.status_code == 401
    assert "CAREPATH_CDS_ALLOWED_ISSUERS" in response.text


async def test_feedback_is_recorded_once_and_queryable(cds, keys) -> None:
    card = str(uuid.uuid4())
    feedback = {"feedback": [
        {"card": card, "outcome": "overridden", "outcomeTimestamp": "2026-03-02T09:05:00Z",
         "overrideReason": {"reason": {"code": "patient-preference", "display": "Patient preference",
                                       "system": "http://carepath.example.org/fhir/CodeSystem/override-reason"},
                            "userComment": "wants a scan now"}},
        {"card": card, "outcome": "accepted", "outcomeTimestamp": "2026-03-02T09:06:00Z",
         "acceptedSuggestions": [{"id": "s-1"}], "extraField": 1}]}
    for _ in range(2):
        response = await call(cds, f"{OSEL}/feedback", feedback, keys["es"])
        assert response.status_code == 200, response.text
    listed = await cds.get(f"/cds-services/{OSEL}/feedback")
    items = listed.json()["feedback"]
    assert [i["outcome"] for i in items] == ["overridden", "accepted"]
    assert items[0]["overrideReason"]["userComment"] == "wants a scan now"
    assert items[1]["acceptedSuggestions"] == [{"id": "s-1"}]
    assert (await cds.get(f"/cds-services/{OSEL}/feedback", headers={"Authorization": "Bearer x"})).status_code == 401
    bad = await call(cds, f"{OSEL}/feedback", {"feedback": [{"card": card, "outcome": "ignored"}]}, keys["es"])
    assert bad.status_code == 400


async def test_cors_is_offered_on_cds_services_only(cds) -> None:
    preflight = {"Origin": "https://ehr.example.org", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization, content-type"}
    response = await cds.options(f"/cds-services/{PV}", headers=preflight)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://ehr.example.org"
    assert "POST" in response.headers["access-control-allow-methods"]
    listing = await cds.get("/cds-services", headers={"Origin": "https://ehr.example.org"})
    assert listing.headers["access-control-allow-origin"] == "https://ehr.example.org"
    fhir = await cds.get("/fhir/metadata", headers={"Origin": "https://ehr.example.org"})
    assert "access-control-allow-origin" not in fhir.headers


async def test_unknown_service_is_404(cds, keys) -> None:
    response = await call(cds, "nope", _body(), keys["es"])
    assert response.status_code == 404


@pytest.mark.postgres
async def test_replay_and_feedback_work_on_postgresql(client_for, postgres_url: str, jwks_file: Path,
                                                        keys) -> None:
    client = await client_for(make_settings(postgres_url, cds_allowed_issuers=[ISSUER], cds_jwks_file=jwks_file))
    url = f"{BASE}/cds-services/{PV}"
    headers = {"Authorization": f"Bearer {keys['rs'].token(url)}", "Content-Type": "application/json"}
    assert (await client.post(url, content=json.dumps(_body()), headers=headers)).status_code == 200
    assert (await client.post(url, content=json.dumps(_body()), headers=headers)).status_code == 401
    feedback = {"feedback": [{"card": "c-1", "outcome": "accepted", "outcomeTimestamp": "2026-03-02T09:06:00Z",
                              "acceptedSuggestions": [{"id": "s-1"}]}]}
    for _ in range(2):
        assert (await call(client, f"{PV}/feedback", feedback, keys["es"])).status_code == 200
    listed = (await client.get(f"/cds-services/{PV}/feedback")).json()["feedback"]
    assert len(listed) == 1
