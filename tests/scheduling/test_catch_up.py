"""Durability: what fell due while no scheduler ran is caught up on start-up, including a restart
with a later CAREPATH_FIXED_NOW; operators see the backlog in /admin/schedule and /metrics."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from service.adapters import tables
from tests.scheduling.support import (
    MRI,
    T0,
    codes,
    failed_conservative_care,
    outbox_rows,
    outputs,
    post,
    running,
    settings_for,
    webhook_types,
)


def _gauge(text: str, name: str) -> float:
    (line,) = [line for line in text.splitlines() if line.startswith(name + " ")]
    return float(line.split()[1])


async def test_a_restart_with_a_later_fixed_now_catches_up_on_start_up(sqlite_url: str) -> None:
    async with running(settings_for(sqlite_url, fixed_now=T0)) as client:
        await post(client, *failed_conservative_care("late"))
        assert (await client.get("/admin/schedule")).json()["dueNow"] == 0

    later = T0 + timedelta(days=30)  # a long downtime: the 6-week mark passed 28 days ago
    async with running(settings_for(sqlite_url, fixed_now=later)) as client:
        # Scheduler off: the backlog is visible and nothing has changed yet.
        report = (await client.get("/admin/schedule")).json()
        assert report["dueNow"] == 1
        assert datetime.fromisoformat(report["oldestDueAt"]) < T0 + timedelta(days=2, minutes=1)
        assert report["oldestDueAgeSeconds"] > timedelta(days=27).total_seconds()
        metrics = (await client.get("/metrics")).text
        assert _gauge(metrics, "carepath_schedule_due_patients") == 1
        assert _gauge(metrics, "carepath_schedule_oldest_due_age_seconds") > 27 * 86400
        assert not [r for r in await outputs(client, "ServiceRequest", "late") if MRI in codes(r)]

    async with running(settings_for(sqlite_url, fixed_now=later, run_scheduler=True)) as client:
        for _ in range(200):  # the lifespan's scheduler runs in the background: wait for it
            if (await client.get("/admin/schedule")).json()["dueNow"] == 0:
                break
            await asyncio.sleep(0.05)
        report = (await client.get("/admin/schedule")).json()
        assert report["dueNow"] == 0 and report["oldestDueAgeSeconds"] == 0
        metrics = (await client.get("/metrics")).text
        assert _gauge(metrics, "carepath_schedule_due_patients") == 0
        # 30 days on, the last NRS is 32 days old: R7 asks for fresh outcome measures instead of
        # deciding failure on stale data; the decision is the one for *now*, not a replay.
        tasks = {next(iter(codes(t))) for t in await outputs(client, "Task", "late")}
        assert "collect-outcomes" in tasks
        engine = client.app.state.services.engine  # type: ignore[attr-defined]
        async with engine.connect() as conn:
            actors = [r.actor for r in await conn.execute(
                sa.select(tables.audit_log.c.actor).where(tables.audit_log.c.action == "evaluate"))]
        assert actors[-1] == "carepath:scheduler"
        assert "careplan.revised" in webhook_types(await outbox_rows(client))


async def test_a_restart_just_after_six_weeks_proposes_the_mri(sqlite_url: str) -> None:
    async with running(settings_for(sqlite_url, fixed_now=T0)) as client:
        await post(client, *failed_conservative_care("p"))
    async with running(settings_for(sqlite_url, fixed_now=T0 + timedelta(days=3))) as client:
        scheduler = client.app.state.services.extras["scheduler"]  # type: ignore[attr-defined]
        assert await scheduler.catch_up() == 1
        assert [r for r in await outputs(client, "ServiceRequest", "p") if MRI in codes(r)]
        assert await scheduler.catch_up() == 0


async def test_a_failing_re_evaluation_stays_due_and_visible(sqlite_url: str) -> None:
    async with running(settings_for(sqlite_url, fixed_now=T0)) as client:
        await post(client, *failed_conservative_care("p"))
    async with running(settings_for(sqlite_url, fixed_now=T0 + timedelta(days=3))) as client:
        services = client.app.state.services  # type: ignore[attr-defined]

        async def broken(patient_id: str, *, actor: str = "x") -> None:
            raise RuntimeError("rule bug")

        services.evaluator.evaluate = broken
        assert await services.extras["scheduler"].catch_up() == 1
        report = (await client.get("/admin/schedule")).json()
        assert (report["dueNow"], report["failing"]) == (1, 1)
        assert report["items"][0]["lastError"] == "RuntimeError: rule bug"
        assert report["oldestDueAgeSeconds"] > 0
        retry = datetime.fromisoformat(report["items"][0]["lockedUntil"])
        assert retry == T0 + timedelta(days=3, seconds=30)  # not again before then
        assert await services.extras["scheduler"].catch_up() == 0


async def test_the_scheduler_runs_on_its_own_and_catches_up(sqlite_url: str,
                                                            tmp_path: Path) -> None:
    """`python -m service.entrypoints.scheduler`, beside a service that runs none."""
    async with running(settings_for(sqlite_url, fixed_now=T0)) as client:
        await post(client, *failed_conservative_care("alone"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAREPATH_")}
    env.update(DATABASE_URL=sqlite_url, CAREPATH_FIXED_NOW=(T0 + timedelta(days=3)).isoformat(),
               CAREPATH_SCHEDULER_POLL_SECONDS="0.2")
    root = Path(__file__).resolve().parents[2]
    log = tmp_path / "scheduler.log"
    with log.open("wb") as output:
        process = subprocess.Popen([sys.executable, "-m", "service.entrypoints.scheduler"],
                                   cwd=root, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        async with running(settings_for(sqlite_url, fixed_now=T0 + timedelta(days=3))) as client:
            for _ in range(300):
                if (await client.get("/admin/schedule")).json()["dueNow"] == 0:
                    break
                assert process.poll() is None, log.read_text()[-2000:]
                await asyncio.sleep(0.1)
            assert [r for r in await outputs(client, "ServiceRequest", "alone") if MRI in codes(r)]
    finally:
        process.terminate()
        process.wait(timeout=10)
