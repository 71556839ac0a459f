"""The horizon (rules.horizon): the earliest future instant at which the decision could change."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from service.domain.tasks import TaskOnFile
from service.fhir.bundles import bundle_entries
from service.fhir.normalize import subject_id
from service.rules.horizon import assess, next_change
from service.rules.registry import Pathway
from service.rules.traced_time import TimeTrace, TracedInstant
from service.service_layer.decide import decide
from tests.conftest import AS_OF, FIXTURES
from tests.scheduling.support import T0, failed_conservative_care, mrc, radicular_dx

CASES = sorted(p for p in FIXTURES.iterdir() if p.is_dir())


def _signature(evaluation):  # type: ignore[no-untyped-def]
    plan = evaluation.plan
    return ([(r.rule_id, r.outcome, r.urgency, r.actions, r.flags, [e.ref for e in r.evidence])
             for r in evaluation.results],
            [(r.key, r.urgency, r.status) for r in plan.requests],
            [(t.key, t.overdue, t.urgency) for t in plan.tasks])


def test_failed_conservative_care_is_due_at_the_six_week_mark(pathway: Pathway) -> None:
    decision = decide(pathway, "p7", failed_conservative_care("p7"), T0)
    change = next_change(pathway, decision.facts, decision.evaluation)
    assert change is not None
    six_weeks = T0 - timedelta(days=40) + pathway.params["R7"].conservative_for  # type: ignore[attr-defined]
    assert six_weeks < change.at <= six_weeks + timedelta(seconds=1)
    assert "R7" in change.why


def test_the_window_follows_the_pathway_file_not_a_constant(pathway: Pathway) -> None:
    eight_weeks = pathway.params["R7"].model_copy(update={"conservative_for": timedelta(days=56)})
    changed = Pathway(pathway.definition, {**pathway.params, "R7": eight_weeks})
    moment, seen = T0, []
    while moment < T0 + timedelta(days=30):  # follow the schedule as the scheduler would
        decision = decide(changed, "p7", failed_conservative_care("p7"), moment)
        change = next_change(changed, decision.facts, decision.evaluation)
        assert change is not None
        seen.append(change)
        if "R7" in change.why:
            break
        moment = change.at
    eight_weeks = T0 - timedelta(days=40) + timedelta(days=56)
    assert eight_weeks < seen[-1].at <= eight_weeks + timedelta(seconds=1) and "R7" in seen[-1].why
    assert all("R7" not in c.why for c in seen[:-1])


def test_a_re_examination_is_due_forty_eight_hours_after_progression(pathway: Pathway) -> None:
    resources = [radicular_dx("p", T0 - timedelta(days=10)), mrc("p", 1, 5, T0 - timedelta(days=3)),
                 mrc("p", 2, 4, T0 - timedelta(hours=2))]
    decision = decide(pathway, "p", resources, T0)
    change = next_change(pathway, decision.facts, decision.evaluation)
    assert change is not None
    assert T0 + timedelta(hours=48) < change.at <= T0 + timedelta(hours=48, seconds=1)
    assert "task:motor-reexamine" in change.why


def test_nothing_is_scheduled_without_an_episode_or_data(pathway: Pathway) -> None:
    decision = decide(pathway, "nobody", [], T0)
    assert next_change(pathway, decision.facts, decision.evaluation) is None


@pytest.mark.parametrize("folder", CASES, ids=[p.name for p in CASES])
def test_no_decision_changes_before_the_horizon(folder: Path, pathway: Pathway) -> None:
    """For each scenario: at every sampled instant between now and the horizon the decision is
    today's, and at the horizon it differs (unless the probe limit was reached)."""
    resources = [e.resource for step in sorted(folder.glob("step-*.bundle.json"))
                 for e in bundle_entries(json.loads(step.read_text()))[1]]
    patient = json.loads((folder / "case.json").read_text())["patient"]
    mine = [r for r in resources if subject_id(r) == patient]
    decision = decide(pathway, patient, mine, AS_OF)
    change = next_change(pathway, decision.facts, decision.evaluation)
    assert change is not None and change.at > AS_OF
    on_file = [TaskOnFile(t.key, t.authored) for t in decision.evaluation.plan.tasks if t.authored]
    today = _signature(decision.evaluation)
    span = change.at - AS_OF
    for step in range(1, 25):
        moment = AS_OF + span * step / 25
        assert _signature(assess(pathway, decision.facts, moment, on_file)) == today, moment
    just_before = change.at - timedelta(seconds=1)
    assert _signature(assess(pathway, decision.facts, just_before, on_file)) == today
    if not change.why[0].startswith("re-check"):
        assert _signature(assess(pathway, decision.facts, change.at, on_file)) != today


@pytest.mark.parametrize("folder", CASES, ids=[p.name for p in CASES])
def test_an_evaluation_holds_over_the_whole_interval_its_trace_reports(folder: Path, pathway: Pathway) -> None:
    """The horizon answers for many instants with one evaluation traced at one of them: at every
    instant of the interval the trace reports, a plain evaluation decides the same."""
    resources = [e.resource for step in sorted(folder.glob("step-*.bundle.json"))
                 for e in bundle_entries(json.loads(step.read_text()))[1]]
    patient = json.loads((folder / "case.json").read_text())["patient"]
    decision = decide(pathway, patient, [r for r in resources if subject_id(r) == patient], AS_OF)
    on_file = [TaskOnFile(t.key, t.authored) for t in decision.evaluation.plan.tasks if t.authored]
    for days in (0, 3, 17, 45, 120):
        moment = AS_OF + timedelta(days=days, minutes=7)
        trace = TimeTrace(moment)
        traced = assess(pathway, decision.facts, TracedInstant.of(trace), on_file)
        decided = _signature(traced)
        assert decided == _signature(assess(pathway, decision.facts, moment, on_file))
        low = trace.low or moment - timedelta(days=400)
        high = trace.high or moment + timedelta(days=400)
        assert not trace.opaque and low <= moment < high
        for step in range(0, 21):
            inside = low + (high - timedelta(microseconds=1) - low) * step / 20
            assert _signature(assess(pathway, decision.facts, inside, on_file)) == decided, (moment, inside)
