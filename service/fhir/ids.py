"""Deterministic FHIR ids for everything the pathway produces."""

from __future__ import annotations

import hashlib


def output_id(prefix: str, key: str) -> str:
    """A FHIR id ([A-Za-z0-9-.]{1,64}) derived from a deterministic identifier value."""
    return f"{prefix}-{hashlib.sha256(key.encode()).hexdigest()[:32]}"


def careplan_key(patient_id: str, episode_id: str) -> str:
    return f"urn:lrp:{patient_id}:{episode_id}:careplan"
