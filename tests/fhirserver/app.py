"""A small but faithful FHIR R4 test server (in memory) that can be told to misbehave.

Interactions: read, search by identifier (`a,b` for either), create with `If-None-Exist`
(0 matches: 201 + Location + ETag; 1: 200 with the match; more: 412), update with `If-Match`
(412 on a stale ETag; update-as-create allowed), `/metadata`. Versions are `W/"n"`; errors are
OperationOutcomes. `POST /_control` injects faults: `failRatio` (share of calls answered with
`failStatus`), `failAfterWrite` (the write happens, then the answer is lost as an error), `statuses`
(a queue of statuses for the next calls), `retryAfter`, `stallSeconds`, `seed`; and
`subscriptionEvents` for the Backport `$events` operation. Write-back is also tested against an
independent server, Medplum's (tests/node/fhir-server.mjs); this one serves the SMART token
endpoint and scripted statuses.
"""

from __future__ import annotations

import asyncio
import copy
import random
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


def outcome(status: int, text: str, code: str = "processing") -> JSONResponse:
    body = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": text}],
    }
    return JSONResponse(body, status_code=status, media_type="application/fhir+json")


class FhirTestServer:
    def __init__(self) -> None:
        self.history: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.control: dict[str, Any] = {}
        self.statuses: list[int] = []
        self.calls: dict[str, int] = {}
        self.random = random.Random(0)
        self.next_id = 0
        self.tokens: list[str] = []
        self.assertions: list[dict[str, Any]] = []

    def current(self, kind: str) -> list[dict[str, Any]]:
        return [h[-1] for (k, _), h in self.history.items() if k == kind]

    def matches(self, kind: str, query: str) -> list[dict[str, Any]]:
        params = parse_qsl(query, keep_blank_values=True)
        found = []
        for resource in self.current(kind):
            ok = True
            for name, value in params:
                if name == "identifier":  # a comma separates alternatives
                    ok &= any(
                        i.get("value") == val and (not system or i.get("system") == system)
                        for system, _, val in (v.rpartition("|") for v in value.split(","))
                        for i in resource.get("identifier", [])
                    )
                elif name == "_count":
                    continue
                elif name == "target":
                    ok &= any(t.get("reference") == value for t in resource.get("target", []))
                else:
                    ok = False
            if ok:
                found.append(resource)
        return found

    def write(self, kind: str, rid: str | None, body: dict[str, Any]) -> dict[str, Any]:
        if rid is None:
            self.next_id += 1
            rid = f"srv{self.next_id}"
        versions = self.history.setdefault((kind, rid), [])
        stored = copy.deepcopy(body)
        stored["id"] = rid
        stored["meta"] = {
            **(body.get("meta") or {}),
            "versionId": str(len(versions) + 1),
            "lastUpdated": "2026-03-02T09:00:00Z",
        }
        versions.append(stored)
        return stored


def reply(resource: dict[str, Any], status: int, base: str) -> JSONResponse:
    version = resource["meta"]["versionId"]
    headers = {"ETag": f'W/"{version}"'}
    if status == 201:
        headers["Location"] = (
            f"{base}/{resource['resourceType']}/{resource['id']}/_history/{version}"
        )
    return JSONResponse(
        resource, status_code=status, headers=headers, media_type="application/fhir+json"
    )


