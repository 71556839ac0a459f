"""Deterministic FHIR ids for everything the pathway produces."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson


def output_id(prefix: str, key: str) -> str:
    """A FHIR id ([A-Za-z0-9-.]{1,64}) derived from a deterministic identifier value."""
    return f"{prefix}-{hashlib.sha256(key.encode()).hexdigest()[:32]}"


def careplan_key(patient_id: str, episode_id: str) -> str:
    return f"urn:lrp:{patient_id}:{episode_id}:careplan"


def content_id(resource: dict[str, Any]) -> str:
    """A stable id for a resource posted without one, so re-posting it creates nothing new."""
    body = {k: v for k, v in resource.items() if k not in ("id", "meta")}
    return "h" + hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:40]
