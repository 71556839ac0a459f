"""Real FHIR written by others (../shared/corpora): valid R4 is accepted, only what R4 forbids is
refused (4xx naming the element), and nothing gives a server error."""

from __future__ import annotations

import copy
import json
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import ROOT, make_settings

CORPORA = ROOT.parent / "shared" / "corpora"
HL7 = sorted((CORPORA / "hl7-r4-examples").glob("*.json"))
SYNTHEA = sorted((CORPORA / "synthea-r4-bundles").glob("*.json"))

# What the HL7 R4 examples get, and why anything is refused. Everything not listed is accepted.
REFUSED = {
    "Observation-clinical-gender.json":
        "Observation.performer references Encounter/example; R4 allows Practitioner, PractitionerRole, "
        "Organization, CareTeam, Patient or RelatedPerson (the example is not valid R4)",
}


def test_the_corpora_are_there() -> None:
    assert len(HL7) == 140 and len(SYNTHEA) == 6


async def test_every_hl7_r4_example_is_accepted_unless_r4_forbids_it(client_for, sqlite_url) -> None:  # type: ignore[no-untyped-def]
    client = await client_for(make_settings(sqlite_url))
    statuses: dict[str, int] = {}
    refused: dict[str, Any] = {}
    for path in HL7:
        resource = json.loads(path.read_text())
        response = await client.post(f"/fhir/{resource['resourceType']}", json=resource)
        statuses[path.name] = response.status_code
        if response.status_code >= 400:
            refused[path.name] = response.json()["issue"]
    summary = Counter(statuses.values())
    print(f"\nHL7 R4 examples: {summary}; refused: {sorted(refused)}")
    assert not [n for n, s in statuses.items() if s >= 500]
    assert sorted(refused) == sorted(REFUSED)
    issue = refused["Observation-clinical-gender.json"][0]
    assert issue["expression"] == ["Observation.performer[0].reference"]
    assert set(summary) <= {200, 201, 422}


async def test_every_synthea_transaction_is_stored_with_warnings_for_unusable_pain_scores(client_for, sqlite_url) -> None:  # type: ignore[no-untyped-def]
    """2a.12: Synthea's decimal pain scores (LOINC 72514-3) are valid R4: stored, left out of the
    rules with a located warning; resource types the pathway does not use are acknowledged."""
    client = await client_for(make_settings(sqlite_url))
    for path in SYNTHEA:
        bundle = json.loads(path.read_text())
        response = await client.post("/fhir", json=bundle)
        assert response.status_code == 200, response.text[:2000]
        answers = response.json()["entry"]
        assert len(answers) == len(bundle["entry"])
        assert all(a["response"]["status"].startswith("20") for a in answers), path.name
        pain = [i for i, e in enumerate(bundle["entry"])
                if any(c.get("code") == "72514-3" for c in e["resource"].get("code", {}).get("coding", []))
                and not float(e["resource"]["valueQuantity"]["value"]).is_integer()]
        assert pain, path.name
        for i in pain:
            issue = answers[i]["response"]["outcome"]["issue"][0]
            assert issue["severity"] == "warning"
            assert issue["expression"] == [f"Bundle.entry[{i}].resource.valueQuantity"]
            assert "not a whole number" in issue["diagnostics"]
            stored = await client.get(f"/fhir/{answers[i]['response']['location']}")
            assert stored.status_code == 200
            assert stored.json()["valueQuantity"]["value"] == bundle["entry"][i]["resource"]["valueQuantity"]["value"]
        others = [a for a, e in zip(answers, bundle["entry"], strict=True) if e["resource"]["resourceType"] == "Claim"]
        assert others and all(a["response"]["outcome"]["issue"][0]["severity"] == "information" for a in others)


# --- single-violation mutations of valid resources: each must be refused, naming the element ------
def _load(name: str) -> dict[str, Any]:
    return json.loads((CORPORA / "hl7-r4-examples" / name).read_text())


