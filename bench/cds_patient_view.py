"""CDS Hooks patient-view with a realistic prefetch, sequentially or from concurrent clients.

The whole HTTP path: ES384 JWT verification (JWKS file) with the jti replay insert, request
parsing, validation of the prefetched resources the pathway can use, the pathway evaluation and the
cards. 200 Observations, one Condition, the Patient. A chart opened again sends the same prefetch,
and what was made of it (verdicts, facts) is remembered by its content, so only the first call per
patient validates; `cold` sends new contents on every call, the path of a prefetch never seen.
`python -m bench` reports it; this module can also be run alone:
`python -m bench.cds_patient_view [runs]` (in-process, SQLite).
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from bench import data
from bench.harness import ISSUER, Target, database, in_process, median, percentile
from service.cds.prefetch import TEMPLATES
from service.observability.logs import configure_logging

SERVICE = "/cds-services/carepath-patient-view"


class Ehr:
    """The EHR's signing key and its JWKS file, as Carepath is configured to trust it."""

    def __init__(self, directory: Path) -> None:
        self.key = ec.generate_private_key(ec.SECP384R1())
        public = jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        jwk = {**public, "kid": "bench"}
        self.jwks = directory / "jwks.json"
        self.jwks.write_text(json.dumps({"keys": [jwk]}))

    def token(self, audience: str) -> str:
        now = int(time.time())
        return jwt.encode({"iss": ISSUER, "aud": audience, "iat": now, "exp": now + 600,
                           "jti": str(uuid.uuid4())}, self.key, algorithm="ES384",
                          headers={"kid": "bench", "typ": "JWT"})


def _searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "total": len(resources),
            **({"entry": [{"resource": r} for r in resources]} if resources else {})}


def request_body(patient: str, observations: int = 200, variant: int = 0) -> bytes:
    """A patient-view request; each `variant` has different Observation contents (a cold cache)."""
    obs = [{**data.observation(patient, n), "id": f"{patient}-v{variant}-{n}"}
           for n in range(observations)]
    prefetch: dict[str, Any] = {key: _searchset([]) for key in TEMPLATES}  # every key discovery asks
    prefetch |= {"patient": {"resourceType": "Patient", "id": patient, "birthDate": "1980-01-01"},
                 "observations": _searchset(obs),
                 "conditions": _searchset([data.condition(patient)])}
    return json.dumps({"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
                       "context": {"userId": "Practitioner/bench", "patientId": patient},
                       "prefetch": prefetch}).encode()


async def call(target: Target, ehr: Ehr, body: bytes) -> bool:
    """One patient-view call; whether it answered 200 with a card."""
    response = await target.client.post(SERVICE, content=body, headers={
        "Authorization": f"Bearer {ehr.token(target.base_url + SERVICE)}",
        "Content-Type": "application/json"})
    return response.status_code == 200 and len(response.json()["cards"]) > 0


async def latencies(target: Target, ehr: Ehr, clients: int, calls: int, *, cold: bool = False,
                    warmup: int = 5) -> tuple[list[float], float, int]:
    """Wall seconds of each call (after `warmup` calls per client), server CPU per call, and how
    many calls failed. Each client views its own patient; with `cold`, every call sends new
    contents."""
    out: list[float] = []
    failed = 0

    async def client(c: int) -> None:
        patient = f"cds-{c}"
        warm = request_body(patient)
        for _ in range(warmup):
            await call(target, ehr, warm)
        bodies = [request_body(patient, variant=i + 1) for i in range(calls)] if cold else None
        await ready.wait()  # every client warmed up: start together
        nonlocal failed
        for i in range(calls):
            started = time.perf_counter()
            failed += not await call(target, ehr, bodies[i] if bodies else warm)
            out.append(time.perf_counter() - started)

    ready = asyncio.Barrier(clients + 1)
    tasks = [asyncio.create_task(client(c)) for c in range(clients)]
    await ready.wait()
    cpu = target.cpu()
    await asyncio.gather(*tasks)
    return out, (target.cpu() - cpu) / len(out), failed


async def run(runs: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        ehr = Ehr(Path(tmp))
        async with database("SQLite", Path(tmp), "cds") as url, in_process(url, ehr.jwks) as target:
            spent, _, _ = await latencies(target, ehr, 1, runs)
    return median(spent), percentile(spent, 0.99)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    configure_logging("WARNING")
    p50, p99 = asyncio.run(run(runs))
    print(f"CDS patient-view, 200 Observations prefetched, {runs} calls: "
          f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")


if __name__ == "__main__":
    main()
