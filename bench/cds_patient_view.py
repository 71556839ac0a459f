"""`python -m bench.cds_patient_view`: CDS Hooks patient-view latency with a realistic prefetch.

The whole HTTP path over ASGI: ES384 JWT verification (JWKS file) with the jti replay insert, request
parsing, validation of every prefetched resource, the pathway evaluation and the cards. 200
Observations, one Condition, the Patient; p50/p99 over `RUNS` calls after a warm-up.
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

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from bench import data
from bench.harness import median, percentile
from service.config import Settings
from service.entrypoints.app import create_app
from service.observability.logs import configure_logging

ISSUER = "https://ehr.bench"
BASE = "http://bench"
SERVICE = "/cds-services/carepath-patient-view"
RUNS = 300


def _searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


def request_body(observations: int = 200) -> bytes:
    patient = "bench-cds"
    prefetch = {"patient": {"resourceType": "Patient", "id": patient, "birthDate": "1980-01-01"},
                "observations": _searchset([data.observation(patient, n) for n in range(observations)]),
                "conditions": _searchset([data.condition(patient)]),
                "procedures": _searchset([])}
    return json.dumps({"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
                       "context": {"userId": "Practitioner/bench", "patientId": patient},
                       "prefetch": prefetch}).encode()


async def run(runs: int = RUNS) -> tuple[float, float, int]:
    """p50 and p99 seconds and the number of cards of the last answer."""
    key = ec.generate_private_key(ec.SECP384R1())
    jwk = {**jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": "bench"}
    with tempfile.TemporaryDirectory() as tmp:
        jwks = Path(tmp) / "jwks.json"
        jwks.write_text(json.dumps({"keys": [jwk]}))
        settings = Settings(database_url=f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}", fixed_now=data.AS_OF,
                            run_worker=False, log_level="WARNING", cds_allowed_issuers=[ISSUER],
                            cds_jwks_file=jwks)
        app = create_app(settings)
        body = request_body()
        now = int(time.time())
        tokens = [jwt.encode({"iss": ISSUER, "aud": BASE + SERVICE, "iat": now, "exp": now + 600,
                              "jti": str(uuid.uuid4())}, key, algorithm="ES384",
                             headers={"kid": "bench", "typ": "JWT"}) for _ in range(runs + 20)]
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
            out: list[float] = []
            cards = 0
            for i, token in enumerate(tokens):
                started = time.perf_counter()
                response = await client.post(SERVICE, content=body, headers={
                    "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
                elapsed = time.perf_counter() - started
                if response.status_code != 200:
                    raise SystemExit(f"patient-view failed: {response.status_code} {response.text}")
                cards = len(response.json()["cards"])
                if i >= 20:
                    out.append(elapsed)
    return median(out), percentile(out, 0.99), cards


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else RUNS
    configure_logging("WARNING")
    p50, p99, cards = asyncio.run(run(runs))
    print(f"CDS patient-view, 200 Observations prefetched, {runs} calls: "
          f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms ({cards} card)")


if __name__ == "__main__":
    main()
