"""Time-driven re-evaluation cost: due patients re-evaluated per second on SQLite.

`python -m bench.scheduler [patients]`: N patients like the issue's example (episode 40 days old,
physiotherapy done, NRS 7 -> 7 -> 7) are stored and evaluated at T0; the clock then moves 3 days
past their 6-week mark, so every one of them is due at once, and one scheduler catches up. Each
re-evaluation proposes the MRI (R7), revises the CarePlan and stages the write-back and webhook
events, as in production. Reported: wall and CPU time, patients per second, and what working out
the next instant (`rules.horizon`) costs per evaluation on its own.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench import data
from service.bootstrap import build_scheduler
from service.config import Settings
from service.entrypoints.app import create_app
from service.observability.logs import configure_logging
from service.rules.horizon import next_change
from service.rules.loader import load_pathways
from service.rules.registry import Pathway
from service.service_layer.clock import ManualClock
from service.service_layer.decide import decide
from service.webhooks.signatures import new_secret
from tests.scheduling.support import T0, failed_conservative_care


def horizon_cost(pathway: Pathway, resources: list[dict[str, Any]], runs: int = 200
                 ) -> tuple[float, float]:
    """(ms for one pure evaluation, ms for working out its next instant), medians."""
    decide_ms, horizon_ms = [], []
    for _ in range(runs):
        started = time.perf_counter()
        decision = decide(pathway, "h", resources, T0)
        middle = time.perf_counter()
        next_change(pathway, decision.facts, decision.evaluation)
        decide_ms.append((middle - started) * 1000)
        horizon_ms.append((time.perf_counter() - middle) * 1000)
    return sorted(decide_ms)[runs // 2], sorted(horizon_ms)[runs // 2]


async def one_run(patients: int, directory: Path) -> dict[str, float]:
    clock = ManualClock(T0)
    settings = Settings(database_url=f"sqlite+aiosqlite:///{directory / 'bench.db'}",
                        api_tokens=["bench"], run_worker=False, run_scheduler=False,
                        log_level="WARNING", fhir_server_url="https://ehr.example.org/fhir",
                        webhook_subscribers=[{"url": "https://hooks.example.org/b",
                                              "secret": new_secret()}])
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        services = app.state.services
        started = time.perf_counter()
        for n in range(patients):
            await services.ingestor.store_and_evaluate(failed_conservative_care(f"b{n}"),
                                                       actor="bench")
        ingest = time.perf_counter() - started
        clock.advance(timedelta(days=3))
        scheduler = build_scheduler(services, "bench")
        wall, cpu = time.perf_counter(), time.process_time()
        claimed = await scheduler.catch_up()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        assert claimed == patients, claimed
        assert await scheduler.catch_up() == 0
    return {"ingest": ingest, "wall": wall, "cpu": cpu}


async def main(patients: int) -> None:
    configure_logging("WARNING")
    pathway = next(iter(load_pathways(Settings().pathways_dir).values()))
    evaluate_ms, horizon_ms = horizon_cost(pathway, failed_conservative_care("h"))
    longer = {n: horizon_cost(pathway, [data.condition("h"), *(data.observation("h", i)
                                                                for i in range(n))], runs=11)
              for n in (20, 200)}
    with tempfile.TemporaryDirectory() as d:
        r = await one_run(patients, Path(d))
    print(f"scheduler benchmark: {patients} patients due at once, SQLite, one scheduler")
    print(f"  catch-up: {patients} re-evaluations in {r['wall']:.2f} s wall, {r['cpu']:.2f} s CPU "
          f"= {patients / r['wall']:.0f} patients/s ({r['wall'] / patients * 1000:.1f} ms each; "
          f"MRI proposed, CarePlan revised, write-back and webhook events staged)")
    print(f"  for comparison, storing and evaluating them at T0 (new data) took "
          f"{r['ingest']:.2f} s = {patients / r['ingest']:.0f} patients/s")
    print(f"  pure evaluation {evaluate_ms:.2f} ms; working out the next instant (horizon) "
          f"{horizon_ms:.2f} ms more per evaluation (median of 200)")
    for n, (evaluate_ms, horizon_ms) in longer.items():
        print(f"  a record of {n} observations: evaluation {evaluate_ms:.1f} ms, horizon "
              f"{horizon_ms:.1f} ms more (median of 11)")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 500))
