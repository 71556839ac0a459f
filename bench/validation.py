"""`python -m bench.validation`: what R4 validation costs per Observation.

Compares `validate_r4` (the R4 StructureDefinitions: cardinality, types, formats, required
bindings, reference targets, FHIRPath invariants) with `fhir.resources` R4B `model_validate` on
the same JSON: a scenario pain score, the HL7 example Observation, and a Synthea Observation.

The baseline is interleaved with the measured calls (batches alternate, and which goes first
alternates too), so both run under the same machine load; each batch is timed in CPU time
(`time.process_time`) and wall time. Per-call costs are the medians over batches, ratios the
median of the per-round ratios.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fhir.resources.R4B.observation import Observation
from rich.console import Console
from rich.table import Table

from bench import data
from bench.harness import loadavg
from service.fhir.validation import validate_r4

CORPORA = Path(__file__).resolve().parent.parent.parent / "shared" / "corpora"
ROUNDS, BATCH = 40, 25


def _batch(fn: Callable[[], Any], n: int) -> tuple[float, float]:
    """CPU and wall seconds per call over `n` calls."""
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(n):
        fn()
    return (time.process_time() - cpu) / n, (time.perf_counter() - wall) / n


def interleaved(ours: Callable[[], Any], baseline: Callable[[], Any], rounds: int = ROUNDS,
                batch: int = BATCH) -> dict[str, float]:
    """Median CPU and wall cost per call of `ours` and `baseline`, and the median per-round ratios."""
    ours(), baseline()
    timings: dict[str, list[float]] = {k: [] for k in ("cpu", "wall", "base_cpu", "base_wall", "cpu_ratio",
                                                       "wall_ratio")}
    for i in range(rounds):
        if i % 2:
            base_cpu, base_wall = _batch(baseline, batch)
            cpu, wall = _batch(ours, batch)
        else:
            cpu, wall = _batch(ours, batch)
            base_cpu, base_wall = _batch(baseline, batch)
        for key, value in (("cpu", cpu), ("wall", wall), ("base_cpu", base_cpu), ("base_wall", base_wall)):
            timings[key].append(value)
        if base_cpu > 0:
            timings["cpu_ratio"].append(cpu / base_cpu)
        timings["wall_ratio"].append(wall / base_wall)
    return {k: statistics.median(v) for k, v in timings.items() if v}


def samples() -> dict[str, dict[str, Any]]:
    found = {"scenario pain score": data.observation("bench", 1),
             "HL7 Observation-example": json.loads(
                 (CORPORA / "hl7-r4-examples" / "Observation-example.json").read_text())}
    synthea = json.loads(next(iter(sorted((CORPORA / "synthea-r4-bundles").glob("*.json")))).read_text())
    found["Synthea Observation"] = next(e["resource"] for e in synthea["entry"]
                                        if e["resource"]["resourceType"] == "Observation")
    return found


def main() -> None:
    table = Table(title=f"R4 validation per Observation, interleaved with the baseline ({ROUNDS} rounds x "
                        f"{BATCH} calls each; medians; load {loadavg()})")
    for column in ("resource", "validate_r4 CPU", "model_validate (R4B) CPU", "CPU ratio",
                   "validate_r4 wall", "model_validate wall", "wall ratio"):
        table.add_column(column)
    for name, resource in samples().items():
        assert validate_r4(resource) == [], name
        m = interleaved(lambda r=resource: validate_r4(r), lambda r=resource: Observation.model_validate(r))
        table.add_row(name, f"{m['cpu'] * 1e6:,.0f} µs", f"{m['base_cpu'] * 1e6:,.0f} µs", f"{m['cpu_ratio']:.2f}x",
                      f"{m['wall'] * 1e6:,.0f} µs", f"{m['base_wall'] * 1e6:,.0f} µs", f"{m['wall_ratio']:.2f}x")
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
