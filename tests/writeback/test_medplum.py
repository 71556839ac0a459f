"""Write-back against an independent FHIR server (Medplum's router, validating every write and
assigning its own ids): the 24 scenarios clean, in transaction and in per-resource mode, and
under injected faults with `kill -9`s of the worker, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx
import pytest

from service.entrypoints.worker import build_worker
from tests.conftest import FIXTURES, make_settings
from tests.support.scenarios import load_case
from tests.writeback.medplum import Medplum, Report, check, our_outputs
from tests.writeback.support import drain, outbox_counts

ROOT = Path(__file__).resolve().parents[2]
CASES = sorted(p for p in FIXTURES.iterdir() if p.is_dir())
# the faults runs use a subset: two-step scenarios (revisions), escalations, Tasks, withdrawals
FAULT_CASES = [c for c in CASES if c.name[:2] in ("02", "05", "06", "07", "10", "12", "22", "24")]
FAULTS = {"failRatio": 0.5, "latencyMs": 400, "retryAfter": 1, "seed": 7}


async def post_cases(client: httpx.AsyncClient, medplum: Medplum | None, cases: list[Path],
                     steps: slice = slice(None)) -> None:
    """The EHR gets each step first (its own ids), then pushes it to Carepath."""
    for folder in cases:
        for step in load_case(folder)["steps"][steps]:
            body = (folder / step).read_bytes()
            if medplum is not None:
                medplum.seed(body)
            response = await client.post("/fhir", content=body,
                                         headers={"Content-Type": "application/fhir+json"})
            assert response.status_code == 200, response.text


def assert_usable(report: Report) -> None:
    assert not report.problems(), report.problems()
    assert report.on_server == report.expected
    assert report.references > report.expected  # the check looked at references at all


async def test_all_24_scenarios_clean_by_transaction(client_for, sqlite_url, medplum):  # type: ignore[no-untyped-def]
    settings = make_settings(sqlite_url, fhir_server_url=medplum.url, outbox_backoff_seconds=0.01)
    client = await client_for(settings)
    await post_cases(client, medplum, CASES)
    engine = client.app.state.services.engine
    worker = build_worker(engine, settings, client.app.state.services.http)
    await drain([worker], engine)
    report = check(medplum.state(), await our_outputs(engine))
    assert_usable(report)
    assert report.expected > 24 + 24  # CarePlans, their requests and Tasks, and the Device
    assert report.statuses.get("412", 0) == 0
    counts = await outbox_counts(engine)
    assert set(counts) <= {"delivered", "superseded"}, counts
    print(f"\nclean run: {report}")


async def test_without_transaction_support_each_resource_is_written_in_order(  # type: ignore[no-untyped-def]
        client_for, sqlite_url, medplum):
    medplum.control(transactions=False)
    settings = make_settings(sqlite_url, fhir_server_url=medplum.url, outbox_backoff_seconds=0.01)
    client = await client_for(settings)
    await post_cases(client, medplum, FAULT_CASES)
    engine = client.app.state.services.engine
    worker = build_worker(engine, settings, client.app.state.services.http)
    await drain([worker], engine)
    state = medplum.state()
    assert_usable(check(state, await our_outputs(engine)))
    assert state["stats"]["status"].get("400", 0) == 0  # never tried a transaction


@pytest.mark.parametrize("transactions", [True, False], ids=["transaction", "per-resource"])
async def test_a_clinician_edit_on_the_server_gives_412_then_a_fresh_etag(  # type: ignore[no-untyped-def]
        client_for, sqlite_url, medplum, transactions):
    medplum.control(transactions=transactions)
    settings = make_settings(sqlite_url, fhir_server_url=medplum.url, outbox_backoff_seconds=0.01)
    client = await client_for(settings)
    folder = next(c for c in CASES if c.name.startswith("05"))  # step 2 revises the CarePlan
    await post_cases(client, medplum, [folder], slice(0, 1))
    engine = client.app.state.services.engine
    worker = build_worker(engine, settings, client.app.state.services.http)
    await drain([worker], engine)
    careplan = next(h[-1] for h in medplum.state()["resources"].values()
                    if h[-1]["resourceType"] == "CarePlan")
    edited = {**careplan, "description": "edited on the EHR", "meta": {"source": "urn:ehr:ward"}}
    answer = httpx.put(f"{medplum.url}/CarePlan/{careplan['id']}", json=edited)
    assert answer.status_code == 200
    await post_cases(client, medplum, [folder], slice(1, None))
    await drain([worker], engine)
    state = medplum.state()
    assert_usable(check(state, await our_outputs(engine)))
    assert state["stats"]["status"].get("412") == 1  # once, then the fresh ETag was used
    history = state["resources"][f"CarePlan/{careplan['id']}"]
    sources = [v["meta"]["source"].rsplit("/", 1)[-1] for v in history]
    assert sources == ["1", "urn:ehr:ward", "2"], sources


def _start_worker(database_url: str, fhir_url: str, log: int | IO[bytes] = subprocess.DEVNULL
                  ) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CAREPATH_DATABASE_URL": database_url, "FHIR_SERVER_URL": fhir_url,
           "CAREPATH_OUTBOX_LEASE_SECONDS": "8", "CAREPATH_OUTBOX_BACKOFF_SECONDS": "0.05",
           "CAREPATH_OUTBOX_BACKOFF_MAX_SECONDS": "2", "CAREPATH_OUTBOX_POLL_SECONDS": "0.05"}
    return subprocess.Popen([sys.executable, "-m", "service.entrypoints.worker"], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=log)


def _calls(medplum: Medplum) -> int:
    return int(medplum.state()["stats"]["calls"])


async def _kill_after_calls(worker: subprocess.Popen[bytes], medplum: Medplum, calls: int) -> None:
    target, deadline = _calls(medplum) + calls, time.monotonic() + 60
    while _calls(medplum) < target and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    worker.send_signal(signal.SIGKILL)
    worker.wait(10)
    assert worker.returncode == -signal.SIGKILL


async def _until_drained(engine, seconds: float) -> float:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    while (await outbox_counts(engine)).get("pending") and time.monotonic() - start < seconds:
        await asyncio.sleep(0.1)
    return time.monotonic() - start


async def _fault_run(client, database_url: str, medplum: Medplum, replicas: int,  # type: ignore[no-untyped-def]
                     cases: list[Path] = FAULT_CASES, log: int | IO[bytes] = subprocess.DEVNULL,
                     faults_seconds: float = 5) -> Report:
    """Half the scenarios posted, faults on, workers started and killed three times while the
    rest is posted, then faults off: everything must drain by itself."""
    engine = client.app.state.services.engine
    half = len(cases) // 2
    for folder in cases:  # the EHR holds the inputs before the faults start
        for step in load_case(folder)["steps"]:
            medplum.seed((folder / step).read_bytes())
    await post_cases(client, None, cases[:half])
    medplum.control(**FAULTS)
    workers = [_start_worker(database_url, medplum.url, log) for _ in range(replicas)]
    await _kill_after_calls(workers[0], medplum, 15)
    await post_cases(client, None, cases[half:], slice(0, 1))
    workers[0] = _start_worker(database_url, medplum.url, log)
    await _kill_after_calls(workers[-1], medplum, 15)
    await post_cases(client, None, cases[half:], slice(1, None))
    workers[-1] = _start_worker(database_url, medplum.url, log)
    await _kill_after_calls(workers[0], medplum, 15)
    workers[0] = _start_worker(database_url, medplum.url, log)
    try:
        await asyncio.sleep(faults_seconds)  # more deliveries under faults
        report_faults = medplum.state()["stats"]["faults"]
        medplum.control()
        drained = await _until_drained(engine, 120)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
    counts = await outbox_counts(engine)
    assert not counts.get("pending") and not counts.get("failed"), counts
    report = check(medplum.state(), await our_outputs(engine))
    report.faults, report.drain_seconds = report_faults, drained
    print(f"\nfault run ({replicas} worker(s)): {report}")
    return report


async def test_faults_and_kill_9_on_sqlite_heal_by_themselves(client_for, sqlite_url, medplum):  # type: ignore[no-untyped-def]
    client = await client_for(make_settings(sqlite_url, fhir_server_url=medplum.url))
    report = await _fault_run(client, sqlite_url, medplum, replicas=1)
    assert_usable(report)


async def test_faults_and_kill_9_with_two_replicas_on_postgres(client_for, postgres_url, medplum):  # type: ignore[no-untyped-def]
    client = await client_for(make_settings(postgres_url, fhir_server_url=medplum.url))
    report = await _fault_run(client, postgres_url, medplum, replicas=2)
    assert_usable(report)


async def test_a_long_outage_is_retried_past_any_attempt_count_then_heals(  # type: ignore[no-untyped-def]
        client_for, sqlite_url, medplum):
    settings = make_settings(sqlite_url, fhir_server_url=medplum.url, outbox_backoff_seconds=0.001,
                             outbox_backoff_max_seconds=0.001)
    client = await client_for(settings)
    await post_cases(client, medplum, FAULT_CASES[:2])
    medplum.control(failRatio=1.0, retryAfter=0)
    engine = client.app.state.services.engine
    worker = build_worker(engine, settings, client.app.state.services.http)
    for _ in range(15):
        await worker.run_once()
        await asyncio.sleep(0.01)
    listing = (await client.get("/admin/outbox", params={"kind": "fhir"})).json()
    assert listing["counts"]["failed"] == 0
    assert min(i["attempts"] for i in listing["items"] if i["status"] == "pending") > 12
    assert listing["oldestPendingAgeSeconds"] > 0
    metrics = (await client.get("/metrics")).text
    age = next(line for line in metrics.splitlines()
               if line.startswith('carepath_outbox_oldest_pending_seconds{kind="fhir"}'))
    assert float(age.split()[-1]) > 0
    medplum.control()
    await drain([worker], engine)
    assert_usable(check(medplum.state(), await our_outputs(engine)))
    assert (await client.get("/admin/outbox")).json()["oldestPendingAgeSeconds"] is None


async def test_past_its_retry_budget_a_row_fails_visibly_and_an_admin_can_requeue_it(  # type: ignore[no-untyped-def]
        client_for, sqlite_url, medplum):
    settings = make_settings(sqlite_url, fhir_server_url=medplum.url, outbox_retry_hours=1e-6)
    client = await client_for(settings)
    await post_cases(client, medplum, FAULT_CASES[:1])
    medplum.control(failRatio=1.0, retryAfter=0)
    engine = client.app.state.services.engine
    worker = build_worker(engine, settings, client.app.state.services.http)
    await asyncio.sleep(0.01)
    await worker.run_once()
    failed = (await client.get("/admin/outbox", params={"status": "failed"})).json()["items"]
    assert len(failed) == 1 and failed[0]["attempts"] == 1
    medplum.control()
    assert (await client.post(f"/admin/outbox/{failed[0]['id']}/retry")).status_code == 200
    await worker.run_once()  # the decision; its Provenance row is staged and due now
    await drain([worker], engine)
    assert_usable(check(medplum.state(), await our_outputs(engine)))


async def test_newer_decisions_coalesce_and_only_the_newest_version_is_written(  # type: ignore[no-untyped-def]
        client_for, sqlite_url, medplum):
    settings = make_settings(sqlite_url, fhir_server_url=medplum.url)
    client = await client_for(settings)
    folder = next(c for c in CASES if c.name.startswith("05"))
    await post_cases(client, medplum, [folder])  # both steps before the worker runs
    engine = client.app.state.services.engine
    assert await outbox_counts(engine) == {"pending": 1, "superseded": 1}
    await drain([build_worker(engine, settings, client.app.state.services.http)], engine)
    state = medplum.state()
    assert_usable(check(state, await our_outputs(engine)))
    plans = [h for h in state["resources"].values() if h[-1]["resourceType"] == "CarePlan"]
    assert len(plans) == 1 and len(plans[0]) == 1  # version 1 was never sent
    assert plans[0][0]["meta"]["source"].endswith("/_history/2")


async def test_after_a_lost_answer_the_412_leads_to_a_read_not_to_a_stale_etag_again(  # type: ignore[no-untyped-def]
        client_for, sqlite_url, medplum, caplog):
    settings = make_settings(sqlite_url, fhir_server_url=medplum.url, outbox_backoff_seconds=0.001,
                             outbox_backoff_max_seconds=0.001)
    client = await client_for(settings)
    folder = next(c for c in CASES if c.name.startswith("05"))
    await post_cases(client, medplum, [folder], slice(0, 1))
    engine = client.app.state.services.engine
    worker = build_worker(engine, settings, client.app.state.services.http)
    await drain([worker], engine)
    await post_cases(client, medplum, [folder], slice(1, None))
    medplum.control(loseAnswers=[2], retryAfter=0)  # after a search, the revision lands unanswered
    caplog.set_level("INFO", "carepath.writeback")
    await drain([worker], engine)
    state = medplum.state()
    assert_usable(check(state, await our_outputs(engine)))
    assert state["stats"]["status"].get("412") == 1  # one stale If-Match, then the read
    assert "412 on CarePlan/" in caplog.text and "already holds our version" in caplog.text
