"""The README's CDS Hooks example is a real request and the card it really gets."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.cds.support import ISSUER, SigningKey
from tests.conftest import FIXTURES, ROOT, make_settings

BASE = "http://127.0.0.1:8080"


def readme_example() -> tuple[dict, dict, str]:  # type: ignore[type-arg]
    section = (ROOT / "README.md").read_text().split("## CDS Hooks\n", 1)[1].split("\n## ", 1)[0]
    request = json.loads(section.split("```http\n", 1)[1].split("\n\n", 1)[1].split("\n```", 1)[0])
    card = json.loads(section.split("```json\n", 1)[1].split("\n```", 1)[0])["cards"][0]
    quoted = section.split("with this `detail`:\n\n", 1)[1].strip().split("\n")
    detail = "\n".join(re.sub(r"^> ?", "", line) for line in quoted)
    return request, card, detail


async def test_the_readme_request_gets_the_readme_card(client_for, sqlite_url: str, jwks_file: Path,
                                                       keys: dict[str, SigningKey]) -> None:
    request, card, detail = readme_example()
    client = await client_for(make_settings(sqlite_url, cds_allowed_issuers=[ISSUER], cds_jwks_file=jwks_file,
                                            base_url=BASE))
    bundle = (FIXTURES / "02-clinician-mri-blocked" / "step-1.bundle.json").read_bytes()
    stored = await client.post("/fhir", content=bundle, headers={"Content-Type": "application/fhir+json"})
    assert stored.status_code == 200, stored.text
    url = f"{BASE}/cds-services/carepath-imaging-order-sign"
    response = await client.post(url, json=request, headers={"Authorization": f"Bearer {keys['es'].token(url)}"})
    assert response.status_code == 200, response.text
    [got] = response.json()["cards"]
    assert got["detail"] == detail
    assert {**got, "detail": card["detail"]} == card
