"""An independent FHIR server for write-back tests (Medplum's router, tests/node/fhir-server.mjs),
and what we check on it after Carepath wrote back: each of our resources once, at its newest
version, every reference resolvable there, and Provenance that says what the server did."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from service.adapters import tables as t
from service.fhir.references import literal_references

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
WRITTEN = ("CarePlan", "ServiceRequest", "Task")
MARK = "urn:carepath:"
DEVICE_IDENTIFIER = "urn:carepath:device"


class Medplum:
    """Client for the server's FHIR base and its `/$admin` endpoints."""

    def __init__(self, url: str) -> None:
        self.url = url

    def control(self, **settings: Any) -> None:
        httpx.post(f"{self.url}/$admin/control", json=settings, timeout=30).raise_for_status()

    def reset(self) -> None:
        httpx.post(f"{self.url}/$admin/reset", timeout=30).raise_for_status()

    def state(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/$admin/state", timeout=60).json()  # type: ignore[no-any-return]

    def seed(self, bundle: bytes) -> None:
        """The EHR's own copy of the inputs (the Bundle's PUTs, ids kept), sent as a batch:
        Medplum refuses transactions of more than 50 updates."""
        body = {**json.loads(bundle), "type": "batch"}
        response = httpx.post(self.url, json=body, timeout=60)
        assert response.status_code == 200, response.text[:2000]
        failed = [e["response"] for e in response.json()["entry"]
                  if not e["response"]["status"].startswith("2")]
        assert not failed, failed


@contextmanager
def medplum_server() -> Iterator[Medplum]:
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "@medplum" / "fhir-router").exists():
        raise RuntimeError("Node 20 and tests/node/node_modules are needed (make peers)")
    process = subprocess.Popen([node, "fhir-server.mjs"], cwd=NODE_DIR, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, env={"PORT": "0"})
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # printed once the definitions are loaded
        if not line:
            raise RuntimeError("the Medplum FHIR server did not start")
        yield Medplum(f"http://127.0.0.1:{json.loads(line)['port']}")
    finally:
        process.kill()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


@dataclass
class Report:
    expected: int = 0
    on_server: int = 0
    duplicated: int = 0
    stale: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    references: int = 0
    unresolved: list[str] = field(default_factory=list)
    provenance: int = 0
    provenance_wrong: list[str] = field(default_factory=list)
    provenance_missing: list[str] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    drain_seconds: float = 0.0

    def problems(self) -> list[str]:
        return [f"{name}: {value}" for name, value in (
            ("missing", self.missing), ("duplicated", self.duplicated), ("stale", self.stale),
            ("unresolved references", self.unresolved),
            ("wrong Provenance", self.provenance_wrong),
            ("newest version without Provenance", self.provenance_missing)) if value]


async def our_outputs(engine: AsyncEngine) -> dict[str, int]:
    """Carepath's outputs as `Type/id` -> newest version."""
    r = t.resources
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(r.c.resource_type, r.c.id, r.c.version_id).where(
            r.c.resource_type.in_(WRITTEN), r.c.origin == "output"))
        return {f"{row.resource_type}/{row.id}": row.version_id for row in rows}


def _mark(resource: dict[str, Any]) -> tuple[str, int] | None:
    source = str((resource.get("meta") or {}).get("source", ""))
    if not source.startswith(MARK) or "/_history/" not in source:
        return None
    ref, version = source.removeprefix(MARK).rsplit("/_history/", 1)
    return ref, int(version)


def check(state: dict[str, Any], expected: dict[str, int], ehr_inputs: bool = True) -> Report:
    """Compare the server's contents with what Carepath holds (see the module docstring).
    Without `ehr_inputs` (a server the test did not give the EHR's data), references to other
    than Carepath's own resources are not checked."""
    resources: dict[str, list[dict[str, Any]]] = state["resources"]
    report = Report(expected=len(expected) + 1,
                    statuses=state.get("stats", {}).get("status", {}))
    copies: dict[str, list[dict[str, Any]]] = {}
    devices = []
    for history in resources.values():
        current = history[-1]
        marked = _mark(current)
        if marked and marked[0].split("/")[0] in WRITTEN:
            copies.setdefault(marked[0], []).append(current)
        if current["resourceType"] == "Device" and any(
                i.get("value") == DEVICE_IDENTIFIER for i in current.get("identifier", [])):
            devices.append(current)
    report.on_server = sum(1 for ref in expected if copies.get(ref)) + min(len(devices), 1)
    report.duplicated = sum(len(c) - 1 for c in copies.values() if len(c) > 1) + max(
        len(devices) - 1, 0)
    report.missing = [ref for ref in expected if not copies.get(ref)] + (
        [] if devices else ["Device/carepath"])
    sent = {ref: marked[1] for ref, c in copies.items() if (marked := _mark(c[0]))}
    report.stale = [f"{ref} v{sent[ref]} < v{v}" for ref, v in expected.items()
                    if ref in sent and sent[ref] != v]
    versions = {f"{key}/_history/{v['meta']['versionId']}": (key, i)
                for key, history in resources.items() for i, v in enumerate(history)}
    ours = [h[-1] for h in resources.values()
            if _mark(h[-1]) or h[-1]["resourceType"] in ("Device", "Provenance")]
    for resource in ours:
        for ref in literal_references(resource):
            if ref.startswith("#") or (not ehr_inputs and ref.split("/")[0] not in (
                    *WRITTEN, "Device", "Provenance")):
                continue
            report.references += 1
            if ref not in resources and ref not in versions:
                report.unresolved.append(f"{resource['resourceType']} -> {ref}")
    targets: dict[str, int] = {}
    for history in resources.values():
        p = history[-1]
        if p["resourceType"] != "Provenance":
            continue
        report.provenance += 1
        target = p["target"][0]["reference"]
        targets[target] = targets.get(target, 0) + 1
        activity = p["activity"]["coding"][0]["code"]
        if target not in versions:
            report.provenance_wrong.append(f"{target}: not a server version")
            continue
        first = versions[target][1] == 0
        if activity != ("CREATE" if first else "UPDATE"):
            report.provenance_wrong.append(
                f"{target}: {activity} for version #{versions[target][1]}")
    report.provenance_wrong += [f"{k}: {n} Provenances" for k, n in targets.items() if n > 1]
    for ref in expected:
        for current in copies.get(ref, []):
            key = (f"{current['resourceType']}/{current['id']}"
                   f"/_history/{current['meta']['versionId']}")
            if key not in targets:
                report.provenance_missing.append(key)
    return report

