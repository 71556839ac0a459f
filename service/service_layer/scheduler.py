"""Time-driven re-evaluation (spec 2a.1): re-evaluate patients whose next instant has come.

Each evaluation stores the earliest future instant at which its patient's decision could change
(`rules.horizon`, `adapters.schedule`). The scheduler claims patients whose instant has passed and
runs them through the same `PatientEvaluator` as new data does, with no new data: the CarePlan is
revised, write-back and webhook events are staged, overdue tasks are marked, all in the
evaluation's transaction. On start-up its first rounds catch up on everything that fell due while
no scheduler ran (however long), including after a restart with a later `CAREPATH_FIXED_NOW`.
Any number of schedulers may share one database: claims are leased (`FOR UPDATE SKIP LOCKED` on
PostgreSQL), so each due patient is evaluated once.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from service.adapters import schedule
from service.service_layer.clock import Clock
from service.service_layer.evaluate_patient import PatientEvaluator

log = logging.getLogger("carepath.scheduler")
ACTOR = "carepath:scheduler"


class Scheduler:
    def __init__(self, evaluator: PatientEvaluator, engine: AsyncEngine, clock: Clock, *,
                 name: str, lease_seconds: float = 300.0, batch: int = 50,
                 retry_seconds: float = 30.0) -> None:
        self.evaluator = evaluator
        self.engine = engine
        self.clock = clock
        self.name = name
        self.lease_seconds = lease_seconds
        self.batch = batch
        self.retry_seconds = retry_seconds

    async def run_once(self) -> int:
        """Claim one batch of due patients and re-evaluate each; returns how many were claimed.
        A failed evaluation keeps its patient due (and visible) and is retried with backoff."""
        now = self.clock()
        patients = await schedule.claim_due(self.engine, worker=self.name, now=now,
                                            lease=self.lease_seconds, limit=self.batch)
        for patient in patients:
            try:
                await self.evaluator.evaluate(patient, actor=ACTOR)
            except Exception as exc:  # noqa: BLE001  (kept due and visible; retried later)
                log.exception("time-driven re-evaluation failed; retried later")
                await schedule.failed(self.engine, patient, self.name, self.clock(),
                                      self.retry_seconds, f"{type(exc).__name__}: {exc}")
        return len(patients)

    async def catch_up(self) -> int:
        """Rounds until nothing is due (start-up, tests, benchmarks); returns patients claimed."""
        total = 0
        while claimed := await self.run_once():
            total += claimed
        return total

    async def run(self, poll_seconds: float) -> None:
        """Forever: catch up, then look again every `poll_seconds`."""
        while True:
            try:
                if await self.run_once():
                    continue
            except Exception:  # noqa: BLE001  (the loop must survive a database outage)
                log.exception("scheduler round failed")
            await asyncio.sleep(poll_seconds)
