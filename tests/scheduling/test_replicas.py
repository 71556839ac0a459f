"""Several replicas on one PostgreSQL: each due patient is re-evaluated exactly once."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import orjson
import pytest
import sqlalchemy as sa

from service.adapters import tables
from service.bootstrap import build_scheduler, build_services, stage_follow_up
from service.rules.loader import load_pathways
from service.service_layer.clock import fixed_clock
from tests.scheduling.support import (
    MRI,
    T0,
    codes,
    failed_conservative_care,
    post,
    running,
    settings_for,
)

PATIENTS = 24


@pytest.mark.postgres
async def test_two_schedulers_racing_evaluate_each_due_patient_once(postgres_url: str) -> None:
    settings = settings_for(postgres_url, fixed_now=T0)
    async with running(settings) as client:
        for n in range(PATIENTS):
            await post(client, *failed_conservative_care(f"r{n}"))

    later = settings_for(postgres_url, fixed_now=T0 + timedelta(days=3))
    pathways = load_pathways(later.pathways_dir)
    replicas = [build_services(later, pathways, clock=fixed_clock(T0 + timedelta(days=3)))
                for _ in range(2)]
    try:
        schedulers = []
        for name, services in zip(("replica-a", "replica-b"), replicas, strict=True):
            stage_follow_up(services)
            scheduler = build_scheduler(services, name)
            scheduler.batch = 2  # many small claims, so the two really interleave
            schedulers.append(scheduler)
        claimed = await asyncio.gather(*(s.catch_up() for s in schedulers))
        assert sum(claimed) == PATIENTS

        async with replicas[0].engine.connect() as conn:
            # Ingest evaluated each patient at T0 (the pending sweep may have too); time did after.
            evaluations = Counter(r.patient_id for r in await conn.execute(
                sa.select(tables.evaluations.c.patient_id).where(
                    tables.evaluations.c.evaluated_at > T0)))
            by_scheduler = Counter(r.patient_id for r in await conn.execute(
                sa.select(tables.audit_log.c.patient_id).where(
                    tables.audit_log.c.actor == "carepath:scheduler")))
            mri = [r.content for r in await conn.execute(
                sa.select(tables.resources.c.content).where(
                    tables.resources.c.resource_type == "ServiceRequest"))]
        assert evaluations == {f"r{n}": 1 for n in range(PATIENTS)}
        assert by_scheduler == {f"r{n}": 1 for n in range(PATIENTS)}
        assert sum(MRI in codes(orjson.loads(c)) for c in mri) == PATIENTS
        assert await schedulers[0].catch_up() == 0 and await schedulers[1].catch_up() == 0
    finally:
        for services in replicas:
            await services.http.aclose()
            await services.engine.dispose()
