"""Synthetic but valid pathway inputs: a radicular Condition plus pain/MRC Observations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

AS_OF = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
_EXAM = "http://example.org/CodeSystem/lrp-exam"
_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
_MUSCLES = ("L2-HIPFLEX", "L3-KNEEEXT", "L4-ANKLEDF", "L5-EHL", "L5-EVERT", "S1-PF")
_LEFT = {"system": "http://snomed.info/sct", "code": "7771000", "display": "Left (qualifier value)"}


def condition(patient: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition", "id": f"{patient}-radic",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                       "code": "active"}]},
        "verificationStatus": {"coding": [{"system": _VERIFICATION, "code": "confirmed"}]},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                  "code": "problem-list-item"}]}],
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M51.16"}]},
        "bodySite": [{"coding": [_LEFT]}],
        "subject": {"reference": f"Patient/{patient}"},
        "onsetDateTime": _at(20), "recordedDate": _at(20),
    }


def observation(patient: str, n: int) -> dict[str, Any]:
    """The n-th Observation of a patient: alternately a pain score and a (normal) MRC grade."""
    when = _at(19 - (n % 19), minutes=n // 19)
    if n % 2 == 0:
        return {"resourceType": "Observation", "id": f"{patient}-nrs-{n}", "status": "final",
                "category": [{"coding": [{"system": _CATEGORY, "code": "survey"}]}],
                "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3"}]},
                "subject": {"reference": f"Patient/{patient}"}, "effectiveDateTime": when,
                "valueQuantity": {"value": 6 + n % 3, "unit": "{score}", "system": "http://unitsofmeasure.org",
                                  "code": "{score}"}}
    muscle = _MUSCLES[n % len(_MUSCLES)]
    return {"resourceType": "Observation", "id": f"{patient}-mrc-{n}", "status": "final",
            "category": [{"coding": [{"system": _CATEGORY, "code": "exam"}]}],
            "code": {"coding": [{"system": _EXAM, "code": f"LRP-MRC-{muscle}"}]},
            "subject": {"reference": f"Patient/{patient}"}, "effectiveDateTime": when,
            "valueInteger": 5, "bodySite": {"coding": [_LEFT]}}


def bundle(resources: list[dict[str, Any]], kind: str = "batch") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
        for r in resources]}


def _at(days_before: int, minutes: int = 0) -> str:
    when = AS_OF - timedelta(days=days_before, hours=1) + timedelta(minutes=minutes % 50)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")
