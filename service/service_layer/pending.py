"""Re-evaluate patients whose input was stored but not yet evaluated (crash, rule bug, webhook)."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from service.adapters.store import Store
from service.service_layer.evaluate_patient import PatientEvaluator

log = logging.getLogger("carepath.pending")


async def evaluate_pending(evaluator: PatientEvaluator, engine: AsyncEngine, limit: int = 50) -> int:
    """One sweep; returns how many patients were evaluated. Failures stay pending, with the error."""
    async with engine.connect() as conn:
        patients = await Store(conn).pending(limit)
    done = 0
    for patient in patients:
        try:
            await evaluator.evaluate(patient, actor="carepath:pending")
            done += 1
        except Exception as exc:  # noqa: BLE001  (kept pending and visible; retried next sweep)
            log.exception("evaluation of a pending patient failed")
            async with engine.begin() as conn:
                await Store(conn).note_failure(patient, f"{type(exc).__name__}: {exc}")
    return done


async def sweep_pending(evaluator: PatientEvaluator, engine: AsyncEngine, interval: float = 1.0) -> None:
    while True:
        try:
            await evaluate_pending(evaluator, engine)
        except Exception:  # noqa: BLE001  (the loop must survive a database outage)
            log.exception("pending sweep failed")
        await asyncio.sleep(interval)
