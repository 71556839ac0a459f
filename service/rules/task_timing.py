"""Due times and overdue Tasks (spec 2a.1: time is an input).

Every Task the pathway raises gets a due time: the raising branch's `task_due`, else the task
template's `due`, else the pathway's `default_task_due`, counted from when the task was first raised
(kept across re-evaluations). A task that asks for data (`asks_for` concepts) and whose due time has
passed without new data of those concepts is *overdue*: the CarePlan says so, and when the branch
that raised it names an escalation (`when_overdue`, e.g. R4's "re-examine in 24-48 h") the
escalation task is raised at its urgency. Tasks that ask for no data (clinician reviews) have a due
time but are never marked overdue: their completion is not visible to the pathway.
Source: clinical-rules §2a.1; the durations are product defaults in the pathway file.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from service.domain.evaluation import PathwayEvaluation, ProposedTask, Urgency
from service.domain.facts import PatientFacts
from service.domain.tasks import TaskOnFile
from service.rules.definition import Branch, PathwayDefinition


def time_tasks(definition: PathwayDefinition, evaluation: PathwayEvaluation, facts: PatientFacts,
               on_file: Iterable[TaskOnFile]) -> PathwayEvaluation:
    """The evaluation with every task's first-raised and due instants, overdue tasks marked, the
    escalations they call for added, and a CarePlan note per overdue task."""
    now = evaluation.evaluated_at
    prior = {t.key: t.authored for t in on_file}
    raised_by = _branches(definition, evaluation)
    timed: list[ProposedTask] = []
    escalations: list[ProposedTask] = []
    notes: list[str] = []
    for task in evaluation.plan.tasks:
        template = definition.tasks[task.task]
        branches = raised_by.get(task.task, [])
        authored = prior.get(task.key, now)
        within = min((b.task_due for b in branches if b.task_due), default=None) or (
            template.due or definition.default_task_due)
        due = authored + within if within is not None else None
        overdue = (due is not None and now >= due and bool(template.asks_for)
                   and not _answered(facts, template.asks_for, authored))
        timed.append(task.timed(authored, due, overdue))
        if not overdue:
            continue
        assert due is not None
        notes.append(f"Task overdue since {_instant(due)}: {template.description} "
                     f"(asked for on {_instant(authored)}, nothing recorded since)")
        for branch in branches:
            if branch.when_overdue is None:
                continue
            name = branch.when_overdue.task
            key = task.key.rsplit(":task:", 1)[0] + f":task:{name}"
            escalations.append(ProposedTask(
                key, name, task.rule_id, definition.tasks[name].description, task.reasons,
                urgency=Urgency.from_priority(branch.when_overdue.urgency)))
            notes.append(f"overdue {task.task} escalated: {definition.tasks[name].description} "
                         f"({branch.when_overdue.urgency})")
    for escalation in escalations:
        if any(t.key == escalation.key for t in timed):
            continue
        template = definition.tasks[escalation.task]
        authored = prior.get(escalation.key, now)
        within = template.due or definition.default_task_due
        timed.append(escalation.timed(authored, authored + within if within is not None else None,
                                      escalation.overdue))
    return evaluation.with_plan(evaluation.plan.with_tasks(tuple(timed), evaluation.plan.notes + tuple(notes)))


def _branches(definition: PathwayDefinition, evaluation: PathwayEvaluation
              ) -> dict[str, list[Branch]]:
    """Task name -> the output branches that raised it in this evaluation."""
    found: dict[str, list[Branch]] = {}
    for result in evaluation.results:
        rule = definition.rule(result.rule_id)
        for action in result.actions:
            branch = rule.outputs.get(action.branch)
            for name in branch.tasks if branch else ():
                found.setdefault(name, []).append(branch)  # type: ignore[arg-type]
    return found


def _answered(facts: PatientFacts, concepts: list[str], since: datetime) -> bool:
    """New data of the concepts a task asked for, recorded (clinical time) since it was raised."""
    wanted = set(concepts)
    dated: list[tuple[str, datetime]] = [(m.concept, m.time) for m in facts.measurements]
    dated += [(f.concept, f.time) for f in facts.findings]
    dated += [(p.concept, p.time) for p in facts.procedures]
    return any(concept in wanted and when >= since for concept, when in dated)


def due_within(definition: PathwayDefinition) -> list[timedelta]:
    """Every task duration the pathway declares (the horizon needs them as candidate offsets)."""
    found = [t.due for t in definition.tasks.values() if t.due]
    found += [b.task_due for r in definition.rules for b in r.outputs.values() if b.task_due]
    return found + ([definition.default_task_due] if definition.default_task_due else [])


def _instant(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
