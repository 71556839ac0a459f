"""Bundles in and out: unpack batch/transaction/collection Bundles, build responses and searchsets."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from service.errors import InvalidResource
from service.fhir.ids import content_id
from service.fhir.models import Issue
from service.fhir.outcome import operation_outcome

ACCEPTED_TYPES = ("batch", "transaction", "collection")


@dataclass
class Entry:
    resource: Any
    full_url: str | None


def bundle_entries(bundle: dict[str, Any]) -> tuple[str, list[Entry]]:
    """Entries with ids assigned and in-bundle `urn:uuid:` references resolved to Type/id."""
    kind = bundle.get("type")
    if kind not in ACCEPTED_TYPES:
        raise InvalidResource(f"Bundle.type {kind!r} is not accepted; use {', '.join(ACCEPTED_TYPES)}",
                              [Issue("Bundle.type", f"expected one of {', '.join(ACCEPTED_TYPES)}", "value")],
                              status=400)
    raw = bundle.get("entry") or []
    if not isinstance(raw, list):
        raise InvalidResource("Bundle.entry must be an array", [Issue("Bundle.entry", "expected an array", "structure")], 400)
    entries: list[Entry] = []
    issues: list[Issue] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("resource"), dict):
            issues.append(Issue(f"Bundle.entry[{i}].resource", "entry has no resource", "required"))
            continue
        request = item.get("request") or {}
        if not isinstance(request, dict) or not isinstance(request.get("url", ""), str) \
                or not isinstance(item.get("fullUrl", ""), str):
            issues.append(Issue(f"Bundle.entry[{i}]", "request must be an object, request.url "
                                "and fullUrl strings", "structure"))
            continue
        method = request.get("method")
        if method not in (None, "POST", "PUT"):
            issues.append(Issue(f"Bundle.entry[{i}].request.method", f"{method} is not supported here", "not-supported"))
            continue
        resource = dict(item["resource"])
        url = request.get("url", "")
        if method == "PUT" and "/" in url and not resource.get("id"):
            resource["id"] = url.split("?")[0].rstrip("/").split("/")[-1]
        entries.append(Entry(resource, item.get("fullUrl")))
    if issues:
        raise InvalidResource(issues[0].message, issues, status=400)
    aliases = {}
    for entry in entries:
        if isinstance(entry.resource.get("resourceType"), str):
            if not entry.resource.get("id"):
                entry.resource["id"] = content_id(entry.resource)
            if entry.full_url:
                aliases[entry.full_url] = f"{entry.resource['resourceType']}/{entry.resource['id']}"
    if aliases:
        for entry in entries:
            entry.resource = _resolve(entry.resource, aliases)
    return kind, entries


def _resolve(value: Any, aliases: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: (aliases.get(v, v) if k == "reference" and isinstance(v, str) else _resolve(v, aliases))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, aliases) for v in value]
    return value


def transaction_response(kind: str, entries: list[Entry], problems: dict[int, list[Issue]],
                         accepted: Iterator[Any]) -> dict[str, Any]:
    """Entry i of the response answers entry i of the request."""
    out = []
    for i, _ in enumerate(entries):
        if problems.get(i):
            out.append({"response": {"status": "422 Unprocessable Entity",
                                     "outcome": operation_outcome("invalid entry", problems[i])}})
            continue
        item = next(accepted)
        out.append({"response": {"status": "201 Created" if item.created else "200 OK",
                                 "location": item.location, "etag": item.etag}})
    return {"resourceType": "Bundle",
            "type": "transaction-response" if kind == "transaction" else "batch-response", "entry": out}


def searchset(resources: list[dict[str, Any]], base: str) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "total": len(resources),
            "entry": [{"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r,
                       "search": {"mode": "match"}} for r in resources]}
