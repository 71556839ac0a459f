"""Prefetch templates, and fetching what the EHR did not prefetch from its `fhirServer`."""

from __future__ import annotations

import re
from typing import Any

import httpx

from service.errors import PreconditionFailed

TEMPLATES: dict[str, str] = {
    "patient": "Patient/{{context.patientId}}",
    "observations": "Observation?patient={{context.patientId}}&_count=500",
    "conditions": "Condition?patient={{context.patientId}}&_count=500",
    "procedures": "Procedure?patient={{context.patientId}}&_count=500",
}
_TOKEN = re.compile(r"\{\{\s*context\.(\w+)\s*\}\}")
_MAX_PAGES = 20


class FetchFailed(PreconditionFailed):
    """The EHR's FHIR server could not supply the data (412: the service cannot decide without it)."""


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
