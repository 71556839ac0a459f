"""Task due times and overdue marks (rules.task_timing), on the pure pipeline."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from service.domain.tasks import TaskOnFile
from service.rules.evaluator import evaluate
from service.rules.horizon import assess
from service.rules.loader import PathwayDefinitionError, load_pathway
from service.rules.registry import Pathway
from service.service_layer.decide import decide
from tests.conftest import PATHWAY_FILE
from tests.scheduling.support import T0, finding, mrc, radicular_dx


def _tasks(pathway: Pathway, resources, moment, on_file=()):  # type: ignore[no-untyped-def]
    facts = decide(pathway, "p", resources, T0).facts
    return {t.task: t for t in assess(pathway, facts, moment, on_file).plan.tasks}


def test_a_review_task_has_a_due_time_but_is_never_marked_overdue(pathway: Pathway) -> None:
    # A saddle finding 20 days old and stable: R1 at asap with a clinician review task.
    resources = [radicular_dx("p", T0 - timedelta(days=30)),
                 finding("p", "LRP-SADDLE", True, T0 - timedelta(days=20))]
    first = _tasks(pathway, resources, T0)["red-flag-review"]
    assert first.due == T0 + pathway.definition.default_task_due  # type: ignore[operator]
    later = _tasks(pathway, resources, T0 + timedelta(days=30), [TaskOnFile(first.key, T0)])
    assert not later["red-flag-review"].overdue


def test_the_shorter_due_time_wins_when_two_rules_ask_for_the_same_task(pathway: Pathway) -> None:
    # MRC 4 after 5: R3 asks for a re-examination in 2 weeks, R4 within 48 h.
    resources = [radicular_dx("p", T0 - timedelta(days=10)), mrc("p", 1, 5, T0 - timedelta(days=3)),
                 mrc("p", 2, 4, T0 - timedelta(hours=2))]
    task = _tasks(pathway, resources, T0)["motor-reexamine"]
    assert task.due == T0 + timedelta(hours=48)


def test_an_exam_recorded_after_the_task_was_raised_answers_it(pathway: Pathway) -> None:
    resources = [radicular_dx("p", T0 - timedelta(days=10)), mrc("p", 1, 5, T0 - timedelta(days=3)),
                 mrc("p", 2, 4, T0 - timedelta(hours=2))]
    raised = _tasks(pathway, resources, T0)["motor-reexamine"]
    on_file = [TaskOnFile(raised.key, T0)]
    late = T0 + timedelta(hours=50)
    assert _tasks(pathway, resources, late, on_file)["motor-reexamine"].overdue
    answered = [*resources, mrc("p", 3, 4, T0 + timedelta(hours=30))]
    tasks = _tasks(pathway, answered, late, on_file)
    assert not tasks["motor-reexamine"].overdue and "reexamine-overdue-review" not in tasks


@pytest.mark.parametrize(("old", "new", "message"), [
    ("asks_for: [pain_nrs, odi]}", "asks_for: [pain_nrs, odii]}",
     "asks for unknown concept 'odii'"),
    ("when_overdue: {task: reexamine-overdue-review", "when_overdue: {task: nowhere",
     "escalates to unknown task 'nowhere'"),
])
def test_task_timing_mistakes_stop_the_pathway_loading(tmp_path: Path, old: str, new: str,
                                                       message: str) -> None:
    text = PATHWAY_FILE.read_text()
    assert old in text
    path = tmp_path / PATHWAY_FILE.name
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(PathwayDefinitionError, match=message):
        load_pathway(path)


def test_timing_a_task_keeps_everything_the_pathway_said_about_it(pathway: Pathway) -> None:
    # Escalated tasks keep their urgency, reasons and description once timed (every field but the timing).
    resources = [radicular_dx("p", T0 - timedelta(days=10)), mrc("p", 1, 5, T0 - timedelta(days=3)),
                 mrc("p", 2, 4, T0 - timedelta(hours=2))]
    facts = decide(pathway, "p", resources, T0).facts
    plain = evaluate(pathway, facts, T0)
    assessed = assess(pathway, facts, T0)
    untimed, timed = plain.plan.tasks, {t.key: t for t in assessed.plan.tasks}
    assert untimed
    assert replace(assessed, plan=replace(assessed.plan, tasks=untimed, notes=plain.plan.notes)) == plain
    for task in untimed:
        assert timed[task.key] == replace(task, authored=T0, due=timed[task.key].due, overdue=False)
        assert timed[task.key].due is not None
