"""Test helpers: EHR signing keys, JWTs shaped like the sandbox's, spec-shaped request bodies, and
a real loopback HTTP server (uvicorn on 127.0.0.1) acting as the EHR's FHIR server and JWKS host."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from service.cds import prefetch
from tests.conftest import FIXTURES

ISSUER = "https://ehr.example.org"
BASE = "http://carepath.test"


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: Any

    def jwk(self) -> dict[str, Any]:
        algo = jwt.algorithms.ECAlgorithm if self.alg.startswith("ES") else jwt.algorithms.RSAAlgorithm
        jwk = algo.to_jwk(self.private.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def token(self, aud: str, *, iss: str = ISSUER, jti: str | None = None, exp_in: int = 300,
              jku: str | None = None, **header: Any) -> str:
        now = int(time.time())
        claims = {"iss": iss, "aud": aud, "iat": now, "exp": now + exp_in, "jti": jti or str(uuid.uuid4())}
        headers = {"kid": self.kid, "typ": "JWT", **header}
        if jku:
            headers["jku"] = jku
        return jwt.encode(claims, self.private, algorithm=self.alg, headers=headers)


async def call(client: Any, service: str, body: Any, key: SigningKey | None, **token: Any) -> Any:
    """POST to a CDS service as the EHR does: a fresh signed JWT whose `aud` is the URL called."""
    url = f"{BASE}/cds-services/{service}"
    headers = {"Authorization": f"Bearer {key.token(url, **token)}"} if key else {"Authorization": ""}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await client.post(url, content=content, headers={**headers, "Content-Type": "application/json"})


def es384(kid: str = "ehr-es384") -> SigningKey:
    return SigningKey(kid, "ES384", ec.generate_private_key(ec.SECP384R1()))


def rs384(kid: str = "ehr-rs384") -> SigningKey:
    return SigningKey(kid, "RS384", rsa.generate_private_key(public_exponent=65537, key_size=2048))


def scenario(case: str, patient: str = "") -> dict[str, list[dict[str, Any]]]:
    """A scenario Bundle's resources grouped by prefetch key."""
    bundle = json.loads((FIXTURES / case / "step-1.bundle.json").read_text())
    key_of = {prefetch.resource_type(k): k for k in prefetch.TEMPLATES}
    groups: dict[str, list[dict[str, Any]]] = {k: [] for k in prefetch.TEMPLATES}
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] in key_of:
            groups[key_of[resource["resourceType"]]].append(resource)
    return groups


def searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "total": len(resources),
            "entry": [{"fullUrl": f"https://ehr.example.org/fhir/{r['resourceType']}/{r['id']}",
                       "resource": r, "search": {"mode": "match"}} for r in resources]}


def prefetch_of(groups: dict[str, list[dict[str, Any]]], *, without: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every prefetch key answered from `groups` (a read is the resource or null, a search a
    searchset), except the keys in `without`."""
    return {key: (groups[key][0] if groups[key] else None) if key == "patient" else searchset(groups[key])
            for key in prefetch.TEMPLATES if key not in without}


def hook_request(hook: str, patient: str, *, prefetch: dict[str, Any] | None = None,
                 draft_orders: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    """A request body shaped like the spec's examples."""
    context: dict[str, Any] = {"userId": "Practitioner/example", "patientId": patient,
                               "encounterId": "89284"}
    if draft_orders is not None:
        context["draftOrders"] = {"resourceType": "Bundle", "type": "collection",
                                  "entry": [{"resource": r} for r in draft_orders]}
        if hook == "order-select":
            context["selections"] = [f"ServiceRequest/{r['id']}" for r in draft_orders]
    body: dict[str, Any] = {"hookInstance": str(uuid.uuid4()), "hook": hook, "context": context, **extra}
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


def draft_order(rid: str, patient: str, system: str, code: str, display: str) -> dict[str, Any]:
    return {"resourceType": "ServiceRequest", "id": rid, "status": "draft", "intent": "order",
            "priority": "routine", "code": {"coding": [{"system": system, "code": code, "display": display}]},
            "subject": {"reference": f"Patient/{patient}"}, "authoredOn": "2026-03-02T08:55:00Z"}


@dataclass
class FakeEhr:
    """What the loopback EHR serves and what it saw."""

    url: str = ""
    data: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    jwks: dict[str, Any] = field(default_factory=lambda: {"keys": []})
    seen: list[tuple[str, str | None]] = field(default_factory=list)
    unsupported: frozenset[str] = frozenset()  # resource types this server has no search for

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.seen.append((path + "?" + scope["query_string"].decode(), headers.get("authorization")))
        status, body = 404, {"resourceType": "OperationOutcome", "issue": []}
        if path == "/jwks.json":
            status, body = 200, self.jwks
        elif path.startswith("/fhir/Patient/"):
            found = [r for r in self.data.get("patient", []) if r["id"] == path.rsplit("/", 1)[1]]
            if found:
                status, body = 200, found[0]
        elif path.startswith("/fhir/"):
            kind = path.removeprefix("/fhir/")
            key = {prefetch.resource_type(k): k for k in prefetch.TEMPLATES}.get(kind)
            if key and kind not in self.unsupported:
                status, body = 200, searchset(self.data.get(key, []))
        payload = json.dumps(body).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/fhir+json")]})
        await send({"type": "http.response.body", "body": payload})


@contextmanager
def serve(app: FakeEhr) -> Iterator[FakeEhr]:
    """Run `app` on a free 127.0.0.1 port with uvicorn in a background thread."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off", ws="none"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    app.url = f"http://127.0.0.1:{port}"
    try:
        yield app
    finally:
        server.should_exit = True
        thread.join(5)
