"""Inbound webhooks: the shapes integration engines send, authenticated, durable and idempotent."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa

from service.adapters import tables as t
from tests.support.scenarios import stable
from tests.webhooks.support import (
    SECRET,
    SUBSCRIPTION,
    bearer,
    dumps,
    expected,
    fixture_path,
    medplum_headers,
    notification,
    scenario_resources,
    settings_with_sources,
    standard_headers,
)

HOOK = "/webhooks/engine/subscription"
CES = "03-urinary-retention"


async def _count(client: httpx.AsyncClient, table: sa.Table) -> int:
    async with client.app.state.services.engine.connect() as conn:  # type: ignore[attr-defined]
        return int((await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one())


async def _outputs(client: httpx.AsyncClient, kind: str, patient: str) -> list[dict[str, Any]]:
    found = (await client.get(f"/fhir/{kind}", params={"subject": f"Patient/{patient}"})).json()
    return [e["resource"] for e in found.get("entry", [])]


def _diagnostics(response: httpx.Response) -> str:
    return " | ".join(i.get("diagnostics", "") for i in response.json()["issue"])


async def test_handshake_and_heartbeat_are_acknowledged_and_the_stream_recorded(
        client_for, sqlite_url):
    client = await client_for(settings_with_sources(sqlite_url))
    shake = await client.post(HOOK, content=fixture_path("subscription.handshake.json")
                              .read_bytes(), headers=bearer())
    assert shake.status_code == 200, shake.text
    assert "handshake acknowledged" in _diagnostics(shake)
    beat = await client.post(HOOK, content=dumps(notification("heartbeat", since_start=0)),
                             headers=bearer())
    assert beat.status_code == 200
    streams = (await client.get("/admin/subscriptions")).json()
    assert streams["streams"] == [{"source": "engine", "subscription": SUBSCRIPTION,
                                   "lastEventNumber": 0, "status": "active",
                                   "updatedAt": streams["streams"][0]["updatedAt"]}]
    assert streams["gaps"] == []


async def test_a_full_resource_notification_gives_the_same_decision_as_the_fhir_api(
        client_for, sqlite_url):
    """Scenario 03 (suspected cauda equina) pushed by a FHIR server instead of posted (the
    notification in fixtures/fhir/webhooks/): the CarePlan and stat ServiceRequests equal the
    reviewed golden outputs of the scenario."""
    client = await client_for(settings_with_sources(sqlite_url))
    body = fixture_path("subscription.event-notification.full-resource.json").read_bytes()
    assert [e["resource"] for e in orjson.loads(body)["entry"][1:]] == scenario_resources(CES)
    response = await client.post(HOOK, content=body, headers=bearer())
    assert response.status_code == 202, response.text
    assert "stored Observation/03-bowel-d2/_history/1" in _diagnostics(response)
    assert stable(await _outputs(client, "ServiceRequest", "lrp-03")) == \
        expected(CES, "servicerequests")
    assert stable(await _outputs(client, "CarePlan", "lrp-03")) == expected(CES, "careplan")


async def test_a_redelivered_notification_changes_nothing(client_for, sqlite_url):
    client = await client_for(settings_with_sources(sqlite_url))
    resources = [{**r, "meta": {"versionId": "1", "lastUpdated": "2026-03-02T08:30:00Z"}}
                 for r in scenario_resources(CES)]
    body = dumps(notification("event-notification", since_start=1, events=[(1, None)],
                              resources=resources))
    assert (await client.post(HOOK, content=body, headers=bearer())).status_code == 202
    evaluations = await _count(client, t.evaluations)
    before = await _outputs(client, "CarePlan", "lrp-03")
    again = await client.post(HOOK, content=body, headers=bearer())
    assert again.status_code == 200, again.text
    assert "already received (duplicate delivery)" in _diagnostics(again)
    assert await _count(client, t.evaluations) == evaluations
    assert await _outputs(client, "CarePlan", "lrp-03") == before
    assert await _count(client, t.receipts) == len(resources)


def _pain(version: str, updated: str, value: int) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": "ooo-nrs", "status": "final",
            "meta": {"versionId": version, "lastUpdated": updated},
            "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3"}]},
            "subject": {"reference": "Patient/ooo"}, "effectiveDateTime": "2026-03-01T08:00:00Z",
            "valueQuantity": {"value": value, "unit": "{score}",
                              "system": "http://unitsofmeasure.org", "code": "{score}"}}


async def test_an_older_version_arriving_late_does_not_overwrite_the_newer(client_for, sqlite_url):
    client = await client_for(settings_with_sources(sqlite_url))
    newer, older = _pain("2", "2026-03-01T09:00:00Z", 8), _pain("1", "2026-03-01T08:10:00Z", 3)
    for version, number in ((newer, 2), (older, 1)):
        body = notification("event-notification", events=[(number, None)], resources=[version])
        response = await client.post(HOOK, content=dumps(body), headers=bearer())
        assert response.status_code in (200, 202), response.text
    assert "older than version 2 already received" in _diagnostics(response)
    stored = (await client.get("/fhir/Observation/ooo-nrs")).json()
    assert stored["valueQuantity"]["value"] == 8


async def test_forged_unsigned_and_unknown_deliveries_get_401_and_store_nothing(
        client_for, sqlite_url):
    client = await client_for(settings_with_sources(sqlite_url))
    body = dumps(notification("event-notification", events=[(1, None)],
                              resources=scenario_resources(CES)))
    tries = [
        (HOOK, bearer("not-the-secret-at-all")),
        (HOOK, {"Content-Type": "application/fhir+json"}),
        (HOOK, {**medplum_headers(body, "another-secret-000000"), "Authorization": ""}),
        ("/webhooks/stranger/subscription", bearer()),
        ("/webhooks/engine/resource", medplum_headers(body + b" ")),  # signed other bytes
        ("/webhooks/engine/json", standard_headers(body, secret="whsec_" + "A" * 40)),
    ]
    for path, headers in tries:
        response = await client.post(path, content=body, headers=headers)
        assert response.status_code == 401, (path, response.text)
        assert response.json()["resourceType"] == "OperationOutcome"
        assert response.json()["issue"][0]["code"] == "login"
    assert await _count(client, t.resources) == 0
    assert await _count(client, t.receipts) == 0


async def test_oversized_malformed_and_non_notification_bodies_are_refused(client_for, sqlite_url):
    client = await client_for(settings_with_sources(sqlite_url, max_body_bytes=2048))
    big = dumps(notification("event-notification", events=[(1, None)],
                             resources=scenario_resources(CES)))
    response = await client.post(HOOK, content=big, headers=bearer())
    assert response.status_code == 413
    assert "exceeds the limit of 2048 bytes" in _diagnostics(response)
    response = await client.post(HOOK, content=b'{"resourceType": "Bundle",', headers=bearer())
    assert response.status_code == 400 and "malformed JSON" in _diagnostics(response)
    response = await client.post(HOOK, content=dumps({"resourceType": "Bundle", "type": "history",
                                                      "entry": []}), headers=bearer())
    assert response.status_code == 400
    assert "first entry must be a Parameters" in _diagnostics(response)
    bad_number = notification("event-notification", events=[(1, None)])
    bad_number["entry"][0]["resource"]["parameter"][-1]["part"][0]["valueString"] = "one"
    response = await client.post(HOOK, content=dumps(bad_number), headers=bearer())
    assert response.status_code == 400 and "is not an event number" in _diagnostics(response)
    assert await _count(client, t.resources) == 0


async def test_an_invalid_resource_is_named_and_the_valid_ones_kept(client_for, sqlite_url):
    client = await client_for(settings_with_sources(sqlite_url))
    good = _pain("1", "2026-03-01T08:10:00Z", 5)
    bad = {**_pain("1", "2026-03-01T08:10:00Z", 5), "id": "bad-nrs", "status": "finished"}
    encounter = {"resourceType": "Encounter", "id": "enc-1", "status": "finished",
                 "class": {"code": "AMB"}}
    body = notification("event-notification", events=[(1, None)],
                        resources=[good, bad, encounter])
    response = await client.post(HOOK, content=dumps(body), headers=bearer())
    assert response.status_code == 422, response.text
    issues = response.json()["issue"]
    errors = [i for i in issues if i["severity"] == "error"]
    assert errors and all(i["expression"][0].startswith("Bundle.entry[1].resource.")
                          for i in errors)
    assert "stored Observation/ooo-nrs/_history/1" in _diagnostics(response)
    assert "Encounter/enc-1 is not used by this pathway; skipped" in _diagnostics(response)
    assert (await client.get("/fhir/Observation/bad-nrs")).status_code == 404


async def test_id_only_notifications_are_fetched_from_the_sources_server(
        client_for, sqlite_url, fhir_peer):
    resources = scenario_resources(CES)
    for r in resources:
        httpx.put(f"{fhir_peer.url}/{r['resourceType']}/{r['id']}", json=r).raise_for_status()
    client = await client_for(settings_with_sources(sqlite_url, fhir_server=fhir_peer.url))
    refs = [f"{fhir_peer.url}/{r['resourceType']}/{r['id']}" for r in resources]
    body = notification("event-notification", since_start=1, events=[(1, refs[-1])],
                        references=refs)
    response = await client.post(HOOK, content=dumps(body), headers=bearer())
    assert response.status_code == 202, response.text
    assert fhir_peer.state()["calls"]["GET Observation"] >= 1
    assert stable(await _outputs(client, "ServiceRequest", "lrp-03")) == \
        expected(CES, "servicerequests")

    elsewhere = notification("event-notification", events=[(2, None)],
                             references=["http://169.254.169.254/latest/Observation/x"])
    refused = await client.post(HOOK, content=dumps(elsewhere), headers=bearer())
    assert refused.status_code == 422
    assert "refusing to fetch it" in _diagnostics(refused)


async def test_id_only_without_a_configured_server_or_with_it_down(
        client_for, sqlite_url, fhir_peer):
    client = await client_for(settings_with_sources(sqlite_url))
    body = dumps(notification("event-notification", events=[(1, None)],
                              references=["https://ehr.example/fhir/Observation/o1"]))
    response = await client.post(HOOK, content=body, headers=bearer())
    assert response.status_code == 422 and "has no fhir_server configured" in _diagnostics(response)

    down = await client_for(settings_with_sources(sqlite_url, fhir_server=fhir_peer.url))
    fhir_peer.control(statuses=[503])
    body = dumps(notification("event-notification", events=[(1, None)],
                              references=[f"{fhir_peer.url}/Observation/o1"]))
    response = await down.post(HOOK, content=body, headers=bearer())
    assert response.status_code == 502
    assert "could not fetch Observation/o1" in _diagnostics(response)
    streams = (await down.get("/admin/subscriptions")).json()["streams"]
    assert streams == [], "an event whose resource was not fetched must not count as received"


async def test_event_number_gaps_are_recorded_and_recovered_through_events(
        client_for, sqlite_url, fhir_peer):
    lost = [_pain("1", "2026-03-01T08:10:00Z", 4 + n) | {"id": f"lost-{n}"} for n in (2, 3)]
    for r in lost:
        httpx.put(f"{fhir_peer.url}/Observation/{r['id']}", json=r).raise_for_status()
    fhir_peer.control(subscriptionEvents={"sub-1": [
        {"number": 2, "focus": "Observation/lost-2"},
        {"number": 3, "focus": "Observation/lost-3"}]})
    client = await client_for(settings_with_sources(sqlite_url, fhir_server=fhir_peer.url))
    subscription = f"{fhir_peer.url}/Subscription/sub-1"
    await client.post(HOOK, headers=bearer(), content=dumps(
        notification("handshake", since_start=0, subscription=subscription)))
    first = _pain("1", "2026-03-01T08:10:00Z", 5) | {"id": "got-1"}
    fourth = _pain("1", "2026-03-01T08:10:00Z", 6) | {"id": "got-4"}
    for number, resource in ((1, first), (4, fourth)):
        response = await client.post(HOOK, headers=bearer(), content=dumps(notification(
            "event-notification", since_start=number, subscription=subscription,
            events=[(number, None)], resources=[resource])))
        assert response.status_code == 202, response.text
    assert "events 2..3 of" in _diagnostics(response)
    report = (await client.get("/admin/subscriptions")).json()
    assert [(g["firstMissing"], g["lastMissing"]) for g in report["gaps"]] == [(2, 3)]
    assert report["gaps"][0]["recoveredAt"] is not None, "recovered through $events"
    for r in lost:
        assert (await client.get(f"/fhir/Observation/{r['id']}")).status_code == 200
    assert report["streams"][0]["lastEventNumber"] == 4


async def test_a_gap_stays_open_when_the_server_lacks_events_and_late_arrivals_shrink_it(
        client_for, sqlite_url, fhir_peer):
    client = await client_for(settings_with_sources(sqlite_url, fhir_server=fhir_peer.url))
    for number in (1, 5):
        await client.post(HOOK, headers=bearer(), content=dumps(notification(
            "event-notification", events=[(number, None)])))
    await client.post(HOOK, headers=bearer(), content=dumps(notification(
        "event-notification", events=[(3, None)])))
    gaps = (await client.get("/admin/subscriptions")).json()["gaps"]
    assert sorted((g["firstMissing"], g["lastMissing"]) for g in gaps) == [(2, 2), (4, 4)]
    assert all(g["recoveredAt"] is None for g in gaps)
    beat = await client.post(HOOK, headers=bearer(), content=dumps(notification(
        "heartbeat", since_start=7)))
    assert "events 6..7 of" in _diagnostics(beat)
    retry = (await client.post("/admin/subscriptions/recover")).json()
    assert retry["open"] == 3 and any("$events failed" in n for n in retry["notes"])


async def test_a_medplum_style_resource_and_its_deletion(client_for, sqlite_url):
    client = await client_for(settings_with_sources(sqlite_url))
    resources = scenario_resources(CES)
    for resource in resources:
        body = dumps(resource)
        response = await client.post("/webhooks/engine/resource", content=body,
                                     headers=medplum_headers(body))
        assert response.status_code in (200, 202), response.text
    # One at a time, a routine referral is proposed before the red flags arrive, then revoked.
    requests = stable(await _outputs(client, "ServiceRequest", "lrp-03"))
    assert [r for r in requests if r["status"] != "revoked"] == expected(CES, "servicerequests")
    assert [r["priority"] for r in requests if r["status"] == "revoked"] == ["routine"]
    deletion = {**medplum_headers(b"{}"), "X-Medplum-Deleted-Resource": "Observation/03-bowel-d2",
                "X-Medplum-Interaction": "delete"}
    evaluations = await _count(client, t.evaluations)
    response = await client.post("/webhooks/engine/resource", content=b"{}", headers=deletion)
    assert response.status_code == 202, response.text
    assert await _count(client, t.evaluations) == evaluations + 1, "its patient is re-evaluated"
    assert (await client.get("/fhir/Observation/03-bowel-d2")).status_code == 410  # deleted: Gone
    async with client.app.state.services.engine.connect() as conn:  # type: ignore[attr-defined]
        actions = [r.action for r in await conn.execute(sa.select(t.audit_log.c.action))]
    assert "webhook-delete" in actions


async def test_standard_webhooks_json_with_a_bundle(client_for, sqlite_url):
    client = await client_for(settings_with_sources(sqlite_url))
    payload = {"type": "fhir.bundle", "timestamp": "2026-03-02T09:00:00Z", "data": {
        "resourceType": "Bundle", "type": "collection",
        "entry": [{"resource": r} for r in scenario_resources(CES)]}}
    body = dumps(payload)
    response = await client.post("/webhooks/engine/json", content=body,
                                 headers=standard_headers(body))
    assert response.status_code == 202, response.text
    assert stable(await _outputs(client, "CarePlan", "lrp-03")) == expected(CES, "careplan")

    stale = standard_headers(body, msg_id="msg_2", at=datetime.now(UTC) - timedelta(minutes=10))
    response = await client.post("/webhooks/engine/json", content=body, headers=stale)
    assert response.status_code == 401 and "too old" in _diagnostics(response)


async def test_an_unchanged_resource_from_another_sender_is_not_a_duplicate_receipt(
        client_for, sqlite_url):
    """Receipts are per source: the same resource from a second engine is received (and stored
    unchanged), not rejected."""
    from service.config import WebhookSource

    sources = [WebhookSource(name=n, secrets=[SECRET]) for n in ("engine", "other")]
    client = await client_for(settings_with_sources(sqlite_url) .model_copy(
        update={"webhook_sources": sources}))
    body = dumps(_pain("1", "2026-03-01T08:10:00Z", 5))
    first = await client.post("/webhooks/engine/resource", content=body,
                              headers=medplum_headers(body))
    second = await client.post("/webhooks/other/resource", content=body,
                               headers=medplum_headers(body))
    assert (first.status_code, second.status_code) == (202, 200)
    assert "(unchanged)" in _diagnostics(second)
    assert await _count(client, t.receipts) == 2


@pytest.mark.postgres
async def test_concurrent_redeliveries_on_postgresql_keep_the_newest_once(client_for, postgres_url):
    """Replicas share one PostgreSQL: racing deliveries of two versions (each sent five times)
    leave one receipt per version and the newer content stored."""
    client = await client_for(settings_with_sources(postgres_url))
    newer, older = _pain("2", "2026-03-01T09:00:00Z", 8), _pain("1", "2026-03-01T08:10:00Z", 3)
    bodies = [dumps(notification("event-notification", events=[(n, None)], resources=[r]))
              for n, r in ((2, newer), (1, older))] * 5
    results = await asyncio.gather(*(client.post(HOOK, content=b, headers=bearer())
                                     for b in bodies))
    assert {r.status_code for r in results} <= {200, 202}, [r.text for r in results]
    assert await _count(client, t.receipts) == 2
    stored = (await client.get("/fhir/Observation/ooo-nrs")).json()
    assert stored["valueQuantity"]["value"] == 8
    assert int(stored["meta"]["versionId"]) <= 2
