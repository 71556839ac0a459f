"""The shape of a pathway file (`pathways/<id>.v<major>.yaml`), validated at start-up.

Codes are written `alias#code` with the aliases declared under `systems:`; a trailing `*`
makes a prefix match (`icd10#C*` = any ICD-10-CM C code).
"""

from __future__ import annotations

import re
from datetime import timedelta
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from service.domain.facts import Coding

_SEMVER = re.compile(r"^\d+\.\d+\.\d+$")
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
Priority = Literal["routine", "urgent", "asap", "stat"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CodeRef(Strict):
    """One code of a concept or output: `code` is `alias#value`."""

    code: str
    display: str | None = None
    side: Literal["left", "right", "bilateral"] | None = None

    @field_validator("code")
    @classmethod
    def _has_alias(cls, value: str) -> str:
        if "#" not in value or value.startswith("#") or value.endswith("#"):
            raise ValueError(f"{value!r} is not of the form alias#code")
        return value


def _code_refs(value: Any) -> Any:
    """Allow a bare string for a code without display or side."""
    if isinstance(value, list):
        return [{"code": v} if isinstance(v, str) else v for v in value]
    return value


class RawScore(Strict):
    """A raw score accepted only when flagged (e.g. ODI 0-50 raw, flagged, x2 = %)."""

    units: list[str]
    flag: str
    factor: float
    range: tuple[float, float]


class MeasureSpec(Strict):
    """Units accepted (UCUM code -> factor to the canonical unit) and the valid range after conversion."""

    units: dict[str, float] = Field(default_factory=dict)
    unitless: bool = False
    range: tuple[float, float]
    integer: bool = False
    raw: RawScore | None = None


class Concept(Strict):
    description: str
    codes: list[CodeRef]
    measure: MeasureSpec | None = None

    _coerce = field_validator("codes", mode="before")(classmethod(lambda cls, v: _code_refs(v)))


class RequestTemplate(Strict):
    """A ServiceRequest the pathway may propose."""

    title: str
    codes: list[CodeRef] = Field(min_length=1)
    category: CodeRef | None = None
    location: CodeRef | None = None
    imaging: bool = False
    activity: str | None = None
    note: str | None = None

    _coerce = field_validator("codes", mode="before")(classmethod(lambda cls, v: _code_refs(v)))


class TaskTemplate(Strict):
    """A Task the pathway may raise. `due`: how long after it is raised the data or action it asks
    for is wanted (else the pathway's `default_task_due`); `asks_for`: the concepts whose new data
    answers it, so that it becomes overdue when its due time passes without them (spec 2a.1)."""

    description: str
    due: timedelta | None = None
    asks_for: list[str] = Field(default_factory=list)


class OverdueEscalation(Strict):
    """What an overdue task of this branch escalates to (2a.1: R4 re-examination -> asap review)."""

    task: str
    urgency: Priority


class ActivityTemplate(Strict):
    description: str
    code: CodeRef | None = None


class Branch(Strict):
    """Outputs a rule emits when its check selects this branch."""

    requests: list[str] = Field(default_factory=list)
    tasks: list[str] = Field(default_factory=list)
    activities: list[str] = Field(default_factory=list)
    status: Literal["draft", "active"] = "draft"
    urgency: Priority | None = None
    task_due: timedelta | None = None
    when_overdue: OverdueEscalation | None = None


class Rule(Strict):
    id: str
    title: str
    check: str
    source: str
    urgency: Priority | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, Branch] = Field(default_factory=dict)


class PathwayDefinition(Strict):
    id: str
    version: str
    status: Literal["draft", "active", "retired"]
    title: str
    url: str
    description: str
    publisher: str = "Carepath"
    systems: dict[str, str]
    presence: dict[Literal["present", "absent"], list[CodeRef]]
    laterality: dict[Literal["left", "right", "bilateral"], list[CodeRef]]
    identifier_system: str = "urn:ietf:rfc:3986"
    requester: str = "Device/carepath"
    careplan_category: list[CodeRef]
    concepts: dict[str, Concept]
    requests: dict[str, RequestTemplate]
    tasks: dict[str, TaskTemplate]
    activities: dict[str, ActivityTemplate]
    rules: list[Rule] = Field(min_length=1)
    default_task_due: timedelta | None = None

    _coerce = field_validator("careplan_category", mode="before")(
        classmethod(lambda cls, v: _code_refs(v)))

    @field_validator("presence", "laterality", mode="before")
    @classmethod
    def _coerce_map(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: _code_refs(v) for k, v in value.items()}
        return value

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError("must be a FHIR id: letters, digits, '-' and '.', at most 64")
        return value

    @field_validator("version")
    @classmethod
    def _semver(cls, value: str) -> str:
        if not _SEMVER.match(value):
            raise ValueError("must be a semantic version MAJOR.MINOR.PATCH")
        return value

    @model_validator(mode="after")
    def _references_resolve(self) -> PathwayDefinition:
        for code in self._all_codes():
            alias = code.code.split("#", 1)[0]
            if alias not in self.systems:
                raise ValueError(f"code {code.code!r} uses undeclared system alias {alias!r}")
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in seen:
                raise ValueError(f"rule id {rule.id!r} is declared twice")
            seen.add(rule.id)
            for name, branch in rule.outputs.items():
                for kind, names, pool in (("request", branch.requests, self.requests),
                                          ("task", branch.tasks, self.tasks),
                                          ("activity", branch.activities, self.activities)):
                    missing = [n for n in names if n not in pool]
                    if missing:
                        raise ValueError(
                            f"rule {rule.id} output {name!r} names unknown {kind} {missing[0]!r}")
                if branch.when_overdue and branch.when_overdue.task not in self.tasks:
                    raise ValueError(f"rule {rule.id} output {name!r} escalates to unknown task "
                                     f"{branch.when_overdue.task!r}")
        for name, task in self.tasks.items():
            unknown = [c for c in task.asks_for if c not in self.concepts]
            if unknown:
                raise ValueError(f"task {name!r} asks for unknown concept {unknown[0]!r}")
        return self

    def _all_codes(self) -> list[CodeRef]:
        codes: list[CodeRef] = [*self.careplan_category]
        for group in (*self.presence.values(), *self.laterality.values()):
            codes.extend(group)
        for concept in self.concepts.values():
            codes.extend(concept.codes)
        for request in self.requests.values():
            codes.extend(request.codes)
            codes.extend(c for c in (request.category, request.location) if c)
        codes.extend(a.code for a in self.activities.values() if a.code)
        return codes

    def coding(self, ref: CodeRef | str) -> Coding:
        """Resolve `alias#code` to a full Coding."""
        code_ref = CodeRef(code=ref) if isinstance(ref, str) else ref
        alias, code = code_ref.code.split("#", 1)
        return Coding(self.systems[alias], code, code_ref.display)

    def request_codes(self, name: str) -> tuple[tuple[str, str], ...]:
        """(system, code) of each code of request template `name`; the first is its target."""
        return self._request_codes[name]

    @cached_property
    def _request_codes(self) -> dict[str, tuple[tuple[str, str], ...]]:
        return {name: tuple(self.coding(c).key() for c in template.codes)
                for name, template in self.requests.items()}

    def rule(self, rule_id: str) -> Rule:
        return self._rules_by_id[rule_id]

    @cached_property
    def _rules_by_id(self) -> dict[str, Rule]:
        return {r.id: r for r in self.rules}

    @property
    def canonical(self) -> str:
        return f"{self.url}|{self.version}"

