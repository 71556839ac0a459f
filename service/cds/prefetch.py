"""Prefetch templates, and fetching what the EHR did not prefetch from its `fhirServer`."""

from __future__ import annotations

import re
from typing import Any

import httpx

from service.errors import PreconditionFailed

# Everything the pathway reads, newest first. CDS Hooks 2.0.1 templates can only use context
# tokens, not dates relative to today, so each search is bounded by `_count` on a `_sort`ed
# result: the newest page holds every window the rules look at (14 days to 12 months), and
# Conditions (history of cancer, fracture, surgery) are asked for whole. MedicationRequest and
# MedicationStatement are conservative-care evidence (analgesia); an ImagingStudy is a lumbar study
# already done (2a.7).
TEMPLATES: dict[str, str] = {
    "patient": "Patient/{{context.patientId}}",
    "conditions": "Condition?patient={{context.patientId}}&_count=200",
    "observations": "Observation?patient={{context.patientId}}&_sort=-date&_count=500",
    "procedures": "Procedure?patient={{context.patientId}}&_sort=-date&_count=100",
    "serviceRequests": "ServiceRequest?patient={{context.patientId}}&_sort=-authored&_count=100",
    "diagnosticReports": "DiagnosticReport?patient={{context.patientId}}&_sort=-date&_count=50",
    "imagingStudies": "ImagingStudy?patient={{context.patientId}}&_sort=-started&_count=50",
    "medicationRequests": "MedicationRequest?patient={{context.patientId}}&_sort=-authoredon&_count=100",
    "medicationStatements": "MedicationStatement?patient={{context.patientId}}&_sort=-effective&_count=100",
}
# Supporting evidence: a call goes ahead without these when no source has them (not every
# EHR offers MedicationStatement or ImagingStudy), and the card says they were missing.
SUPPORTING = frozenset({"medicationRequests", "medicationStatements", "imagingStudies"})
_TOKEN = re.compile(r"\{\{\s*context\.(\w+)\s*\}\}")
_MAX_PAGES = 20


class FetchFailed(PreconditionFailed):
    """The EHR's FHIR server could not supply the data (412: the service cannot decide without it)."""


def resource_type(key: str) -> str:
    """The resource type a template asks for ("observations" -> "Observation")."""
    return TEMPLATES[key].split("?", 1)[0].split("/", 1)[0]


def render(template: str, context: dict[str, Any]) -> str:
    """Fill `{{context.x}}` tokens with root-level primitive context fields."""
    return _TOKEN.sub(lambda m: str(context.get(m.group(1), "")), template)


def resources_of(value: dict[str, Any] | None) -> list[Any]:
    """The resources of a prefetched read (a resource or null) or search (a Bundle)."""
    if not isinstance(value, dict):
        return []
    if value.get("resourceType") == "Bundle":
        entries = value.get("entry")
        return [e.get("resource") for e in entries if isinstance(e, dict) and e.get("resource")
                ] if isinstance(entries, list) else []
    return [value]


async def fetch(http: httpx.AsyncClient, server: str, token: str | None, query: str) -> dict[str, Any] | None:
    """GET one prefetch query from the EHR (following Bundle `next` links)."""
    headers = {"Accept": "application/fhir+json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    url: str | None = f"{server.rstrip('/')}/{query}"
    first: dict[str, Any] | None = None
    for _ in range(_MAX_PAGES):
        if url is None:
            break
        try:
            response = await http.get(url, headers=headers, timeout=10.0)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise FetchFailed(f"could not fetch {query} from fhirServer: {exc.__class__.__name__}") from exc
        if response.status_code == 404 and first is None and "?" not in query:
            return None
        if response.status_code != 200:
            raise FetchFailed(f"fhirServer answered {response.status_code} for {query}")
        try:
            page = response.json()
        except ValueError as exc:
            raise FetchFailed(f"fhirServer sent malformed JSON for {query}") from exc
        if not isinstance(page, dict):
            raise FetchFailed(f"fhirServer sent a non-object for {query}")
        if first is None:
            first = page
        elif page.get("entry"):
            first.setdefault("entry", []).extend(page["entry"])
        url = next((link.get("url") for link in page.get("link") or []
                    if isinstance(link, dict) and link.get("relation") == "next"), None)
    return first
