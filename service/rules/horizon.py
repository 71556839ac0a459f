"""The earliest future instant at which the pathway's decision could change with no new data
(spec 2a.1: time is an input).

Every time-dependent comparison in the checks and the planner has the form "clinical time t plus a
window d, against now": the 6-week mark (R5/R7), the 14-day windows (R0, R1, R3, R7 recency), the
24-48 h re-examination (R4), the post-ESI window (R8), the 90-day episode reset, the 180-day study
lookback, and the tasks' due times. So every instant at which an outcome can change is one of
t + d, for t a dated fact of the patient (or the episode onset, or a task's due time) and d one of
the durations the pathway declares in its rule parameters (read from the loaded pathway, never
restated here), or a birthday (age thresholds).

Not every such instant changes anything. Candidates are *probed*: the same pure evaluation is run
as of that instant on the same facts, and the first one whose decision (outcomes, urgencies,
actions, evidence, requests, tasks, overdue marks) differs from now is the answer. The nearest
candidates are probed one by one; further out (a long record has thousands of candidates) the
search gallops (1, 2, 4, ... candidates ahead) and then bisects back to the first that differs,
which assumes a decision does not change and change back to exactly today's between two probes.
The probe count is capped; past the cap the last instant probed is returned, which only means one
re-evaluation that changes nothing.

Probes are evaluated with a traced instant (`traced_time`): besides the decision, that evaluation
reports the interval of instants over which it comes out the same (every threshold it compared
"now" against). A later probe inside an interval already evaluated takes that answer instead of
evaluating again, so a search costs about one evaluation per distinct decision it meets rather than
one per probe. Which candidates are probed, in which order, and the cap are unchanged.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from service.domain.evaluation import PathwayEvaluation, RuleResult
from service.domain.facts import PatientFacts
from service.domain.tasks import TaskOnFile
from service.rules.episode import QUIET_GAP
from service.rules.evaluator import evaluate
from service.rules.planner import EQUIVALENT_LOOKBACK
from service.rules.registry import Pathway
from service.rules.task_timing import due_within, time_tasks
from service.rules.traced_time import TimeTrace, TracedInstant

MAX_PROBES = 48
NEAR = 4  # candidates probed one by one before galloping
# Windows are compared both as `<` and `<=`: probing just after t + d sees either flip.
JUST_AFTER = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class _Probe:
    differs: bool
    why: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NextChange:
    """When to re-evaluate, and what is expected to change then (rule ids, task names)."""

    at: datetime
    why: tuple[str, ...]


def assess(pathway: Pathway, facts: PatientFacts, now: datetime,
           tasks_on_file: Iterable[TaskOnFile] = ()) -> PathwayEvaluation:
    """The whole pure decision as of `now`: rules, plan, then task due times and overdue marks."""
    return time_tasks(pathway.definition, evaluate(pathway, facts, now), facts, tasks_on_file)


def next_change(pathway: Pathway, facts: PatientFacts, evaluation: PathwayEvaluation,
                max_probes: int = MAX_PROBES) -> NextChange | None:
    """The first instant after `evaluation.evaluated_at` at which, with the same facts, the decision
    differs; None when nothing on file can change with time alone."""
    raised = [TaskOnFile(t.key, t.authored) for t in evaluation.plan.tasks if t.authored]
    before = _signature(evaluation)
    moments = candidates(pathway, facts, evaluation)
    probed: dict[int, _Probe] = {}
    evaluated: list[tuple[TimeTrace, _Probe]] = []

    def probe(moment: datetime) -> _Probe:
        """Whether the decision at `moment` differs from now, and in what. An evaluation holds for
        every instant its trace covers, so one evaluation answers for all the probes in there."""
        for trace, answer in evaluated:
            if trace.covers(moment):
                return answer
        trace = TimeTrace(moment)
        probed_evaluation = assess(pathway, facts, TracedInstant.of(trace), raised)
        after = _signature(probed_evaluation)
        answer = _Probe(after != before, _differences(before, after))  # compared while traced
        trace.settle(_decided_text(probed_evaluation))
        evaluated.append((trace, answer))
        return answer

    def differs(index: int) -> bool:
        if index not in probed:
            probed[index] = probe(moments[index])
        return probed[index].differs

    def found(index: int) -> NextChange:
        return NextChange(moments[index], probed[index].why)

    same = -1  # the last candidate known to give today's decision
    for index in range(min(NEAR, len(moments))):
        if differs(index):
            return found(index)
        same = index
    step = 1
    while same + 1 < len(moments):
        ahead = min(same + step, len(moments) - 1)
        if differs(ahead):
            while ahead - same > 1:
                middle = (same + ahead) // 2
                same, ahead = (same, middle) if differs(middle) else (middle, ahead)
            return found(ahead)
        same, step = ahead, step * 2
        if len(probed) >= max_probes:
            return NextChange(moments[same], ("re-check: probe limit reached",))
    return None


def candidates(pathway: Pathway, facts: PatientFacts, evaluation: PathwayEvaluation
               ) -> Sequence[datetime]:
    """Every instant after now at which some window on file opens or closes, in time order."""
    now = evaluation.evaluated_at
    windows = _windows(pathway)
    times = set(_fact_times(facts))
    if evaluation.episode is not None:
        times.add(evaluation.episode.onset)
    for task in evaluation.plan.tasks:
        times.update(t for t in (task.authored, task.due) if t is not None)
    birthdays = _birthdays(facts.birth_date, now)
    fast = _in_microseconds(times, windows, birthdays, now)
    if fast is not None:
        return fast
    found = {t + d + JUST_AFTER for t in times for d in windows}
    found.update(birthdays)
    return sorted(moment for moment in found if moment > now)


class _Instants(Sequence[datetime]):
    """UTC instants held as sorted microseconds since the epoch; made datetimes only when read (a
    long record has tens of thousands of candidates, of which the search reads a few dozen)."""

    def __init__(self, micros: list[int]) -> None:
        self._micros = micros

    def __len__(self) -> int:
        return len(self._micros)

    def __getitem__(self, index: int) -> datetime:  # type: ignore[override]
        return _EPOCH + timedelta(microseconds=self._micros[index])


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LOWEST = (datetime.min.replace(tzinfo=UTC) - _EPOCH) // JUST_AFTER
_HIGHEST = (datetime.max.replace(tzinfo=UTC) - _EPOCH) // JUST_AFTER


def _in_microseconds(times: set[datetime], windows: frozenset[timedelta], birthdays: list[datetime],
                     now: datetime) -> _Instants | None:
    """The candidates (every t + d + JUST_AFTER after now) by integer arithmetic, the same instants
    in the same order as adding datetimes would give. None (use datetimes) unless every instant is
    UTC and no sum leaves the datetime range (where adding datetimes raises)."""
    if now.tzinfo is None or any(t.tzinfo is not UTC for t in times) or not windows:
        return None
    starts = sorted((t - _EPOCH) // JUST_AFTER for t in times)
    shifts = sorted(d // JUST_AFTER + 1 for d in windows)
    if starts and (starts[0] + shifts[0] - 1 < _LOWEST or starts[-1] + shifts[-1] > _HIGHEST):
        return None
    after = (now - _EPOCH) // JUST_AFTER
    found = {(b - _EPOCH) // JUST_AFTER for b in birthdays}
    for shift in shifts:  # t + shift > now for the starts from the first above now - shift on
        found.update(start + shift for start in starts[bisect_right(starts, after - shift):])
    return _Instants(sorted(m for m in found if m > after))


def _windows(pathway: Pathway) -> frozenset[timedelta]:
    """Every duration a window on file may have: the pathway's own, read once per loaded pathway."""
    return pathway.derived("horizon-windows", lambda: frozenset({
        timedelta(0), QUIET_GAP, EQUIVALENT_LOOKBACK, *due_within(pathway.definition),
        *(d for params in pathway.params.values() for d in _durations(params))}))