def create_fhir_test_server() -> FastAPI:
    app = FastAPI()
    state = FhirTestServer()
    app.state.fhir = state

    @app.post("/_control")
    async def set_control(request: Request) -> dict[str, Any]:
        body = await request.json()
        state.statuses = list(body.pop("statuses", []))
        state.control = body
        if "seed" in body:
            state.random.seed(body["seed"])
        return {"ok": True}

    @app.get("/_control/state")
    async def get_state() -> dict[str, Any]:
        return {
            "calls": state.calls,
            "tokens": state.tokens,
            "assertions": state.assertions,
            "resources": {f"{k}/{i}": h for (k, i), h in state.history.items()},
        }

    @app.middleware("http")
    async def faults(request: Request, call_next: Any) -> Any:
        if request.url.path.startswith(("/_control", "/auth/")):
            return await call_next(request)
        if (
            state.control.get("requireToken")
            and request.headers.get("Authorization", "").removeprefix("Bearer ") not in state.tokens
        ):
            return outcome(401, "a valid bearer token is required", "login")
        key = f"{request.method} {request.url.path.split('/')[1] or 'transaction'}"
        state.calls[key] = state.calls.get(key, 0) + 1
        c = state.control
        if c.get("stallSeconds"):
            await asyncio.sleep(float(c["stallSeconds"]))
        headers = {"Retry-After": str(c["retryAfter"])} if "retryAfter" in c else {}
        if state.statuses:
            status = state.statuses.pop(0)
            if status >= 400:
                response = outcome(status, f"injected {status}")
                response.headers.update(headers)
                return response
        failing = state.random.random() < float(c.get("failRatio", 0))
        if failing and not c.get("failAfterWrite"):
            response = outcome(int(c.get("failStatus", 503)), "injected failure", "transient")
            response.headers.update(headers)
            return response
        response = await call_next(request)
        if failing:  # the write happened, but the client never learns it did
            return outcome(
                int(c.get("failStatus", 503)), "injected failure after write", "transient"
            )
        return response

    @app.post("/auth/token")
    async def token(request: Request) -> Any:
        """SMART Backend Services token endpoint: checks the signed client assertion."""
        import jwt  # the test server only: verify RS384/ES384 assertions with the client's key

        form = dict(parse_qsl((await request.body()).decode()))
        key = state.control.get("clientPublicKey")
        try:
            claims = jwt.decode(
                form.get("client_assertion", ""),
                key,
                algorithms=["RS384", "ES384"],
                audience=str(request.url),
            )
        except jwt.PyJWTError as exc:
            return JSONResponse({"error": "invalid_client", "error_description": str(exc)}, 401)
        if form.get("grant_type") != "client_credentials" or claims["iss"] != claims["sub"]:
            return JSONResponse({"error": "invalid_grant"}, 400)
        state.tokens.append(f"tok-{len(state.tokens) + 1}")
        state.assertions.append(jwt.get_unverified_header(form["client_assertion"]))
        return {
            "access_token": state.tokens[-1],
            "token_type": "bearer",
            "expires_in": 3600,
            "scope": form.get("scope", ""),
        }

    @app.get("/metadata")
    async def metadata() -> dict[str, Any]:
        return {
            "resourceType": "CapabilityStatement",
            "status": "active",
            "kind": "instance",
            "fhirVersion": "4.0.1",
            "format": ["json"],
            "date": "2026-03-02",
        }

    @app.get("/Subscription/{sid}/$events")
    async def subscription_events(sid: str, request: Request) -> Any:
        """Backport 1.1 `$events`: the Subscription's past events as a query-event notification
        Bundle, full-resource. Events are set with `/_control` `{"subscriptionEvents": {sid:
        [{"number": 2, "focus": "Observation/x"}]}}`; 404 when none are set (unsupported)."""
        events = state.control.get("subscriptionEvents", {}).get(sid)
        if events is None:
            return outcome(404, "$events is not supported for this Subscription", "not-supported")
        since = int(request.query_params.get("eventsSinceNumber", "1"))
        until = int(request.query_params.get("eventsUntilNumber", str(10**9)))
        chosen = [e for e in events if since <= e["number"] <= until]
        base = str(request.base_url).rstrip("/")
        parameters = [
            {"name": "subscription", "valueReference": {"reference": f"{base}/Subscription/{sid}"}},
            {"name": "status", "valueCode": "active"},
            {"name": "type", "valueCode": "query-event"},
            {"name": "events-since-subscription-start", "valueString": str(len(events))},
        ] + [{"name": "notification-event", "part": [
            {"name": "event-number", "valueString": str(e["number"])},
            {"name": "focus", "valueReference": {"reference": f"{base}/{e['focus']}"}}]}
            for e in chosen]
        entries = [{"fullUrl": f"{base}/{e['focus']}",
                    "resource": state.history[tuple(e["focus"].split("/"))][-1],
                    "request": {"method": "PUT", "url": e["focus"]}} for e in chosen]
        return {"resourceType": "Bundle", "type": "history", "entry": [
            {"resource": {"resourceType": "Parameters", "parameter": parameters},
             "request": {"method": "GET", "url": f"{base}/Subscription/{sid}/$status"}},
            *entries]}

    @app.get("/{kind}/{rid}")
    async def read(kind: str, rid: str) -> Any:
        versions = state.history.get((kind, rid))
        if not versions:
            return outcome(404, f"{kind}/{rid} not found", "not-found")
        return reply(versions[-1], 200, "")

    @app.get("/{kind}")
    async def search(kind: str, request: Request) -> Any:
        found = state.matches(kind, request.url.query)
        return {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(found),
            "entry": [{"resource": r} for r in found],
        }

    @app.post("/{kind}")
    async def create(kind: str, request: Request) -> Any:
        body = await request.json()
        if body.get("resourceType") != kind:
            return outcome(400, "resourceType does not match the URL", "invalid")
        base = str(request.base_url).rstrip("/")
        condition = request.headers.get("If-None-Exist")
        if condition:
            found = state.matches(kind, condition)
            if len(found) > 1:
                return outcome(412, "If-None-Exist matched more than one resource", "duplicate")
            if found:
                return reply(found[0], 200, base)
        return reply(state.write(kind, None, body), 201, base)

    @app.put("/{kind}/{rid}")
    async def update(kind: str, rid: str, request: Request) -> Any:
        body = await request.json()
        if body.get("resourceType") != kind or body.get("id") != rid:
            return outcome(400, "resourceType/id do not match the URL", "invalid")
        versions = state.history.get((kind, rid))
        expected = request.headers.get("If-Match")
        if expected and (not versions or expected != f'W/"{versions[-1]["meta"]["versionId"]}"'):
            return outcome(412, f"If-Match {expected} is not the current version", "conflict")
        return reply(state.write(kind, rid, body), 200 if versions else 201, "")

    return app
