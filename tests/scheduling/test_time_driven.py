"""Time-driven re-evaluation (spec 2a.1): with nothing posted, the decision moves with the clock,
and everything downstream happens as for new data (CarePlan, write-back, webhook events)."""

from __future__ import annotations

from datetime import datetime, timedelta

from service.service_layer.clock import ManualClock
from tests.scheduling.support import (
    MRI,
    T0,
    codes,
    failed_conservative_care,
    finding,
    mrc,
    outbox_rows,
    outputs,
    post,
    radicular_dx,
    running,
    settings_for,
    webhook_types,
)


def scheduler(client):  # type: ignore[no-untyped-def]
    return client.app.state.services.extras["scheduler"]


async def test_failed_conservative_care_fires_at_six_weeks_with_nothing_posted(
        sqlite_url: str) -> None:
    clock = ManualClock(T0)
    async with running(settings_for(sqlite_url), clock) as client:
        await post(client, *failed_conservative_care("p7"))
        assert not [r for r in await outputs(client, "ServiceRequest", "p7") if MRI in codes(r)]
        (careplan,) = await outputs(client, "CarePlan", "p7")
        schedule = (await client.get("/admin/schedule")).json()
        (due,) = schedule["items"]
        assert due["patient"] == "p7" and "R7" in due["reason"]
        six_weeks = T0 + timedelta(days=2)
        assert six_weeks < datetime.fromisoformat(due["dueAt"]) <= six_weeks + timedelta(seconds=1)
        staged = await outbox_rows(client)

        clock.advance(timedelta(days=1))
        assert await scheduler(client).catch_up() == 0  # not yet six weeks: nothing is due
        clock.advance(timedelta(days=2))
        assert await scheduler(client).catch_up() == 1

        (mri,) = [r for r in await outputs(client, "ServiceRequest", "p7") if MRI in codes(r)]
        assert (mri["status"], mri["priority"], mri["intent"]) == ("draft", "routine", "proposal")
        (revised,) = await outputs(client, "CarePlan", "p7")
        assert int(revised["meta"]["versionId"]) > int(careplan["meta"]["versionId"])
        assert "R7" in revised["description"]
        new = (await outbox_rows(client))[len(staged):]
        written = {f"{r['resourceType']}/{r['id']}"  # one write-back row per decision
                   for kind, _, payload in new if kind == "fhir"
                   for r in payload.get("resources", [])}
        assert f"ServiceRequest/{mri['id']}" in written and f"CarePlan/{revised['id']}" in written
        assert {"careplan.revised", "servicerequest.created"} <= set(webhook_types(new))
        audit = (await client.get("/admin/schedule")).json()["items"]
        assert all(datetime.fromisoformat(i["dueAt"]) > clock.now for i in audit)


async def test_red_flag_screen_becomes_due_fourteen_days_after_the_last_screen(
        sqlite_url: str) -> None:
    clock = ManualClock(T0)
    screened = T0 - timedelta(days=10)
    async with running(settings_for(sqlite_url), clock) as client:
        await post(client, radicular_dx("p0", T0 - timedelta(days=12)),
                   *(finding("p0", code, False, screened)
                     for code in ("LRP-SADDLE", "LRP-BLADDER", "LRP-BOWEL")))
        tasks = [codes(t) for t in await outputs(client, "Task", "p0")]
        assert {"red-flag-screen-due"} not in tasks
        clock.advance(timedelta(days=3, hours=23))
        assert await scheduler(client).catch_up() == 0
        clock.advance(timedelta(hours=2))  # 14 days and an hour after the screen
        assert await scheduler(client).catch_up() == 1
        (task,) = [t for t in await outputs(client, "Task", "p0")
                   if codes(t) == {"red-flag-screen-due"}]
        assert task["status"] == "requested"
        assert task["restriction"]["period"]["end"] > task["authoredOn"]
        (careplan,) = await outputs(client, "CarePlan", "p0")
        assert any(a["reference"]["reference"] == f"Task/{task['id']}"
                   for a in careplan["activity"] if "reference" in a)
        assert "careplan.revised" in webhook_types(await outbox_rows(client))


async def test_an_overdue_re_examination_after_progression_escalates_to_an_asap_review(
        sqlite_url: str) -> None:
    clock = ManualClock(T0)
    async with running(settings_for(sqlite_url), clock) as client:
        # Ankle dorsiflexion 5 -> 4: a new deficit in a muscle graded 5 (R4 ii): re-examine in
        # 24-48 h.
        await post(client, radicular_dx("p4", T0 - timedelta(days=10)),
                   mrc("p4", 1, 5, T0 - timedelta(days=3)),
                   mrc("p4", 2, 4, T0 - timedelta(hours=2)))
        (reexamine,) = [t for t in await outputs(client, "Task", "p4")
                        if codes(t) == {"motor-reexamine"}]
        assert reexamine["restriction"]["period"]["end"] == "2026-03-04T09:00:00Z"  # 48 h
        assert "businessStatus" not in reexamine
        before = await outbox_rows(client)

        clock.advance(timedelta(hours=47))
        assert await scheduler(client).catch_up() == 0
        clock.advance(timedelta(hours=2))
        assert await scheduler(client).catch_up() == 1

        tasks = {next(iter(codes(t))): t for t in await outputs(client, "Task", "p4")}
        overdue = tasks["motor-reexamine"]
        assert overdue["businessStatus"]["coding"][0]["code"] == "overdue"
        assert overdue["status"] == "requested"
        review = tasks["reexamine-overdue-review"]
        assert (review["priority"], review["status"]) == ("asap", "requested")
        (careplan,) = await outputs(client, "CarePlan", "p4")
        notes = " ".join(n["text"] for n in careplan["note"])
        assert "Task overdue since 2026-03-04T09:00:00Z" in notes
        assert any(a["reference"]["display"].endswith("(overdue)")
                   for a in careplan["activity"] if "reference" in a)
        events = [p["message"] for kind, _, p in (await outbox_rows(client))[len(before):]
                  if kind == "webhook" and p["message"]["type"] == "task.overdue"]
        (event,) = events
        assert event["data"]["task"] == f"Task/{overdue['id']}"
        assert event["data"]["escalations"] == [f"Task/{review['id']}"]

        # Re-evaluating again changes nothing and sends the event only once.
        assert await scheduler(client).catch_up() == 0
        await client.app.state.services.evaluator.evaluate("p4")  # type: ignore[attr-defined]
        again = [p for kind, _, p in await outbox_rows(client)
                 if kind == "webhook" and p["message"]["type"] == "task.overdue"]
        assert len(again) == 1

        # The re-examination arrives: the task is answered, the escalation is withdrawn.
        await post(client, mrc("p4", 3, 4, clock.now - timedelta(hours=1)))
        tasks = {next(iter(codes(t))): t for t in await outputs(client, "Task", "p4")}
        assert "businessStatus" not in tasks["motor-reexamine"]
        assert tasks["reexamine-overdue-review"]["status"] == "cancelled"
