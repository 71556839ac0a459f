"""Deterministic FHIR ids for everything the pathway produces."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson

from service.fhir.models import Issue


def output_id(prefix: str, key: str) -> str:
    """A FHIR id ([A-Za-z0-9-.]{1,64}) derived from a deterministic identifier value."""
    return f"{prefix}-{hashlib.sha256(key.encode()).hexdigest()[:32]}"


def careplan_key(patient_id: str, episode_id: str) -> str:
    return f"urn:lrp:{patient_id}:{episode_id}:careplan"


def content_id(resource: dict[str, Any]) -> str:
    """A stable id for a resource posted without one, so re-posting it creates nothing new."""
    body = {k: v for k, v in resource.items() if k not in ("id", "meta")}
    return "h" + hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:40]


FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def is_fhir_id(value: object) -> bool:
    """Whether a value is a FHIR `id` (R4 2.24.0.1: `[A-Za-z0-9\\-\\.]{1,64}`)."""
    return isinstance(value, str) and FHIR_ID.fullmatch(value) is not None


def id_issues(resource: dict[str, Any], where: str = "") -> list[Issue]:
    """The logical id, `meta.versionId` and the patient a resource names must be FHIR ids: longer
    or stranger values are refused here rather than failing (or being cut) in the database."""
    issues = []
    if "id" in resource and not is_fhir_id(resource["id"]):
        issues.append(Issue(f"{where}id", "id must match [A-Za-z0-9-.]{1,64}", "value"))
    meta = resource.get("meta")
    if isinstance(meta, dict) and "versionId" in meta and not is_fhir_id(meta["versionId"]):
        issues.append(Issue(f"{where}meta.versionId", "versionId must match [A-Za-z0-9-.]{1,64}",
                            "value"))
    for field in ("subject", "patient"):
        ref = resource.get(field)
        reference = ref.get("reference") if isinstance(ref, dict) else None
        if isinstance(reference, str) and "Patient/" in reference:
            patient = reference.rsplit("Patient/", 1)[1].split("/", 1)[0]
            if not is_fhir_id(patient):
                issues.append(Issue(f"{where}{field}.reference",
                                    "the patient id must match [A-Za-z0-9-.]{1,64}", "value"))
    return issues
