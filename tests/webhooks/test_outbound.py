"""Outbound escalation events: signed per Standard Webhooks, through the outbox, to a receiver on
loopback that verifies every signature with the reference library."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from service.config import WebhookSubscriberConfig
from service.entrypoints.worker import build_worker
from tests.conftest import FIXTURES, make_settings
from tests.fhirserver.serve import serving
from tests.webhooks.receiver import create_receiver
from tests.webhooks.support import WHSEC
from tests.writeback.support import drain

CES = FIXTURES / "03-urinary-retention" / "step-1.bundle.json"
OTHER = "whsec_" + "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJC"


class Receiver:
    def __init__(self, url: str) -> None:
        self.url = url

    def fail_next(self, *statuses: int, retry_after: float | None = None) -> None:
        httpx.post(f"{self.url}/_control", json={"statuses": list(statuses),
                                                 "retryAfter": retry_after}).raise_for_status()

    def deliveries(self) -> list[dict[str, Any]]:
        return httpx.get(f"{self.url}/_control/deliveries").json()  # type: ignore[no-any-return]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serving(create_receiver({"/hooks/a": WHSEC, "/hooks/b": OTHER})) as url:
        yield Receiver(url)


def _settings(url: str, **extra: object):  # type: ignore[no-untyped-def]
    return make_settings(url, webhook_backoff_scale=0.001, **extra)


async def _subscribe(client: httpx.AsyncClient, url: str, **body: Any) -> dict[str, Any]:
    response = await client.post("/admin/webhook-subscribers", json={"url": url, **body})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def _escalate(client: httpx.AsyncClient, patient: str = "03") -> None:
    """Scenario 03 (suspected cauda equina: stat referral) for patient lrp-{patient}."""
    body = CES.read_bytes()
    for old in (b'"03-', b"/03-", b"lrp-03"):
        body = body.replace(old, old.replace(b"03", patient.encode()))
    response = await client.post("/fhir", content=body,
                                 headers={"Content-Type": "application/fhir+json"})
    assert response.status_code == 200, response.text


async def _drain(client: httpx.AsyncClient) -> None:
    services = client.app.state.services  # type: ignore[attr-defined]
    await drain([build_worker(services.engine, services.settings, services.http)], services.engine)


def _bodies(deliveries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [orjson.loads(d["body"]) for d in deliveries]


async def test_an_escalation_reaches_the_subscriber_signed(client_for, sqlite_url, receiver):
    client = await client_for(_settings(sqlite_url))
    await _subscribe(client, f"{receiver.url}/hooks/a", secret=WHSEC)
    await _escalate(client)
    await _drain(client)
    deliveries = receiver.deliveries()
    assert deliveries and all(d["verified"] for d in deliveries)
    bodies = _bodies(deliveries)
    types = sorted(b["type"] for b in bodies)
    assert types == ["careplan.revised", "pathway.escalated", "servicerequest.created",
                     "servicerequest.created"]
    escalated = next(b for b in bodies if b["type"] == "pathway.escalated")
    assert escalated["data"]["patient"] == "Patient/lrp-03"
    assert escalated["data"]["priority"] == "stat"
    rules = escalated["data"]["pathways"][0]["rules"]
    assert [r["rule"] for r in rules] == ["R1"]
    assert rules[0]["evidence"] == ["Condition/03-retention"]
    assert rules[0]["priority"] == "stat" and "cauda equina" in rules[0]["reason"]
    created = [b for b in bodies if b["type"] == "servicerequest.created"]
    assert {b["data"]["priority"] for b in created} == {"stat"}
    assert all(b["data"]["resource"]["resourceType"] == "ServiceRequest" for b in created)
    assert len({d["id"] for d in deliveries}) == len(deliveries)


async def test_subscribers_get_only_their_event_types_and_nothing_twice(
        client_for, sqlite_url, receiver):
    client = await client_for(_settings(sqlite_url))
    await _subscribe(client, f"{receiver.url}/hooks/b", secret=OTHER, events=["pathway.escalated"])
    await _escalate(client)
    await _escalate(client)  # the same data again: no new decision, so no new event
    await _drain(client)
    assert [b["type"] for b in _bodies(receiver.deliveries())] == ["pathway.escalated"]


async def test_failed_deliveries_are_retried_with_the_same_webhook_id(
        client_for, sqlite_url, receiver):
    client = await client_for(_settings(sqlite_url))
    await _subscribe(client, f"{receiver.url}/hooks/a", secret=WHSEC, events=["pathway.escalated"])
    receiver.fail_next(503, 429, retry_after=0)
    await _escalate(client)
    await _drain(client)
    deliveries = receiver.deliveries()
    assert [d["status"] for d in deliveries] == [503, 429, 204]
    assert len({d["id"] for d in deliveries}) == 1, "a retry keeps its webhook-id"
    assert all(d["verified"] for d in deliveries)
    outbox = (await client.get("/admin/outbox", params={"kind": "webhook"})).json()
    assert outbox["counts"]["delivered"] == 1
    assert outbox["items"][0]["attempts"] == 3


async def test_410_disables_the_endpoint_until_an_operator_enables_it(
        client_for, sqlite_url, receiver):
    client = await client_for(_settings(sqlite_url))
    sub = await _subscribe(client, f"{receiver.url}/hooks/a", secret=WHSEC,
                           events=["pathway.escalated"])
    receiver.fail_next(410)
    await _escalate(client, "03")
    await _drain(client)
    listed = (await client.get("/admin/webhook-subscribers")).json()
    assert listed[0]["enabled"] is False and "410" in listed[0]["disabledReason"]
    assert "secret" not in listed[0]
    await _escalate(client, "33")
    await _drain(client)
    assert len(receiver.deliveries()) == 1, "nothing more is sent to a disabled endpoint"
    failed = (await client.get("/admin/outbox", params={"status": "failed"})).json()["items"]
    errors = sorted(i["lastError"] for i in failed)
    assert len(errors) == 2
    assert errors[0].endswith("410 Gone; subscriber disabled")
    assert errors[1].startswith("the subscriber is disabled (410 Gone from")

    enabled = await client.post(f"/admin/webhook-subscribers/{sub['id']}/enable")
    assert enabled.json()["requeued"] == 2
    await _drain(client)
    deliveries = receiver.deliveries()
    assert [d["status"] for d in deliveries] == [410, 204, 204]
    patients = sorted(orjson.loads(d["body"])["data"]["patient"] for d in deliveries[1:])
    assert patients == ["Patient/lrp-03", "Patient/lrp-33"]


async def test_configured_subscribers_and_admin_validation(client_for, sqlite_url, receiver):
    configured = WebhookSubscriberConfig(url=f"{receiver.url}/hooks/a", secret=WHSEC,
                                         events=["servicerequest.created"])
    client = await client_for(_settings(sqlite_url, webhook_subscribers=[configured]))
    listed = (await client.get("/admin/webhook-subscribers")).json()
    assert [(s["origin"], s["url"]) for s in listed] == [("config", configured.url)]
    refused = await client.delete(f"/admin/webhook-subscribers/{listed[0]['id']}")
    assert refused.status_code == 412

    for body in ({"url": "http://example.org/hook"}, {"url": "ftp://x/y"},
                 {"url": "https://example.org/hook", "secret": "plain-secret"},
                 {"url": "https://example.org/hook", "events": ["patient.sneezed"]}):
        response = await client.post("/admin/webhook-subscribers", json=body)
        assert response.status_code == 400, body
        assert response.json()["resourceType"] == "OperationOutcome"
    made = await _subscribe(client, "https://example.org/hook")
    assert made["secret"].startswith("whsec_")
    assert (await client.delete(f"/admin/webhook-subscribers/{made['id']}")).status_code == 204

    await _escalate(client)
    await _drain(client)
    assert [b["type"] for b in _bodies(receiver.deliveries())] == ["servicerequest.created"] * 2


async def test_admin_endpoints_need_the_api_token(client_for, sqlite_url):
    client = await client_for(_settings(sqlite_url))
    for method, path in (("GET", "/admin/webhook-subscribers"),
                         ("POST", "/admin/webhook-subscribers"),
                         ("GET", "/admin/subscriptions")):
        response = await client.request(method, path, headers={"Authorization": "Bearer nope"})
        assert response.status_code == 401


async def test_metrics_show_the_webhook_backlog_and_failures(client_for, sqlite_url, receiver):
    client = await client_for(_settings(sqlite_url, webhook_max_attempts=1))
    await _subscribe(client, f"{receiver.url}/hooks/a", secret=WHSEC)
    await _escalate(client)
    # pathway.escalated, careplan.revised and two servicerequest.created
    assert 'carepath_outbox_depth{kind="webhook"} 4.0' in (await client.get("/metrics")).text
    receiver.fail_next(*[503] * 4)
    await _drain(client)
    scrape = (await client.get("/metrics")).text
    assert 'carepath_outbox_depth{kind="webhook"} 0.0' in scrape
    assert 'carepath_outbox_delivery_failures{kind="webhook"} 4.0' in scrape
