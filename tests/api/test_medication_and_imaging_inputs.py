"""MedicationRequest/Statement (analgesia, R7) and ImagingStudy (2a.7) are inputs the API stores."""

from __future__ import annotations

from typing import Any

import httpx

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def ibuprofen(kind: str, **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": kind,
        "id": f"{kind.lower()}-1",
        "status": "active",
        "medicationCodeableConcept": {
            "coding": [
                {"system": RXNORM, "code": "310965", "display": "Ibuprofen 200 MG Oral Tablet"}
            ]
        },
        "subject": {"reference": "Patient/p1"},
        **extra,
    }
    if kind == "MedicationRequest":
        resource |= {"intent": "order", "authoredOn": "2026-02-20T09:00:00Z"}
    else:
        resource |= {"effectiveDateTime": "2026-02-20T09:00:00Z"}
    return resource


async def test_analgesic_requests_and_statements_are_stored_and_read_back(
    client: httpx.AsyncClient,
) -> None:
    for kind in ("MedicationRequest", "MedicationStatement"):
        created = await client.put(f"/fhir/{kind}/{kind.lower()}-1", json=ibuprofen(kind))
        assert created.status_code == 201, created.text
        read = await client.get(f"/fhir/{kind}/{kind.lower()}-1")
        assert read.status_code == 200
        assert read.json()["medicationCodeableConcept"]["coding"][0]["code"] == "310965"


async def test_an_imaging_study_is_stored(client: httpx.AsyncClient) -> None:
    study = {
        "resourceType": "ImagingStudy",
        "id": "study-1",
        "status": "available",
        "subject": {"reference": "Patient/p1"},
        "started": "2026-02-20T09:00:00Z",
        "procedureCode": [
            {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "72148"}]}
        ],
    }
    created = await client.post("/fhir/ImagingStudy", json=study)
    assert created.status_code == 201, created.text


async def test_a_medication_with_an_invalid_status_or_no_patient_is_refused(
    client: httpx.AsyncClient,
) -> None:
    bad_status = await client.post(
        "/fhir/MedicationRequest", json=ibuprofen("MedicationRequest", status="taken")
    )
    assert bad_status.status_code == 422
    assert bad_status.json()["issue"][0]["expression"] == ["MedicationRequest.status"]
    no_subject = {k: v for k, v in ibuprofen("MedicationStatement").items() if k != "subject"}
    refused = await client.post("/fhir/MedicationStatement", json=no_subject)
    assert refused.status_code in (400, 422)
    assert (await client.get("/fhir/MedicationStatement/medicationstatement-1")).status_code == 404
