"""`python -m bench`: throughput, latency, isolation and memory, each beside plain R4B parsing.

The baseline is the cost of `fhir.resources.R4B` parsing the same JSON (orjson + model_validate), so
every overhead is a ratio that survives a change of machine.
"""

from __future__ import annotations

import asyncio
import os
import resource
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from fhir.resources.R4B.condition import Condition
from fhir.resources.R4B.observation import Observation
from rich.console import Console
from rich.table import Table

from bench import data
from bench.harness import median, percentile, running_app, seed, timings
from service.observability.logs import configure_logging

APPLY = "/fhir/PlanDefinition/lumbar-radiculopathy/$apply"
Row = tuple[str, str, str, str]


def parse_seconds(resources: list[dict[str, Any]], repeat: int = 3) -> float:
    """Best-of-`repeat` time for fhir.resources R4B to parse these resources from JSON."""
    raw = [(Observation if r["resourceType"] == "Observation" else Condition, orjson.dumps(r))
           for r in resources]
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for model, body in raw:
            model.model_validate(orjson.loads(body))
        best = min(best, time.perf_counter() - started)
    return best


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


async def ingest(root: Path, rows: list[Row]) -> None:
    async with running_app(root / "ingest") as client:
        await client.post("/fhir/Condition", content=orjson.dumps(data.condition("ing")))
        singles = [data.observation("ing", n) for n in range(200)]
        started = time.perf_counter()
        for obs in singles:
            response = await client.post("/fhir/Observation", content=orjson.dumps(obs))
            assert response.status_code in (200, 201), response.text
        per = (time.perf_counter() - started) / len(singles)
        rows.append(("ingest, single Observation POST", f"{1 / per:,.0f} obs/s", _ms(per),
                     f"{per / (parse_seconds(singles) / len(singles)):.0f}x"))

        bundles = [[data.condition(f"b{i}")] + [data.observation(f"b{i}", n) for n in range(99)]
                   for i in range(10)]
        started = time.perf_counter()
        for entries in bundles:
            response = await client.post("/fhir", content=orjson.dumps(data.bundle(entries)))
            assert response.status_code == 200, response.text
        per = (time.perf_counter() - started) / (len(bundles) * 100)
        flat = [r for b in bundles for r in b]
        rows.append(("ingest, 100-entry batch Bundle", f"{1 / per:,.0f} res/s",
                     _ms(per * 100) + " /bundle",
                     f"{per / (parse_seconds(flat) / len(flat)):.0f}x"))


async def apply_latency(root: Path, rows: list[Row]) -> None:
    async with running_app(root / "apply") as client:
        for size, runs in ((20, 200), (200, 100), (2000, 30)):
            patient = f"a{size}"
            inputs = [data.condition(patient)] + [data.observation(patient, n) for n in range(size)]
            await seed(client, inputs, _patient)
            call = _apply_call(client, patient)
            await call()
            spent = await timings(call, runs)
            base = parse_seconds(inputs, repeat=1)
            rows.append((f"$apply, patient with {size} observations", f"p50 {_ms(median(spent))}",
                         f"p99 {_ms(percentile(spent, 0.99))}", f"{median(spent) / base:.1f}x"))
        tracemalloc.start()
        await _apply_call(client, "a2000")()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        rows.append(("peak Python allocation, one $apply at 2000 obs",
                     f"{peak / 2**20:.1f} MiB", "", ""))


async def isolation(root: Path, rows: list[Row]) -> None:
    """A 20-observation patient's $apply, with 1k then 100k other patients' observations stored."""
    async with running_app(root / "isolation") as client:
        inputs = [data.condition("me")] + [data.observation("me", n) for n in range(20)]
        await seed(client, inputs, _patient)
        stored = 0
        results = []
        for target in (1_000, 100_000):
            others = [data.observation(f"o{n // 50}", n) for n in range(stored, target)]
            await seed(client, others, _patient)
            stored = target
            call = _apply_call(client, "me")
            await call()
            spent = await timings(call, 200)
            results.append(median(spent))
            rows.append((f"isolation: $apply (20 obs) with {target:,} other obs stored",
                         f"p50 {_ms(median(spent))}", f"p99 {_ms(percentile(spent, 0.99))}", ""))
        rows.append(("isolation: 100k / 1k latency", f"{results[1] / results[0]:.2f}x", "",
                     "(1.0 = flat)"))


async def cds_patient_view(root: Path, rows: list[Row]) -> None:
    """Only if the CDS Hooks benchmark exists (bench/cds_patient_view.py, another issue's file):
    its `run()` returns (p50 seconds, p99 seconds, cards) for a 200-observation prefetch."""
    try:
        from bench import cds_patient_view as cds  # type: ignore[attr-defined]
    except ImportError:
        rows.append(("CDS Hooks patient-view", "not measured", "(no bench/cds_patient_view.py)",
                     ""))
        return
    try:
        p50, p99, cards = await cds.run()
    except Exception as exc:  # noqa: BLE001 - another issue's code; the rest of the table still matters
        rows.append(("CDS Hooks patient-view", "failed", type(exc).__name__, ""))
        return
    rows.append((f"CDS Hooks patient-view, 200 obs prefetched ({cards} cards)", f"p50 {_ms(p50)}",
                 f"p99 {_ms(p99)}", ""))


def _patient(resource: dict[str, Any]) -> str:
    return str(resource["subject"]["reference"].split("/", 1)[1])


def _apply_call(client: Any, patient: str) -> Callable[[], Any]:
    async def call() -> None:
        response = await client.post(APPLY, params={"subject": f"Patient/{patient}"})
        assert response.status_code == 200, response.text
    return call


async def run() -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="carepath-bench-") as tmp:
        root = Path(tmp)
        for name in ("ingest", "apply", "isolation"):
            (root / name).mkdir()
        for step in (ingest, apply_latency, isolation, cds_patient_view):
            await step(root, rows)
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows.append(("peak RSS of the whole benchmark process", f"{peak_rss:.0f} MiB", "", ""))
    return rows


def main() -> None:
    configure_logging("WARNING")
    console = Console(width=max(Console().width, 110))
    console.print(f"[bold]Carepath benchmark[/] (SQLite, in-process ASGI, {os.cpu_count()} CPUs)")
    rows = asyncio.run(run())
    table = Table(title="vs. parsing the same JSON with fhir.resources R4B alone")
    for column in ("measure", "rate / p50", "latency / p99", "ratio to R4B parse"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console.print(table)


if __name__ == "__main__":
    main()