Mutation = Callable[[dict[str, Any]], None]
_OBS, _CON, _PAT, _PROC = "Observation-example.json", "Condition-example.json", "Patient-example.json", "Procedure-example.json"
MUTATIONS: list[tuple[str, str, Mutation, str]] = [
    ("Condition clinicalStatus bogus", _CON, lambda r: r.update(clinicalStatus={"coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "bogus"}]}), "Condition.clinicalStatus"),
    ("Quantity comparator approx", _OBS, lambda r: r["valueQuantity"].update(comparator="approx"), "Observation.valueQuantity.comparator"),
    ("narrative status bogus", _OBS, lambda r: r["text"].update(status="bogus"), "Observation.text.status"),
    ("Patient gender m", _PAT, lambda r: r.update(gender="m"), "Patient.gender"),
    ("Observation status bogus", _OBS, lambda r: r.update(status="bogus"), "Observation.status"),
    ("Procedure status done", _PROC, lambda r: r.update(status="done"), "Procedure.status"),
    ("con-5 clinicalStatus with entered-in-error", _CON, lambda r: r.update(verificationStatus={"coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "entered-in-error"}]}), "Condition"),
    ("obs-6 dataAbsentReason with a value", _OBS, lambda r: r.update(dataAbsentReason={"text": "lost"}), "Observation"),
    ("ext-1 extension with value and extensions", _OBS, lambda r: r.update(extension=[
        {"url": "http://example.org/x", "valueString": "a", "extension": [{"url": "y", "valueString": "b"}]}]), "Observation.extension[0]"),
    ("per-1 period ends before it starts", _OBS, lambda r: (r.pop("effectiveDateTime", None), r.update(
        effectivePeriod={"start": "2020-01-02", "end": "2020-01-01"})), "Observation.effectivePeriod"),
    ("qty-3 unit code without system", _OBS, lambda r: r["valueQuantity"].pop("system"), "Observation.valueQuantity"),
    ("JSON null", _OBS, lambda r: r.update(issued=None), "Observation.issued"),
    ("empty array", _OBS, lambda r: r.update(category=[]), "Observation.category"),
    ("empty object", _OBS, lambda r: r.update(method={}), "Observation.method"),
    ("empty string", _OBS, lambda r: r["code"].update(text=""), "Observation.code.text"),
    ("decimal as a JSON string", _OBS, lambda r: r["valueQuantity"].update(value="5.2"), "Observation.valueQuantity.value"),
    ("reference to the wrong type", _OBS, lambda r: r.update(subject={"reference": "Practitioner/x"}), "Observation.subject.reference"),
    ("subject as a plain string", _OBS, lambda r: r.update(subject="Patient/example"), "Observation.subject"),
    ("invalid dateTime", _OBS, lambda r: r.update(effectiveDateTime="2020-13-01"), "Observation.effectiveDateTime"),
    ("unknown element", _OBS, lambda r: r.update(colour="red"), "Observation.colour"),
    ("missing required code", _OBS, lambda r: r.pop("code"), "Observation.code"),
    ("two value[x]", _OBS, lambda r: r.update(valueString="x"), "Observation.valueString"),
    ("repeating element as an object", _OBS, lambda r: r.update(category={"text": "x"}), "Observation.category"),
    ("single element as an array", _OBS, lambda r: r.update(status=["final"]), "Observation.status"),
    ("integer with a fraction", _PAT, lambda r: r.update(multipleBirthInteger=1.5), "Patient.multipleBirthInteger"),
    ("boolean as a string", _PAT, lambda r: r.update(active="true"), "Patient.active"),
    ("invalid id", _OBS, lambda r: r.update(id="no spaces allowed"), "Observation.id"),
]


@pytest.mark.parametrize(("name", "source", "mutate", "element"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
async def test_a_single_violation_is_refused_naming_the_element(client: httpx.AsyncClient, name: str, source: str,
                                                                mutate: Mutation, element: str) -> None:
    resource = _load(source)
    assert (await client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource)).status_code in (200, 201)
    bad = copy.deepcopy(resource)
    mutate(bad)
    response = await client.put(f"/fhir/{bad['resourceType']}/{quote(bad['id'])}", json=bad)
    # an invalid id is in the URL too, and a URL that names no possible resource is a 400
    assert response.status_code == (400 if name == "invalid id" else 422), response.text
    expressions = [e for i in response.json()["issue"] for e in i.get("expression", [])]
    assert element in expressions, (name, response.json())
    assert "Invalid JSON" not in response.text
