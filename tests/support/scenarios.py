"""Run a clinical scenario through the real API and compare with the spec's expectations."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

EXT = "http://carepath.example.org/fhir/StructureDefinition/rule-result"


@dataclass
class ScenarioOutputs:
    careplans: list[dict[str, Any]]
    service_requests: list[dict[str, Any]]
    tasks: list[dict[str, Any]]

    def rule_outcomes(self) -> dict[str, str]:
        outcomes: dict[str, str] = {}
        for careplan in self.careplans:
            for ext in careplan.get("extension", []):
                if ext["url"] == EXT:
                    parts = {p["url"]: p for p in ext["extension"]}
                    outcomes[parts["rule"]["valueString"]] = parts["outcome"]["valueCode"]
        return outcomes


def stable(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop server bookkeeping (versionId, lastUpdated); order by id."""
    out = []
    for resource in sorted(resources, key=lambda r: r["id"]):
        meta = {k: v for k, v in resource.get("meta", {}).items() if k not in ("versionId", "lastUpdated")}
        out.append({**resource, "meta": meta})
    return out


def load_case(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "case.json").read_text())


async def run_case(client: httpx.AsyncClient, folder: Path, steps: list[str] | None = None) -> ScenarioOutputs:
    """Post the scenario's Bundles (or the given steps) in order, then read back our outputs."""
    case = load_case(folder)
    for step in case["steps"] if steps is None else steps:
        response = await client.post("/fhir", content=(folder / step).read_bytes(),
                                     headers={"Content-Type": "application/fhir+json"})
        assert response.status_code == 200, response.text
    subject = {"subject": f"Patient/{case['patient']}"}
    found = {}
    for kind in ("CarePlan", "ServiceRequest", "Task"):
        bundle = (await client.get(f"/fhir/{kind}", params=subject)).json()
        found[kind] = [e["resource"] for e in bundle.get("entry", [])
                       if any(str(i.get("value", "")).startswith("urn:lrp:")
                              for i in e["resource"].get("identifier", []))]
    return ScenarioOutputs(found["CarePlan"], found["ServiceRequest"], found["Task"])


def _has_code(resource: dict[str, Any], system: str, code: str) -> bool:
    return any(c.get("system") == system and c.get("code") == code
               for c in resource.get("code", {}).get("coding", []))


def _has_site(resource: dict[str, Any], site: dict[str, str]) -> bool:
    sites = resource.get("bodySite", [])
    coded = any(c.get("system") == site["system"] and c.get("code") == site["code"]
                for s in sites for c in s.get("coding", []))
    texted = "text" not in site or any(s.get("text") == site["text"] for s in sites)
    return coded and texted


def expectation_failures(case: dict[str, Any], outputs: ScenarioOutputs) -> list[str]:
    """Every way the outputs differ from what the clinical spec expects for this scenario."""
    expect = case.get("expect", {})
    live = [r for r in outputs.service_requests if r["status"] not in ("revoked", "entered-in-error")]
    problems = []
    for want in expect.get("requests", []):
        matches = [r for r in live if _has_code(r, want["system"], want["code"])]
        if not matches:
            problems.append(f"missing request {want['code']}")
            continue
        for field in ("priority", "status"):
            if field in want and all(r.get(field) != want[field] for r in matches):
                problems.append(f"request {want['code']} {field} {[r.get(field) for r in matches]} != {want[field]}")
        if "bodySite" in want and not any(_has_site(r, want["bodySite"]) for r in matches):
            sites = [r.get('bodySite') for r in matches]
            problems.append(f"request {want['code']} bodySite {sites} lacks {want['bodySite']}")
    for unwanted in expect.get("absentRequests", []):
        if any(_has_code(r, unwanted["system"], unwanted["code"]) for r in live):
            problems.append(f"unexpected request {unwanted['code']}")
    codes = [(c["system"], c["code"]) for r in live for c in r["code"]["coding"][:1]]
    if len(codes) != len(set(codes)):
        problems.append(f"duplicate requests for the same order: {sorted(codes)}")
    open_tasks = {c["code"] for t in outputs.tasks if t["status"] not in ("cancelled", "completed")
                  for c in t["code"]["coding"]}
    for task in expect.get("tasks", []):
        if task not in open_tasks:
            problems.append(f"missing task {task} (open: {sorted(open_tasks)})")
    for task in expect.get("absentTasks", []):
        if task in open_tasks:
            problems.append(f"unexpected task {task}")
    outcomes = outputs.rule_outcomes()
    for rule, outcome in expect.get("rules", {}).items():
        if outcomes.get(rule) != outcome:
            problems.append(f"rule {rule} is {outcomes.get(rule)}, expected {outcome}")
    return problems
