"""What an evaluation decides: tri-state rule results with evidence, and the resulting plan.

The evaluator produces these; other code persists them, writes them back and notifies.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import IntEnum, StrEnum


class Outcome(StrEnum):
    MET = "met"
    NOT_MET = "not-met"
    INDETERMINATE = "indeterminate"


class Urgency(IntEnum):
    """Pathway urgency, ordered; `.priority` is the FHIR request-priority code (spec §3)."""

    ROUTINE = 1
    URGENT = 2
    VERY_URGENT = 3
    EMERGENCY = 4

    @property
    def priority(self) -> str:
        return {1: "routine", 2: "urgent", 3: "asap", 4: "stat"}[int(self)]

    @classmethod
    def from_priority(cls, priority: str) -> Urgency:
        return {"routine": cls.ROUTINE, "urgent": cls.URGENT, "asap": cls.VERY_URGENT,
                "stat": cls.EMERGENCY}[priority]


@dataclass(frozen=True, slots=True)
class Evidence:
    """One resource that a decision rests on, with the value that mattered.

    `supporting` marks context rather than the reason itself: a request cites it in
    `supportingInfo`, not `reasonReference` (spec 2a.9).
    """

    ref: str
    what: str
    value: str | float | bool | None = None
    time: datetime | None = None
    supporting: bool = False

    def as_supporting(self) -> Evidence:
        return replace(self, supporting=True)


@dataclass(frozen=True, slots=True)
class Action:
    """A branch of a rule's declared outputs that the rule selected (`outputs.<branch>` in the pathway)."""

    branch: str
    urgency: Urgency | None = None
    note: str | None = None
    side: str | None = None
    site: str | None = None


@dataclass(frozen=True, slots=True)
class RuleResult:
    rule_id: str
    outcome: Outcome
    reason: str
    urgency: Urgency | None = None
    evidence: tuple[Evidence, ...] = ()
    actions: tuple[Action, ...] = ()
    flags: tuple[str, ...] = ()

    @property
    def met(self) -> bool:
        return self.outcome is Outcome.MET


@dataclass(frozen=True, slots=True)
class ProposedRequest:
    """A ServiceRequest the pathway proposes; `key` is its deterministic identifier."""

    key: str
    output: str
    rule_id: str
    urgency: Urgency
    status: str
    reasons: tuple[Evidence, ...]
    note: str | None = None
    side: str | None = None
    site: str | None = None


@dataclass(frozen=True, slots=True)
class ProposedTask:
    """A Task the pathway asks for. `authored` is when it was first raised (kept across
    re-evaluations), `due` when the data or action it asks for is wanted by; `overdue` once that
    passed without it (spec 2a.1)."""

    key: str
    task: str
    rule_id: str
    description: str
    reasons: tuple[Evidence, ...] = ()
    urgency: Urgency = Urgency.ROUTINE
    authored: datetime | None = None
    due: datetime | None = None
    overdue: bool = False

    def timed(self, authored: datetime | None, due: datetime | None, overdue: bool) -> ProposedTask:
        """This task with its timing set (`dataclasses.replace` costs ~10x more; every field is here)."""
        return ProposedTask(self.key, self.task, self.rule_id, self.description, self.reasons, self.urgency,
                            authored, due, overdue)


@dataclass(frozen=True, slots=True)
class Activity:
    """A CarePlan activity that is not a request: advice, safety-netting, a stopped treatment."""

    activity: str
    rule_id: str
    status: str = "not-started"
    status_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """The decision: what to propose now. `retained` are earlier proposals kept unchanged although
    no rule proposes them any more; `withdrawn` are earlier routine drafts to revoke."""

    urgency: Urgency | None
    requests: tuple[ProposedRequest, ...] = ()
    tasks: tuple[ProposedTask, ...] = ()
    activities: tuple[Activity, ...] = ()
    notes: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    retained: tuple[str, ...] = ()
    withdrawn: tuple[str, ...] = ()

    def with_tasks(self, tasks: tuple[ProposedTask, ...], notes: tuple[str, ...]) -> Plan:
        """This plan with its tasks timed and notes added (cheaper than `dataclasses.replace`)."""
        return Plan(self.urgency, self.requests, tasks, self.activities, notes, self.flags, self.retained,
                    self.withdrawn)


@dataclass(frozen=True, slots=True)
class Episode:
    """The current radicular episode (R0): anchored on the earliest active radicular diagnosis."""

    id: str
    onset: datetime
    anchor_ref: str | None
    side: str | None = None
    diagnoses: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PathwayEvaluation:
    pathway_id: str
    pathway_version: str
    patient_id: str
    evaluated_at: datetime
    episode: Episode | None
    results: tuple[RuleResult, ...]
    plan: Plan
    problems: tuple[str, ...] = field(default=())

    def with_plan(self, plan: Plan) -> PathwayEvaluation:
        """This evaluation with another plan (cheaper than `dataclasses.replace`)."""
        return PathwayEvaluation(self.pathway_id, self.pathway_version, self.patient_id, self.evaluated_at,
                                 self.episode, self.results, plan, self.problems)

    def result(self, rule_id: str) -> RuleResult | None:
        return next((r for r in self.results if r.rule_id == rule_id), None)
