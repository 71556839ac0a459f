"""The Provenance Carepath writes for each CarePlan, ServiceRequest or Task version it puts on an
EHR server: which server version (`Type/id/_history/v`), whether the server created or updated it,
the pathway version followed, and the Carepath Device (as it exists on that server)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from service.fhir.time import format_instant

_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
_PARTICIPANT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"


def provenance(target: str, pathways: list[str], created: bool, now: datetime,
               device: str) -> dict[str, Any]:
    """Carepath (`device`, a reference on the same server) assembled `target` following
    `pathways` (`id|version`); activity CREATE when that version is the resource's first."""
    return {
        "resourceType": "Provenance",
        "target": [{"reference": target}],
        "recorded": format_instant(now),
        "policy": [f"urn:carepath:pathway:{p}" for p in pathways],
        "activity": {"coding": [{"system": _OPERATION, "code": "CREATE" if created else "UPDATE"}]},
        "agent": [{"type": {"coding": [{"system": _PARTICIPANT, "code": "assembler"}]},
                   "who": {"reference": device, "display": "Carepath"}}],
    }
