"""Building what senders send (Backport notifications, Medplum and Standard Webhooks deliveries)."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from standardwebhooks.webhooks import Webhook

from service.config import WebhookSource
from tests.conftest import FIXTURES, make_settings

SECRET = "engine-secret-0123456789"
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SUBSCRIPTION = "https://ehr.example/fhir/Subscription/sub-1"


def settings_with_sources(url: str, fhir_server: str | None = None, **extra: object):  # type: ignore[no-untyped-def]
    sources = [WebhookSource(name="engine", secrets=[SECRET, WHSEC], fhir_server=fhir_server)]
    return make_settings(url, webhook_sources=sources, **extra)


def scenario_resources(slug: str, step: int = 1) -> list[dict[str, Any]]:
    bundle = json.loads((FIXTURES / slug / f"step-{step}.bundle.json").read_text())
    return [e["resource"] for e in bundle["entry"]]


def expected(slug: str, what: str) -> Any:
    return json.loads((FIXTURES / slug / f"expected.{what}.json").read_text())


def notification(kind: str, *, events: list[tuple[int, str | None]] = (),  # type: ignore[assignment]
                 resources: list[dict[str, Any]] = (),  # type: ignore[assignment]
                 references: list[str] = (),  # type: ignore[assignment]
                 since_start: int | None = None, subscription: str = SUBSCRIPTION,
                 status: str = "active") -> dict[str, Any]:
    """A Backport 1.1 R4 notification Bundle (history; Parameters SubscriptionStatus first)."""
    parameters: list[dict[str, Any]] = [
        {"name": "subscription", "valueReference": {"reference": subscription}},
        {"name": "topic", "valueCanonical": "http://example.org/topics/lrp-observations"},
        {"name": "status", "valueCode": status},
        {"name": "type", "valueCode": kind},
    ]
    if since_start is not None:
        parameters.append({"name": "events-since-subscription-start",
                           "valueString": str(since_start)})
    for number, focus in events:
        parts: list[dict[str, Any]] = [{"name": "event-number", "valueString": str(number)}]
        if focus:
            parts.append({"name": "focus", "valueReference": {"reference": focus}})
        parameters.append({"name": "notification-event", "part": parts})
    entries: list[dict[str, Any]] = [{
        "fullUrl": "urn:uuid:0b3c5f4e-1111-4c1b-9d7e-000000000001",
        "resource": {"resourceType": "Parameters", "parameter": parameters},
        "request": {"method": "GET", "url": f"{subscription}/$status"},
        "response": {"status": "200"}}]
    entries += [{"fullUrl": f"https://ehr.example/fhir/{r['resourceType']}/{r['id']}",
                 "resource": r, "request": {"method": "PUT",
                                            "url": f"{r['resourceType']}/{r['id']}"}}
                for r in resources]
    entries += [{"fullUrl": ref, "request": {"method": "PUT", "url": ref}} for ref in references]
    return {"resourceType": "Bundle", "type": "history",
            "timestamp": "2026-03-02T09:00:00Z", "entry": entries}


def bearer(secret: str = SECRET) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}", "Content-Type": "application/fhir+json"}


def medplum_headers(body: bytes, secret: str = SECRET) -> dict[str, str]:
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Signature": signature, "Content-Type": "application/fhir+json",
            "X-Medplum-Subscription": "sub-medplum", "X-Medplum-Interaction": "update"}


def standard_headers(body: bytes, msg_id: str = "msg_1", at: datetime | None = None,
                     secret: str = WHSEC) -> dict[str, str]:
    at = at or datetime.now(UTC)
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, at, body.decode()),
            "Content-Type": "application/json"}


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def fixture_path(*parts: str) -> Path:
    return FIXTURES.parent / "webhooks" / Path(*parts)
