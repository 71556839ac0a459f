"""`python -m bench.validation`: what R4 validation costs per Observation.

Compares `validate_r4` (the R4 StructureDefinitions: cardinality, types, formats, required
bindings, reference targets, FHIRPath invariants) with `fhir.resources` R4B `model_validate` on
the same JSON: a scenario pain score, the HL7 example Observation, and a Synthea Observation.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fhir.resources.R4B.observation import Observation
from rich.console import Console
from rich.table import Table

from bench import data
from service.fhir.validation import validate_r4

CORPORA = Path(__file__).resolve().parent.parent.parent / "shared" / "corpora"


def _per_call(fn: Callable[[], Any], n: int = 300, repeat: int = 3) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - started) / n)
    return best


def main() -> None:
    samples = {"scenario pain score": data.observation("bench", 1),
               "HL7 Observation-example": json.loads(
                   (CORPORA / "hl7-r4-examples" / "Observation-example.json").read_text())}
    synthea = json.loads(next((CORPORA / "synthea-r4-bundles").glob("*.json")).read_text())
    samples["Synthea Observation"] = next(e["resource"] for e in synthea["entry"]
                                          if e["resource"]["resourceType"] == "Observation")
    table = Table(title="R4 validation per Observation (best of 3 x 300 calls)")
    for column in ("resource", "validate_r4", "Observation.model_validate (R4B)", "ratio"):
        table.add_column(column)
    for name, resource in samples.items():
        assert validate_r4(resource) == [], name
        ours = _per_call(lambda r=resource: validate_r4(r))
        theirs = _per_call(lambda r=resource: Observation.model_validate(r))
        table.add_row(name, f"{ours * 1e6:,.0f} µs", f"{theirs * 1e6:,.0f} µs", f"{ours / theirs:.1f}x")
    Console().print(table)


if __name__ == "__main__":
    main()
