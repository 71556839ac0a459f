"""A real `carepath serve` on loopback (PostgreSQL, the JSON logs it writes captured): the 24
clinical scenarios, the hostile inputs of issue 15 on kept-alive connections, and a Schemathesis
run over HTTP. Then every log line is read: none may carry a patient id or a resource id that was
used, and no request may have had a 5xx. The tests run in file order and share the server."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis

from tests.cds.support import ISSUER
from tests.conftest import FIXTURES, ROOT, TOKEN
from tests.fuzz.support import (
    KEY,
    SOURCE,
    database,
    fuzz_config,
    report,
    webhook_kwargs,
    with_credentials,
    write_jwks,
)
from tests.support.scenarios import expectation_failures, load_case, run_case
from tests.webhooks.support import SECRET, WHSEC

pytestmark = pytest.mark.postgres
FHIR = {"Content-Type": "application/fhir+json"}
# Ids sent on purpose in hostile requests: they must not reach the logs either
HOSTILE_IDS = ["lrp-03", "a" * 65, "race-loopback-1", "deep-loopback-1"]


@dataclass
class Served:
    url: str
    log: Path
    used_ids: set[str] = field(default_factory=set)
    process: subprocess.Popen[bytes] | None = None


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    directory = tmp_path_factory.mktemp("loopback")
    with database("postgresql", directory) as database_url:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("CAREPATH_") and k not in ("DATABASE_URL", "FHIR_SERVER_URL")}
        env.update(DATABASE_URL=database_url, CAREPATH_API_TOKENS=TOKEN, CAREPATH_PORT=str(port),
                   CAREPATH_HOST="127.0.0.1", CAREPATH_BASE_URL=url, CAREPATH_RUN_WORKER="false",
                   CAREPATH_FIXED_NOW="2026-03-02T09:00:00Z", CAREPATH_LOG_LEVEL="INFO",
                   CAREPATH_CDS_ALLOWED_ISSUERS=ISSUER,
                   CAREPATH_CDS_JWKS_FILE=str(write_jwks(directory)),
                   CAREPATH_WEBHOOK_SOURCES=json.dumps([{"name": SOURCE,
                                                         "secrets": [SECRET, WHSEC]}]))
        log = directory / "carepath.log"
        with log.open("wb") as out:
            process = subprocess.Popen([sys.executable, "-m", "service.entrypoints.cli", "serve"],
                                       cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
            try:
                _wait_until_up(url, process)
                yield Served(url, log, process=process)
            finally:
                process.terminate()
                process.wait(30)


def _wait_until_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, "carepath serve exited"
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError("carepath serve did not come up")


async def test_the_scenarios_run_over_loopback(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.url, timeout=60,
                                 headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        for folder in sorted(p for p in FIXTURES.iterdir() if (p / "case.json").exists()):
            case = load_case(folder)
            for step in case["steps"]:
                bundle = json.loads((folder / step).read_bytes())
                served.used_ids |= {e["resource"]["id"] for e in bundle["entry"]}
            outputs = await run_case(client, folder)
            assert expectation_failures(case, outputs) == [], folder.name
            served.used_ids |= {r["id"] for r in
                                [*outputs.careplans, *outputs.service_requests, *outputs.tasks]}
            patient = case["patient"]
            served.used_ids.add(patient)
            assert (await client.get(f"/patients/{patient}/timeline")).status_code == 200
            applied = await client.post("/fhir/PlanDefinition/lumbar-radiculopathy/$apply",
                                        params={"subject": f"Patient/{patient}"})
            assert applied.status_code == 200


async def test_hostile_inputs_get_4xx_and_keep_the_connection(served: Served) -> None:
    observation = json.loads((FIXTURES / "03-urinary-retention" / "step-1.bundle.json")
                             .read_text())["entry"]
    base = next(e["resource"] for e in observation if e["resource"]["resourceType"] ==
                "Observation")
    race = {**base, "id": "race-loopback-1"}
    deep: dict[str, Any] = {"url": "http://example.org/x", "valueString": "leaf"}
    for _ in range(150):
        deep = {"url": "http://example.org/x", "extension": [deep]}
    limits = httpx.Limits(max_connections=4, max_keepalive_connections=4)
    async with httpx.AsyncClient(base_url=served.url, timeout=60, limits=limits,
                                 headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        cds = f"{served.url}/cds-services/carepath-patient-view"
        attempts = [
            client.post("/admin/outbox/9223372036854775808/retry"),
            client.post("/admin/outbox/2147483648/retry"),
            client.get("/fhir/ServiceRequest", params={"subject": "Patient/lrp-03\x00"}),
            client.post("/fhir/Observation", json={**base, "id": "a" * 65}, headers=FHIR),
            client.post("/fhir/Observation", headers=FHIR, json={
                **base, "id": "hostile-2", "subject": {"reference": "Patient/" + "x" * 10_000}}),
            client.post("/fhir/Observation", json={**base, "id": "deep-loopback-1",
                                                   "extension": [deep]}, headers=FHIR),
            client.post("/fhir/PlanDefinition/lumbar-radiculopathy/$apply", headers=FHIR,
                        json={"resourceType": "Parameters", "parameter": ["x"]}),
            client.post(cds, json={}, headers={"Authorization": "Bearer "
                                               + KEY.token(cds, exp_in=10**400)}),
            *(client.post("/fhir/Observation", json=race, headers=FHIR) for _ in range(20)),
        ]
        answers = await asyncio.gather(*attempts)
    statuses = [a.status_code for a in answers]
    assert all(400 <= s < 500 for s in statuses[:8]), statuses
    assert sorted(statuses[8:]) == [200] * 19 + [201], statuses
    assert not any(a.headers.get("connection") == "close" for a in answers)


@pytest.fixture(scope="module")
def loopback_schema(served: Served) -> Any:
    schema = schemathesis.openapi.from_url(f"{served.url}/openapi.json", config=fuzz_config())
    return with_credentials(schema, served.url)


schema = schemathesis.pytest.from_fixture("loopback_schema")


@schema.parametrize()
def test_fuzzing_over_loopback_finds_no_undocumented_answer(case: Any) -> None:
    case.call_and_validate(**webhook_kwargs(case))


def test_the_logs_hold_no_identifier_and_no_server_error(served: Served) -> None:
    text = served.log.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    statuses = Counter(line["status"] for line in lines if line.get("event") == "request")
    print(report("loopback-postgresql (scenarios, hostile inputs, fuzzing)", statuses))
    assert sum(statuses.values()) > 500, "the scenario and fuzz runs did not happen"
    assert not [s for s in statuses if s >= 500], statuses
    assert len(served.used_ids) > 800
    evaluated = [line for line in lines if line.get("event") == "evaluated"]
    assert len(evaluated) >= 24 and all(len(line["patient"]) == 18 for line in evaluated)
    assert hashlib.sha256(b"lrp-03").hexdigest()[:12] not in text  # the old, unkeyed pseudonym
    leaked = sorted(i for i in served.used_ids | set(HOSTILE_IDS) if i in text)
    assert leaked == [], f"identifiers in the logs: {leaked[:10]}"
