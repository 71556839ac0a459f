"""`python -m bench` (`make bench`): Carepath's performance goals, measured, in one final table.

Every cost is set beside the same baseline, fhir.resources R4B `Observation.model_validate` of the
same Observation JSON, measured in this process *between* the measured rounds (so both run under
the same machine load), as CPU time and as wall time. Ratios are the median over rounds.

Two targets: `http`, a real `carepath serve` child over loopback, whose CPU time is the server
process's alone (psutil); and `in-process`, the app over ASGI in this process, whose CPU time also
includes the client. The goals are judged on `http`; PostgreSQL runs when BENCH_DATABASE_URL or
TEST_DATABASE_URL names a server (a fresh database is created and dropped).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psutil
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from bench import cds_patient_view as cds
from bench import data
from bench.harness import (
    Baseline,
    Target,
    database,
    in_process,
    loadavg,
    median,
    percentile,
    postgres_server,
    seed,
    served,
    timed,
)
from service.adapters import tables
from service.entrypoints.app import services_of
from service.observability.logs import configure_logging

APPLY = "/fhir/PlanDefinition/lumbar-radiculopathy/$apply"


@dataclass
class Detail:
    measure: str
    target: str
    p50: str = ""
    p99: str = ""
    cpu: str = ""
    cpu_ratio: str = ""
    wall_ratio: str = ""


@dataclass
class Goal:
    goal: str
    measured: str
    met: bool


@dataclass
class Report:
    details: list[Detail] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _x(ratio: float) -> str:
    return f"{ratio:.2f}x"


def _where(target: Target) -> str:
    return f"{target.mode}, {target.database}"


def _patient(resource: dict[str, Any]) -> str:
    return str(resource["subject"]["reference"].split("/", 1)[1])


async def _post(target: Target, path: str, resource: dict[str, Any] | bytes) -> None:
    body = resource if isinstance(resource, bytes) else orjson.dumps(resource)
    response = await target.client.post(path, content=body)
    assert response.status_code in (200, 201), response.text


async def ingest_single(target: Target, base: Baseline, report: Report, rounds: int = 5,
                        patients: int = 80) -> None:
    """One Observation per POST, round-robin over patients with a Condition and <= 5
    Observations on file (the cost of a whole patient's history is measured apart, below)."""
    for i in range(patients):
        await _post(target, "/fhir/Condition", data.condition(f"s{i}"))
    cpu_ratios, wall_ratios, spent, per = [], [], [], []
    for r in range(rounds):
        bodies = [orjson.dumps(data.observation(f"s{i}", r)) for i in range(patients)]
        parse_cpu, parse_wall = base.parse(bodies)
        started = target.cpu()
        walls = [await timed(lambda b=b: _post(target, "/fhir/Observation", b)) for b in bodies]
        cpu = (target.cpu() - started) / patients
        spent += walls
        per.append(cpu)
        cpu_ratios.append(cpu / parse_cpu)
        wall_ratios.append(median(walls) / parse_wall)
    report.details.append(Detail("single POST /fhir/Observation (patient with <= 5 obs)",
                                 _where(target), _ms(median(spent)), _ms(percentile(spent, 0.99)),
                                 _ms(median(per)) + " /POST", _x(median(cpu_ratios)),
                                 _x(median(wall_ratios))))
    if target.mode == "http":
        report.goals.append(Goal(f"single POST <= 10x parse, server CPU ({target.database})",
                                 _x(median(cpu_ratios)), median(cpu_ratios) <= 10))


async def http_floor(target: Target, base: Baseline, report: Report, calls: int = 300) -> None:
    """What a request costs before Carepath does anything (HTTP, the framework, the kernel's
    loopback): GET /health, and GET /fhir/metadata (no database either), each beside the parse."""
    for label, path in (("floor: GET /health (no database)", "/health"),
                        ("GET /fhir/metadata (no database)", "/fhir/metadata")):
        for _ in range(20):  # warm: the first calls of a new server cost more
            await target.client.get(path)
        parse_cpu, _ = base.parse([orjson.dumps(data.observation("floor", n)) for n in range(100)])
        started = target.cpu()
        spent = [await timed(lambda path=path: target.client.get(path)) for _ in range(calls)]
        cpu = (target.cpu() - started) / calls
        report.details.append(Detail(label, _where(target), _ms(median(spent)),
                                     _ms(percentile(spent, 0.99)), _ms(cpu) + " /GET",
                                     _x(cpu / parse_cpu)))


async def ingest_bundle(target: Target, base: Baseline, report: Report, rounds: int = 5,
                        bundles: int = 10) -> None:
    """Batch Bundles of 100 Observations, each for one patient (its Condition already on file),
    `bundles` per round: the server's CPU time is read in clock ticks (10 ms), so a round must
    last well over one tick for the ratio to mean anything."""
    for r in range(rounds):
        for b in range(bundles):
            await _post(target, "/fhir/Condition", data.condition(f"b{r}-{b}"))
    cpu_ratios, wall_ratios, spent, per = [], [], [], []
    for r in range(rounds):
        entries = [[data.observation(f"b{r}-{b}", n) for n in range(100)] for b in range(bundles)]
        parse_cpu, parse_wall = base.parse([orjson.dumps(e) for bundle in entries for e in bundle])
        bodies = [orjson.dumps(data.bundle(e)) for e in entries]
        started = target.cpu()
        walls = [await timed(lambda body=body: _post(target, "/fhir", body)) for body in bodies]
        cpu = (target.cpu() - started) / (100 * bundles)
        spent += walls
        per.append(cpu)
        cpu_ratios.append(cpu / parse_cpu)
        wall_ratios.append(median(walls) / 100 / parse_wall)
    report.details.append(Detail("POST /fhir batch Bundle, 100 obs of one patient",
                                 _where(target), _ms(median(spent)) + " /Bundle",
                                 _ms(max(spent)) + " (max)", f"{median(per) * 1e6:.0f} us /obs",
                                 _x(median(cpu_ratios)), _x(median(wall_ratios))))
    if target.mode == "http":
        report.goals.append(Goal(f"Bundle of 100 obs <= 2x parse per obs, server CPU "
                                 f"({target.database})", _x(median(cpu_ratios)),
                                 median(cpu_ratios) <= 2))


async def cds_hooks(target: Target, ehr: cds.Ehr, report: Report) -> None:
    """patient-view with 200 Observations prefetched: one client, then 8 concurrent clients;
    each client re-opens its patient's chart (the same prefetch), and apart, a new prefetch
    on every call (nothing validated before)."""
    where = _where(target)
    for label, clients, calls, cold, bound in (
            ("1 client", 1, 200, False, 0.050), ("8 concurrent clients", 8, 40, False, 0.150),
            ("1 client, new contents each call", 1, 60, True, None)):
        spent, cpu, failed = await cds.latencies(target, ehr, clients, calls, cold=cold)
        p99 = percentile(spent, 0.99)
        errors = f", {failed} of {len(spent)} failed" if failed else ""
        report.details.append(Detail(f"CDS patient-view, 200 obs prefetched, {label}{errors}",
                                     where, _ms(median(spent)), _ms(p99), _ms(cpu) + " /call"))
        if bound is not None and target.mode == "http":
            report.goals.append(Goal(f"CDS patient-view p99 < {bound * 1000:.0f} ms, {label} "
                                     f"({target.database})", _ms(p99) + errors,
                                     p99 < bound and not failed))


async def crowd(target: Target, report: Report, writers: int = 20, each: int = 25) -> None:
    """20 clients posting Observations for one patient at once; then check nothing was lost."""
    patient = "crowd"
    await _post(target, "/fhir/Condition", data.condition(patient))
    spent: list[float] = []
    failed = 0

    async def writer(w: int) -> None:
        nonlocal failed
        for k in range(each):
            body = orjson.dumps(data.observation(patient, w * each + k))
            started = time.perf_counter()
            response = await target.client.post("/fhir/Observation", content=body)
            spent.append(time.perf_counter() - started)
            failed += response.status_code not in (200, 201)

    started = target.cpu()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    cpu = (target.cpu() - started) / len(spent)
    r = tables.resources
    async with target.engine.connect() as conn:
        counts = dict((await conn.execute(sa.select(r.c.resource_type, sa.func.count()).where(
            r.c.patient_id == patient).group_by(r.c.resource_type))).all())
        pending = (await conn.execute(sa.select(sa.func.count()).select_from(
            tables.pending_evaluations))).scalar()
        evaluations = (await conn.execute(sa.select(sa.func.count()).select_from(
            tables.evaluations).where(tables.evaluations.c.patient_id == patient))).scalar()
    stored, plans = counts.get("Observation", 0), counts.get("CarePlan", 0)
    p99 = percentile(spent, 0.99)
    report.details.append(Detail(
        f"{writers} concurrent writers, one patient ({stored}/{writers * each} obs stored, "
        f"{plans} CarePlan, {pending} pending, {failed} failed, {evaluations} evaluations)",
        _where(target),
        _ms(median(spent)), _ms(p99),
        _ms(cpu) + " /POST"))
    if target.mode == "http":
        whole = stored == writers * each and plans == 1 and pending == 0 and not failed
        report.goals.append(Goal(f"{writers} writers for one patient: p99 < 250 ms, nothing lost, "
                                 f"one CarePlan ({target.database})",
                                 f"{_ms(p99)}, {stored}/{writers * each} stored, {plans} CarePlan"
                                 + (f", {failed} failed" if failed else ""),
                                 p99 < 0.250 and whole))


async def evaluation_scaling(target: Target, report: Report, rounds: int = 5) -> None:
    """`PatientEvaluator.evaluate` (load, decide, persist) CPU time against the patient's own
    history, interleaved size by size in every round."""
    evaluator = services_of(target.app).evaluator
    sizes = {100: 10, 1000: 2, 3000: 1}  # evaluations per round
    for size in sizes:
        patient = f"h{size}"
        await seed(target.engine, [data.condition(patient)]
                   + [data.observation(patient, n) for n in range(size)], _patient)
        await evaluator.evaluate(patient)
    cpu: dict[int, list[float]] = {size: [] for size in sizes}
    for _ in range(rounds):
        for size, repeat in sizes.items():
            started = time.process_time()
            for _ in range(repeat):
                await evaluator.evaluate(f"h{size}")
            cpu[size].append((time.process_time() - started) / repeat)
    small = median(cpu[100])
    for size in sizes:
        report.details.append(Detail(
            f"evaluate one patient with {size} obs on file", _where(target),
            cpu=_ms(median(cpu[size])) + " CPU",
            cpu_ratio=f"{median(cpu[size]) / small:.1f}x the 100-obs cost"))
    ratio = median(cpu[3000]) / small
    report.goals.append(Goal("evaluation at 3,000 obs <= 35x the cost at 100 (CPU)",
                             f"{ratio:.1f}x", ratio <= 35))


async def apply_latency(target: Target, base: Baseline, report: Report) -> None:
    """$apply (reads the patient's record, decides, stores nothing), beside parsing that record."""
    for size, runs in ((20, 100), (200, 50), (2000, 15)):
        patient = f"a{size}"
        inputs = [data.observation(patient, n) for n in range(size)]
        await seed(target.engine, [data.condition(patient), *inputs], _patient)
        call = _apply_call(target, patient)
        await call()
        parse_cpu, _ = base.parse([orjson.dumps(r) for r in inputs])
        started = target.cpu()
        spent = [await timed(call) for _ in range(runs)]
        cpu = (target.cpu() - started) / runs
        report.details.append(Detail(f"$apply, patient with {size} obs", _where(target),
                                     _ms(median(spent)), _ms(percentile(spent, 0.99)),
                                     _ms(cpu) + " /call",
                                     _x(cpu / (parse_cpu * size)) + f" parse of its {size} obs"))
    tracemalloc.start()
    await _apply_call(target, "a2000")()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    report.details.append(Detail("peak Python allocation, one $apply at 2000 obs", _where(target),
                                 cpu=f"{peak / 2**20:.1f} MiB"))


async def isolation(target: Target, report: Report) -> None:
    """A 20-observation patient's $apply with 1k, then 100k other patients' observations stored."""
    mine = [data.condition("me")] + [data.observation("me", n) for n in range(20)]
    await seed(target.engine, mine, _patient)
    stored, results = 0, []
    for size in (1_000, 100_000):
        await seed(target.engine, [data.observation(f"o{n // 50}", n) for n in range(stored, size)],
                   _patient)
        stored = size
        call = _apply_call(target, "me")
        await call()
        spent = [await timed(call) for _ in range(100)]
        results.append(median(spent))
        report.details.append(Detail(f"$apply (20 obs) with {size:,} other obs stored",
                                     _where(target), _ms(median(spent)),
                                     _ms(percentile(spent, 0.99))))
    report.details.append(Detail("database size: 100k / 1k $apply p50 (1.0 = flat)", _where(target),
                                 cpu_ratio=_x(results[1] / results[0])))


def _apply_call(target: Target, patient: str) -> Callable[[], Any]:
    async def call() -> None:
        response = await target.client.post(APPLY, params={"subject": f"Patient/{patient}"})
        assert response.status_code == 200, response.text
    return call


async def run(report: Report, console: Console) -> None:
    base = Baseline()
    kinds = ["SQLite"] + (["PostgreSQL"] if postgres_server() else [])
    with tempfile.TemporaryDirectory(prefix="carepath-bench-") as tmp:
        directory = Path(tmp)
        ehr = cds.Ehr(directory)
        for kind in kinds:
            for mode in ("http", "in-process") if kind == "SQLite" else ("http",):
                console.print(f"  {kind}, {mode} ... (load average {loadavg()})")
                start = served if mode == "http" else in_process
                async with database(kind, directory, f"{kind}-{mode}") as url, \
                        start(url, ehr.jwks) as target:
                    await http_floor(target, base, report)
                    await ingest_single(target, base, report)
                    await ingest_bundle(target, base, report)
                    await cds_hooks(target, ehr, report)
                    await crowd(target, report)
                    if mode == "in-process" and kind == "SQLite":
                        await evaluation_scaling(target, report)
                        await apply_latency(target, base, report)
                        await isolation(target, report)
                    if target.pid is not None:
                        rss = psutil.Process(target.pid).memory_info().rss
                        report.details.append(Detail("server RSS at the end", _where(target),
                                                     cpu=f"{rss / 2**20:.0f} MiB"))
    report.details.append(Detail("baseline: R4B parse of one Observation (median of calls)",
                                 "this process", cpu=f"{median(base.cpu) * 1e6:.0f} us CPU",
                                 wall_ratio=f"{median(base.wall) * 1e6:.0f} us wall"))


def main() -> None:
    configure_logging("WARNING")
    console = Console(width=max(Console().width, 140))
    before = loadavg()
    console.print(f"[bold]Carepath benchmark[/] ({os.cpu_count()} CPUs, load average 1/5/15 min "
                  f"{before} at start)")
    if not postgres_server():
        console.print("  PostgreSQL not measured: set BENCH_DATABASE_URL (or TEST_DATABASE_URL)")
    report = Report()
    asyncio.run(run(report, console))
    after = loadavg()
    details = Table(title="Measurements (wall = client-observed latency; CPU = server process in "
                          "http mode, whole process in in-process mode; x parse = divided by R4B "
                          "parsing of the same Observations, interleaved, median of rounds)")
    for column in ("measure", "target", "wall p50", "wall p99 (or max)", "CPU per unit",
                   "CPU / parse", "wall / parse"):
        details.add_column(column)
    for d in report.details:
        details.add_row(d.measure, d.target, d.p50, d.p99, d.cpu, d.cpu_ratio, d.wall_ratio)
    console.print(details)
    goals = Table(title=f"Goals (issue 14), load average 1/5/15 min: {before} at start, "
                        f"{after} at end, {os.cpu_count()} CPUs")
    for column in ("goal", "measured", "met"):
        goals.add_column(column)
    for g in report.goals:
        goals.add_row(g.goal, g.measured, "met" if g.met else "NOT MET")
    console.print(goals)


if __name__ == "__main__":
    main()
