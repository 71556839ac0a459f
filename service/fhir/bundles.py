"""Bundles in and out: unpack batch/transaction/collection Bundles, build responses and searchsets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.errors import InvalidResource
from service.fhir.ids import content_id
from service.fhir.models import Issue

ACCEPTED_TYPES = ("batch", "transaction", "collection")


@dataclass
class Entry:
    """One entry of a Bundle posted to the server: what to do (`method`) and to what."""

    resource: Any
    full_url: str | None
    method: str = "PUT"  # POST | PUT | DELETE | GET (collection entries are PUT by their id)
    url: str = ""
    if_none_exist: str | None = None
    if_match: str | None = None

    @property
    def writes(self) -> bool:
        return self.method in ("POST", "PUT")


_METHODS = ("GET", "POST", "PUT", "DELETE")


def bundle_entries(bundle: dict[str, Any]) -> tuple[str, list[Entry]]:
    """Entries with ids assigned and in-bundle references to POSTed entries resolved to Type/id.

    POST entries get a server-assigned id (R4: the client's id is ignored), derived from the
    content so that re-posting the same Bundle creates nothing new; PUT entries keep the id of
    their URL; GET and DELETE entries carry their URL."""
    kind = bundle.get("type")
    if kind not in ACCEPTED_TYPES:
        raise InvalidResource(f"Bundle.type {kind!r} is not accepted; use {', '.join(ACCEPTED_TYPES)}",
                              [Issue("Bundle.type", f"expected one of {', '.join(ACCEPTED_TYPES)}", "value")],
                              status=400)
    raw = bundle.get("entry") or []
    if not isinstance(raw, list):
        raise InvalidResource("Bundle.entry must be an array",
                              [Issue("Bundle.entry", "expected an array", "structure")], 400)
    entries: list[Entry] = []
    issues: list[Issue] = []
    for i, item in enumerate(raw):
        entry, problem = _entry(kind, i, item)
        if problem:
            issues.append(problem)
        elif entry:
            entries.append(entry)
    if issues:
        raise InvalidResource(issues[0].message, issues, status=400)
    aliases = {}
    for entry in entries:
        if entry.writes and isinstance(entry.resource.get("resourceType"), str):
            given = entry.resource.get("id")
            if entry.method == "POST" or not given:
                entry.resource["id"] = content_id(entry.resource)
            new = f"{entry.resource['resourceType']}/{entry.resource['id']}"
            if entry.full_url:
                aliases[entry.full_url] = new
                tail = entry.full_url.split("/")
                if entry.full_url.startswith(("http://", "https://")) and len(tail) >= 2:
                    aliases.setdefault(f"{tail[-2]}/{tail[-1]}", new)
    if aliases:
        for entry in entries:
            if entry.writes:
                entry.resource = _resolve(entry.resource, aliases)
    return kind, entries


def _entry(kind: str, i: int, item: Any) -> tuple[Entry | None, Issue | None]:
    where = f"Bundle.entry[{i}]"
    if not isinstance(item, dict):
        return None, Issue(where, "an entry must be an object", "structure")
    request = item.get("request")
    if kind != "collection" and not isinstance(request, dict):
        return None, Issue(f"{where}.request", "batch and transaction entries need a request (bdl-3)", "required")
    request = request if isinstance(request, dict) else {}
    for name, value in (("fullUrl", item.get("fullUrl")), ("request.url", request.get("url")),
                        ("request.ifNoneExist", request.get("ifNoneExist")),
                        ("request.ifMatch", request.get("ifMatch"))):
        if value is not None and not isinstance(value, str):
            return None, Issue(f"{where}.{name}", f"{name} must be a string", "structure")
    method = request.get("method", "PUT")
    url = request.get("url", "")
    if method not in _METHODS:
        return None, Issue(f"{where}.request.method", f"{method!r} is not supported; use one of "
                           f"{', '.join(_METHODS)}", "not-supported")
    if kind != "collection" and (not isinstance(url, str) or not url):
        return None, Issue(f"{where}.request.url", "request.url is required", "required")
    resource = item.get("resource")
    if method in ("POST", "PUT"):
        if not isinstance(resource, dict):
            return None, Issue(f"{where}.resource", f"a {method} entry needs a resource", "required")
        resource = dict(resource)
        target = url.split("?")[0].rstrip("/").split("/")
        if method == "PUT" and len(target) >= 2:
            if resource.get("id") not in (None, target[-1]):
                return None, Issue(f"{where}.resource.id", f"id {resource.get('id')!r} does not match "
                                   f"request.url {url!r}", "invalid")
            resource["id"] = target[-1]
    elif resource is not None:
        return None, Issue(f"{where}.resource", f"a {method} entry carries no resource", "invalid")
    return Entry(resource, item.get("fullUrl"), method, url, request.get("ifNoneExist"),
                 request.get("ifMatch")), None


def _resolve(value: Any, aliases: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: (aliases.get(v, v) if k == "reference" and isinstance(v, str) else _resolve(v, aliases))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, aliases) for v in value]
    return value


def searchset(resources: list[dict[str, Any]], base: str) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "total": len(resources),
            "entry": [{"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r,
                       "search": {"mode": "match"}} for r in resources]}
