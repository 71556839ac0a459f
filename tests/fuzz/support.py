"""What the fuzz tests share: the app's settings (API token, an ES384 JWKS for CDS Hooks, one
webhook source), a Schemathesis configuration with a fixed seed and a bounded budget, an auth
provider that puts the right credential on each generated request, the signing of webhook bodies,
and a count of every status the app answered."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from schemathesis.config import SchemathesisConfig

from service.config import Settings, WebhookSource
from tests.cds.support import ISSUER, SigningKey, es384
from tests.conftest import TOKEN, fresh_postgres_database, make_settings
from tests.webhooks.support import SECRET, WHSEC, medplum_headers, standard_headers

SEED = 15
# Fuzzed cases per operation (the examples and coverage phases add their own); CI's budget.
# A long local run: FUZZ_EXAMPLES=1000 (FUZZ_REPORT=file appends each run's counts).
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
SOURCE = "engine"
KEY: SigningKey = es384("fuzz-ehr")
# Known-good values for most generated path parameters, so requests get past 404 into the parsers
KNOWN = {
    "source": [SOURCE],
    "pathway_id": ["lumbar-radiculopathy"],
    "service_id": ["carepath-patient-view", "carepath-imaging-order-select",
                   "carepath-imaging-order-sign"],
    "resource_type": ["Observation", "Condition", "Procedure", "Patient", "CarePlan",
                      "ServiceRequest", "Task", "DiagnosticReport"],
}


def fuzz_settings(database_url: str, jwks: Path, base_url: str, **extra: Any) -> Settings:
    return make_settings(database_url, cds_allowed_issuers=[ISSUER], cds_jwks_file=jwks,
                         base_url=base_url, webhook_sources=[WebhookSource(
                             name=SOURCE, secrets=[SECRET, WHSEC])], **extra)


def write_jwks(directory: Path) -> Path:
    path = directory / "ehr-jwks.json"
    path.write_text(json.dumps({"keys": [KEY.jwk()]}))
    return path


def fuzz_config(examples: int = EXAMPLES) -> SchemathesisConfig:
    """Examples, coverage and fuzzing phases; every check but `positive_data_acceptance`: the
    documented body schema is any JSON object, far wider than valid FHIR, so most schema-valid
    bodies are rightly refused (no response-time limit is set: no timed assertions in tests)."""
    return SchemathesisConfig.from_dict({
        "seed": SEED,
        "suppress-health-check": ["all"],
        "generation": {"max-examples": examples, "database": "none", "deterministic": True},
        "phases": {"examples": {"enabled": True}, "coverage": {"enabled": True},
                   "fuzzing": {"enabled": True}, "stateful": {"enabled": False}},
        "checks": {"positive_data_acceptance": {"enabled": False}},
        "dictionaries": {name: {"values": values} for name, values in KNOWN.items()},
        "parameters": {f"path.{name}": {"dictionary": name, "probability": 0.8}
                       for name in KNOWN},
    })


class Credentials:
    """Schemathesis auth provider: the API token, or for CDS Hooks calls a fresh ES384 JWT whose
    `aud` is the URL called (webhooks are signed over their body in `webhook_kwargs`)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def get(self, case: Any, ctx: Any) -> str:
        return TOKEN

    def set(self, case: Any, data: str, ctx: Any) -> None:
        path = case.operation.path
        if path.startswith("/webhooks/"):
            return
        if path.startswith("/cds-services/") and case.method.upper() == "POST":
            data = KEY.token(self.base_url + case.formatted_path)
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


def with_credentials(schema: Any, base_url: str) -> Any:
    class CarepathCredentials(Credentials):
        def __init__(self) -> None:
            super().__init__(base_url)

    schema.auth(refresh_interval=None)(CarepathCredentials)
    return schema


def webhook_kwargs(case: Any) -> dict[str, Any]:
    """Send a webhook's generated body as exact bytes, signed the way its route expects."""
    if not case.operation.path.startswith("/webhooks/"):
        return {}
    body = _bytes(case.body)
    content_type = (case.headers or {}).get("Content-Type") or case.media_type or "application/json"
    route = case.operation.path.rsplit("/", 1)[1]
    if route == "subscription":
        signed = {"Authorization": f"Bearer {SECRET}"}
    elif route == "resource":
        signed = medplum_headers(body)
    else:
        # the library signs text: a body that is not UTF-8 gets a signature that cannot match
        text = body.decode("utf-8", "replace").encode()
        signed = standard_headers(text, msg_id=f"msg_{uuid.uuid4().hex}")
    return {"data": body, "headers": {**signed, "Content-Type": content_type}}


def _bytes(body: Any) -> bytes:
    if type(body).__name__ == "NotSet":
        return b""
    if isinstance(body, bytes | str):  # raw bodies of negative cases
        return body.encode() if isinstance(body, str) else body
    return json.dumps(body).encode()


class CountingApp:
    """ASGI wrapper counting every status the app answers (checks' own probes included)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.statuses: Counter[int] = Counter()
        self.by_route: Counter[tuple[str, str, int]] = Counter()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def counted(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.statuses[message["status"]] += 1
                route = getattr(scope.get("route"), "path", "unmatched")
                self.by_route[(scope["method"], route, message["status"])] += 1
            await send(message)

        await self.app(scope, receive, counted)


def report(name: str, statuses: Counter[int],
           by_route: Counter[tuple[str, str, int]] | None = None) -> str:
    """One line per run, also appended to $FUZZ_REPORT when set."""
    routes: dict[str, dict[str, int]] = {}
    for (method, route, status), n in sorted((by_route or Counter()).items()):
        routes.setdefault(f"{method} {route}", {})[str(status)] = n
    line = json.dumps({"run": name, "requests": sum(statuses.values()),
                       "statuses": {str(k): v for k, v in sorted(statuses.items())},
                       "operations": routes})
    if os.environ.get("FUZZ_REPORT"):
        with open(os.environ["FUZZ_REPORT"], "a") as out:
            out.write(line + "\n")
    return line


@contextmanager
def database(kind: str, directory: Path) -> Iterator[str]:
    """A SQLite file or a fresh PostgreSQL database, from a synchronous fixture."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{directory / 'fuzz.db'}"
        return
    loop = asyncio.new_event_loop()
    manager = fresh_postgres_database()
    try:
        yield loop.run_until_complete(manager.__aenter__())
    finally:
        loop.run_until_complete(manager.__aexit__(None, None, None))
        loop.close()


def stop_asgi_lifespans() -> None:
    """Schemathesis runs an ASGI app's lifespan in its own thread; end it before the database."""
    from schemathesis.python import asgi

    asgi.shutdown_lifespans()