def _fact_times(facts: PatientFacts) -> Iterator[datetime]:
    yield from (m.time for m in facts.measurements)
    yield from (f.time for f in facts.findings)
    yield from (p.time for p in facts.procedures)
    yield from (t for d in facts.diagnoses for t in (d.onset, d.recorded, d.abated) if t)
    yield from (r.authored for r in facts.requests if r.authored)
    yield from (w.time for w in facts.withdrawn if w.time)


def _durations(value: Any) -> Iterator[timedelta]:
    """Every duration inside a rule's parameters, nested models and collections included."""
    if isinstance(value, timedelta):
        yield value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _durations(getattr(value, name))
    elif isinstance(value, dict):
        for item in value.values():
            yield from _durations(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _durations(item)


def _birthdays(birth: date | None, now: datetime) -> list[datetime]:
    """The next birthday (an age threshold may be crossed then); 29 February falls on 1 March."""
    if birth is None:
        return []
    found = []
    for year in (now.year, now.year + 1):
        try:
            day = birth.replace(year=year)
        except ValueError:
            day = date(year, 3, 1)
        found.append(datetime(day.year, day.month, day.day, tzinfo=UTC) + JUST_AFTER)
    return found


def _rule_signature(result: RuleResult) -> tuple[Any, ...]:
    """What a rule decided, without its reason text (which quotes ages in days)."""
    return (result.outcome, result.urgency, result.actions, result.flags,
            tuple(e.ref for e in result.evidence))


def _signature(evaluation: PathwayEvaluation) -> dict[str, Any]:
    plan = evaluation.plan
    signature: dict[str, Any] = {r.rule_id: _rule_signature(r) for r in evaluation.results}
    requests = tuple((r.key, r.urgency, r.status, tuple(e.ref for e in r.reasons))
                     for r in plan.requests)
    signature["plan"] = (plan.urgency, requests,
                         plan.activities, plan.flags, plan.retained, plan.withdrawn,
                         evaluation.episode.id if evaluation.episode else None)
    for task in plan.tasks:
        signature[f"task:{task.task}"] = (task.key, task.urgency, task.overdue)
    return signature


def _decided_text(evaluation: PathwayEvaluation) -> list[str]:
    """The free text the signature holds (action notes, branches, flags, activities): a day count
    quoted in there is part of the decision. Identifiers (keys, refs) are built from the record."""
    texts = [t for r in evaluation.results for a in r.actions for t in (a.branch, a.note, a.side, a.site) if t]
    texts += [f for r in evaluation.results for f in r.flags]
    texts += [t for a in evaluation.plan.activities for t in (a.activity, a.status, a.status_reason) if t]
    return texts


def _differences(before: dict[str, Any], after: dict[str, Any]) -> tuple[str, ...]:
    return tuple(sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k)))
