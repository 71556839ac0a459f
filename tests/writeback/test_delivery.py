"""Write-back to a FHIR server on loopback: exactly once, through failures, visible to operators."""

from __future__ import annotations

import sqlalchemy as sa

from service.adapters import tables as t
from service.entrypoints.worker import build_worker
from tests.conftest import make_settings
from tests.writeback.support import assert_each_arrived_once, drain, make_outputs, outbox_counts


def _settings(url: str, peer_url: str, **extra: object):  # type: ignore[no-untyped-def]
    return make_settings(url, fhir_server_url=peer_url, outbox_backoff_seconds=0.01, **extra)


def _worker(client):  # type: ignore[no-untyped-def]
    services = client.app.state.services
    return build_worker(services.engine, services.settings, services.http)


async def test_outputs_arrive_once_with_provenance_and_server_ids(
    client_for, sqlite_url, fhir_peer
):
    client = await client_for(_settings(sqlite_url, fhir_peer.url))
    await make_outputs(client, 3)
    engine = client.app.state.services.engine
    assert (await outbox_counts(engine))["pending"] >= 3
    await drain([_worker(client)], engine)
    state = fhir_peer.state()
    await assert_each_arrived_once(state, engine)
    async with engine.connect() as conn:
        ids = {
            (r.resource_type, r.resource_id): r.remote_id
            for r in await conn.execute(sa.select(t.remote_ids))
        }
    assert {k for k, _ in ids} == {"CarePlan", "ServiceRequest", "Task", "Device"}
    assert all(f"{k}/{rid}" in state["resources"] for (k, _), rid in ids.items())
    device = f"Device/{ids['Device', 'carepath']}"
    provenance = next(h[-1] for k, h in state["resources"].items() if k.startswith("Provenance/"))
    assert provenance["agent"][0]["who"]["reference"] == device
    assert provenance["policy"][0].startswith("urn:carepath:pathway:lumbar-radiculopathy|")
    plan = next(h[-1] for k, h in state["resources"].items() if k.startswith("CarePlan/"))
    assert plan["author"]["reference"] == device
    activities = {a["reference"]["reference"] for a in plan["activity"] if "reference" in a}
    assert activities <= {f"{k}/{rid}" for (k, _), rid in ids.items()}


async def test_a_revision_updates_the_same_server_resource(client_for, sqlite_url, fhir_peer):
    client = await client_for(_settings(sqlite_url, fhir_peer.url))
    await make_outputs(client, 1)
    engine = client.app.state.services.engine
    await drain([_worker(client)], engine)
    saddle = {
        "resourceType": "Observation",
        "id": "wb-saddle",
        "status": "final",
        "subject": {"reference": "Patient/wb-0"},
        "effectiveDateTime": "2026-03-01T09:00:00Z",
        "code": {
            "coding": [{"system": "http://example.org/CodeSystem/lrp-exam", "code": "LRP-SADDLE"}]
        },
        "valueCodeableConcept": {
            "coding": [{"system": "http://snomed.info/sct", "code": "52101004"}]
        },
    }
    await client.post("/fhir/Observation", json=saddle)
    await drain([_worker(client)], engine)
    state = fhir_peer.state()
    await assert_each_arrived_once(state, engine)
    plans = [h for k, h in state["resources"].items() if k.startswith("CarePlan/")]
    assert len(plans) == 1 and plans[0][-1]["meta"]["versionId"] == "2"
    assert any(k.startswith("ServiceRequest/") for k in state["resources"])


async def test_a_4xx_is_a_visible_permanent_failure_an_admin_can_retry(
    client_for, sqlite_url, fhir_peer
):
    client = await client_for(_settings(sqlite_url, fhir_peer.url))
    fhir_peer.control(statuses=[400])
    await make_outputs(client, 1)
    engine = client.app.state.services.engine
    await drain([_worker(client)], engine)
    listing = (await client.get("/admin/outbox", params={"status": "failed"})).json()
    assert listing["counts"]["failed"] == 1
    failed = listing["items"][0]
    assert failed["lastStatus"] == 400 and "injected 400" in failed["lastError"]
    assert failed["attempts"] == 1
    retried = await client.post(f"/admin/outbox/{failed['id']}/retry")
    assert retried.status_code == 200
    assert (await client.post(f"/admin/outbox/{failed['id']}/retry")).status_code == 404
    await drain([_worker(client)], engine)
    assert (await client.get("/admin/outbox")).json()["counts"]["failed"] == 0
    await assert_each_arrived_once(fhir_peer.state(), engine)


async def test_retry_after_on_429_is_honoured(client_for, sqlite_url, fhir_peer):
    client = await client_for(_settings(sqlite_url, fhir_peer.url))
    fhir_peer.control(statuses=[429], retryAfter=3600)
    await make_outputs(client, 1)
    worker = _worker(client)
    await worker.run_once()
    items = (await client.get("/admin/outbox", params={"status": "pending"})).json()["items"]
    waiting = [i for i in items if i["lastStatus"] == 429]
    assert len(waiting) == 1 and waiting[0]["attempts"] == 1
    assert waiting[0]["nextAttemptAt"] > "2026-11"  # an hour from the real clock, not now
    from datetime import UTC, datetime, timedelta

    due = datetime.fromisoformat(waiting[0]["nextAttemptAt"])
    assert due >= datetime.now(UTC) + timedelta(minutes=59)


async def test_admin_outbox_needs_the_bearer_token(client_for, sqlite_url, fhir_peer):
    client = await client_for(_settings(sqlite_url, fhir_peer.url))
    response = await client.get("/admin/outbox", headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_health_and_ready_report_database_and_fhir_server(client_for, sqlite_url, fhir_peer):
    client = await client_for(_settings(sqlite_url, fhir_peer.url))
    assert (await client.get("/health", headers={})).json() == {"status": "ok"}
    ready = await client.get("/ready", headers={"Authorization": ""})
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "fhirServer": "ok"}
    down = await client_for(_settings(sqlite_url, "http://127.0.0.1:9/fhir"))
    ready = await down.get("/ready")
    assert ready.status_code == 503 and ready.json()["checks"]["fhirServer"] == "unreachable"


async def test_the_app_runs_the_worker_itself_when_configured(client_for, sqlite_url, fhir_peer):
    import asyncio
    import time

    settings = _settings(sqlite_url, fhir_peer.url, run_worker=True, outbox_poll_seconds=0.05)
    client = await client_for(settings)
    await make_outputs(client, 2)
    engine = client.app.state.services.engine
    deadline = time.monotonic() + 30
    while (await outbox_counts(engine)).get("pending") and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await assert_each_arrived_once(fhir_peer.state(), engine)


async def test_a_refused_transaction_falls_back_to_writing_each_resource(
    client_for, sqlite_url, fhir_peer
):
    """A server that refuses the Bundle (here: no transaction endpoint at all, though configured
    as transaction-capable) still gets every resource, one by one."""
    client = await client_for(_settings(sqlite_url, fhir_peer.url, fhir_write_mode="transaction"))
    await make_outputs(client, 2)
    engine = client.app.state.services.engine
    await drain([_worker(client)], engine)
    state = fhir_peer.state()
    await assert_each_arrived_once(state, engine)
    assert state["calls"].get("POST transaction", 0) >= 1  # tried first
    assert state["calls"].get("POST CarePlan") == 2
