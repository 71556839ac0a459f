"""HttpxFhirServer: the few FHIR R4 REST interactions write-back needs, over a pooled httpx client.

Every call returns a `FhirReply` or raises `DeliveryError`, which says whether trying again can
help (network errors, 408/409/412/429 and 5xx) and how long the server asked us to wait.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from service.adapters.delivery import DeliveryError, retry_after_seconds

FHIR_JSON = "application/fhir+json"
RETRIABLE = {408, 409, 412, 429}
TokenSource = Callable[[], Awaitable[str | None]]


@dataclass(frozen=True)
class FhirReply:
    status: int
    body: dict[str, Any]
    etag: str | None
    location: str | None


async def _no_token() -> str | None:
    return None


class HttpxFhirServer:
    def __init__(
        self, base_url: str, http: httpx.AsyncClient, token: TokenSource = _no_token
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = http
        self.token = token

    async def _send(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        ok: tuple[int, ...] = (200, 201),
    ) -> FhirReply:
        sent = {"Accept": FHIR_JSON, "Prefer": "return=representation", **(headers or {})}
        if body is not None:
            sent["Content-Type"] = FHIR_JSON
        try:
            token = await self.token()
            if token:
                sent["Authorization"] = f"Bearer {token}"
            response = await self.http.request(
                method, f"{self.base_url}/{path}", json=body, headers=sent
            )
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        if response.status_code not in ok:
            status = response.status_code
            raise DeliveryError(
                f"{method} {path}: HTTP {status} {response.text[:500]}",
                status=status,
                retry_after=retry_after_seconds(response.headers.get("Retry-After")),
                permanent=400 <= status < 500 and status not in RETRIABLE,
            )
        try:
            parsed = response.json() if response.content else {}
        except ValueError:
            parsed = {}
        return FhirReply(
            response.status_code,
            parsed if isinstance(parsed, dict) else {},
            response.headers.get("ETag"),
            response.headers.get("Location"),
        )

    async def create_if_none_exist(
        self, resource: dict[str, Any], system: str, value: str
    ) -> FhirReply:
        """POST with If-None-Exist on the identifier: 201 created, 200 already there."""
        return await self.conditional_create(
            resource, f"identifier={quote(system, safe='')}|{quote(value, safe='')}"
        )

    async def conditional_create(self, resource: dict[str, Any], query: str) -> FhirReply:
        return await self._send(
            "POST", resource["resourceType"], resource, {"If-None-Exist": query}
        )

    async def update(self, resource: dict[str, Any], etag: str | None) -> FhirReply:
        headers = {"If-Match": etag} if etag else {}
        return await self._send(
            "PUT", f"{resource['resourceType']}/{resource['id']}", resource, headers
        )

    async def read(self, resource_type: str, resource_id: str) -> FhirReply:
        return await self._send("GET", f"{resource_type}/{resource_id}", ok=(200,))

    async def get(self, path: str, params: dict[str, str] | None = None) -> FhirReply:
        """GET a path relative to the base (a read, or an operation such as `$events`)."""
        query = "&".join(f"{k}={quote(v, safe='')}" for k, v in (params or {}).items())
        return await self._send("GET", f"{path}?{query}" if query else path, ok=(200,))

    async def transaction(self, bundle: dict[str, Any]) -> FhirReply:
        """POST a `transaction` (or `batch`) Bundle to the base; replies its response Bundle."""
        return await self._send("POST", "", bundle, ok=(200,))

    async def search(self, resource_type: str, params: dict[str, str]) -> list[dict[str, Any]]:
        """The resources a type search matched (first page; callers ask for few)."""
        reply = await self.get(resource_type, params)
        return [e["resource"] for e in reply.body.get("entry", []) if isinstance(e, dict)
                and isinstance(e.get("resource"), dict)
                and e["resource"].get("resourceType") == resource_type]

    async def history(self, resource_type: str, resource_id: str) -> list[dict[str, Any]]:
        """Every version of one resource, newest first (FHIR instance history)."""
        reply = await self.get(f"{resource_type}/{resource_id}/_history")
        return [e["resource"] for e in reply.body.get("entry", []) if isinstance(e, dict)
                and isinstance(e.get("resource"), dict)]

    async def supports_transaction(self) -> bool:
        """Whether the CapabilityStatement lists the system interaction `transaction`."""
        reply = await self.get("metadata")
        return any(i.get("code") == "transaction" for rest in reply.body.get("rest", [])
                   for i in rest.get("interaction", []) if isinstance(i, dict))

    async def ping(self) -> bool:
        """Reachable means the server answered /metadata at all (any status below 500)."""
        try:
            response = await self.http.get(
                f"{self.base_url}/metadata", headers={"Accept": FHIR_JSON}, timeout=5.0
            )
        except httpx.HTTPError:
            return False
        return response.status_code < 500
