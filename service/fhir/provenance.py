"""The Provenance Carepath writes with each CarePlan or ServiceRequest it puts on an EHR server."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from service import __version__
from service.fhir.time import format_instant

_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
_PARTICIPANT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"


def provenance(target: str, pathways: list[str], created: bool, now: datetime) -> dict[str, Any]:
    """Carepath (a contained Device) assembled `target` following `pathways` (`id|version`)."""
    return {
        "resourceType": "Provenance",
        "contained": [{"resourceType": "Device", "id": "carepath",
                       "deviceName": [{"name": "Carepath", "type": "manufacturer-name"}],
                       "version": [{"value": __version__}]}],
        "target": [{"reference": target}],
        "recorded": format_instant(now),
        "policy": [f"urn:carepath:pathway:{p}" for p in pathways],
        "activity": {"coding": [{"system": _OPERATION, "code": "CREATE" if created else "UPDATE"}]},
        "agent": [{"type": {"coding": [{"system": _PARTICIPANT, "code": "assembler"}]},
                   "who": {"reference": "#carepath", "display": "Carepath"}}],
    }
