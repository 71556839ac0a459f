"""Patients dated relative to one instant, and an app driven by a clock the test moves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa

from service.adapters import tables
from service.config import Settings
from service.entrypoints.app import create_app
from service.service_layer.clock import Clock
from service.webhooks.signatures import new_secret
from tests.conftest import AS_OF, TOKEN

T0 = AS_OF
ICD, LRP, SNOMED, LOINC = ("http://hl7.org/fhir/sid/icd-10-cm", "http://example.org/CodeSystem/lrp-exam",
                           "http://snomed.info/sct", "http://loinc.org")
MRI = "30679-5"


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def subject(patient: str) -> dict[str, str]:
    return {"reference": f"Patient/{patient}"}


def radicular_dx(patient: str, onset: datetime) -> dict[str, Any]:
    return {"resourceType": "Condition", "id": f"{patient}-dx", "subject": subject(patient),
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": "active"}]},
            "verificationStatus": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                "code": "confirmed"}]},
            "code": {"coding": [{"system": ICD, "code": "M54.16"}]}, "onsetDateTime": iso(onset)}


def physiotherapy(patient: str, when: datetime) -> dict[str, Any]:
    return {"resourceType": "Procedure", "id": f"{patient}-pt", "status": "completed",
            "subject": subject(patient), "performedDateTime": iso(when),
            "code": {"coding": [{"system": SNOMED, "code": "229064008"}]}}


def pain(patient: str, n: int, value: int, when: datetime) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": f"{patient}-nrs-{n}", "status": "final",
            "subject": subject(patient), "code": {"coding": [{"system": LOINC, "code": "72514-3"}]},
            "effectiveDateTime": iso(when), "valueInteger": value}


def finding(patient: str, code: str, present: bool, when: datetime) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": f"{patient}-{code.lower()}-{iso(when)[:10]}",
            "status": "final", "subject": subject(patient),
            "code": {"coding": [{"system": LRP, "code": code}]}, "effectiveDateTime": iso(when),
            "valueCodeableConcept": {"coding": [{"system": SNOMED,
                                                 "code": "52101004" if present else "2667000"}]}}


def mrc(patient: str, n: int, grade: int, when: datetime, side: str = "7771000") -> dict[str, Any]:
    return {"resourceType": "Observation", "id": f"{patient}-mrc-{n}", "status": "final",
            "subject": subject(patient),
            "code": {"coding": [{"system": LRP, "code": "LRP-MRC-L4-ANKLEDF"}]},
            "bodySite": {"coding": [{"system": SNOMED, "code": side}]},
            "effectiveDateTime": iso(when), "valueInteger": grade}


def transaction(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
        for r in resources]}


def failed_conservative_care(patient: str, now: datetime = T0) -> list[dict[str, Any]]:
    """The issue's example: episode 40 days old, physiotherapy done, NRS 7 -> 7 -> 7, the last one
    2 days ago. No MRI today; the 6-week mark of conservative care is 2 days away."""
    onset = now - timedelta(days=40)
    return [radicular_dx(patient, onset), physiotherapy(patient, onset),
            *(pain(patient, n, 7, now - timedelta(days=ago))
              for n, ago in ((1, 30), (2, 16), (3, 2)))]


def settings_for(database_url: str, **overrides: Any) -> Settings:
    """Write-back and one webhook subscriber configured (nothing delivered: no worker runs)."""
    values: dict[str, Any] = {
        "database_url": database_url, "api_tokens": [TOKEN], "run_worker": False,
        "run_scheduler": False, "fhir_server_url": "https://ehr.example.org/fhir",
        "webhook_subscribers": [{"url": "https://hooks.example.org/carepath",
                                 "secret": new_secret()}]}
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def running(settings: Settings, clock: Clock | None = None
                  ) -> AsyncIterator[httpx.AsyncClient]:
    """The app through its real lifespan, and an authenticated client on it."""
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://carepath.test",
                                     headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


async def post(client: httpx.AsyncClient, *resources: dict[str, Any]) -> None:
    response = await client.post("/fhir", json=transaction(*resources))
    assert response.status_code == 200, response.text


async def outputs(client: httpx.AsyncClient, kind: str, patient: str) -> list[dict[str, Any]]:
    bundle = (await client.get(f"/fhir/{kind}", params={"subject": f"Patient/{patient}"})).json()
    return [e["resource"] for e in bundle.get("entry", [])]


def codes(resource: dict[str, Any]) -> set[str]:
    return {c["code"] for c in resource.get("code", {}).get("coding", [])}


async def outbox_rows(client: httpx.AsyncClient) -> list[tuple[str, str, dict[str, Any]]]:
    """(kind, dedupe key, payload) of every staged delivery."""
    import orjson

    engine = client.app.state.services.engine  # type: ignore[attr-defined]
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(tables.outbox).order_by(tables.outbox.c.id))
        return [(r.kind, r.dedupe_key, orjson.loads(r.payload)) for r in rows]


def webhook_types(rows: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
    return sorted(p["message"]["type"] for kind, _, p in rows if kind == "webhook")
