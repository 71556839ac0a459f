"""The vocabulary of checks: name -> (params model, pure function). Pathway files pick from it.

Check parameters that name a concept or an earlier rule are typed `ConceptName` / `RuleRef`, so the
loader can verify every reference at start-up instead of failing at evaluation time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Annotated, Any, Generic, NamedTuple, TypeVar, get_args, get_origin

from pydantic import BaseModel, ConfigDict

from service.domain.evaluation import Episode, RuleResult
from service.domain.facts import PatientFacts
from service.rules.concepts import ConceptIndex
from service.rules.definition import PathwayDefinition, Rule


class _Ref:
    def __init__(self, kind: str) -> None:
        self.kind = kind


ConceptName = Annotated[str, _Ref("concept")]
RuleRef = Annotated[str, _Ref("rule")]


class CheckParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


P = TypeVar("P", bound=CheckParams)
T = TypeVar("T")


def found_in_facts(facts: PatientFacts, params: CheckParams, name: str, build: Callable[[], T]) -> T:
    """`build()` once per facts and check parameters: for what a check finds in the facts alone,
    before comparing anything with now (the horizon evaluates the same facts at many instants)."""
    held, value = facts.derived((name, id(params)), lambda: (params, build()))
    # the cache holds `params`, so its id cannot be reused while these facts live
    return value if held is params else build()  # type: ignore[no-any-return]


class CheckContext(NamedTuple):
    """Everything a check may look at. Checks read; they never act. (A named tuple: one is built
    per rule per evaluation, and the horizon evaluates many times.)"""

    rule: Rule
    facts: PatientFacts
    episode: Episode | None
    now: datetime
    earlier: dict[str, RuleResult]
    definition: PathwayDefinition


@dataclass(frozen=True)
class Check(Generic[P]):
    name: str
    params: type[P]
    run: Callable[[CheckContext, P], RuleResult]
    branches: frozenset[str]

    def validate(self, definition: PathwayDefinition, rule: Rule, params: P) -> list[str]:
        """Cross-checks that need the whole file: concepts, earlier rules and branches exist."""
        problems = []
        undeclared = set(rule.outputs) - self.branches
        if undeclared:
            problems.append(f"outputs {sorted(undeclared)} are not branches of check "
                            f"{self.name!r} (it selects {sorted(self.branches)})")
        earlier = [r.id for r in definition.rules[:definition.rules.index(rule)]]
        for kind, name, value in _references(params):
            if kind == "concept" and value not in definition.concepts:
                problems.append(f"params.{name} names unknown concept {value!r}")
            if kind == "rule" and value not in earlier:
                problems.append(f"params.{name} names {value!r}, which is not a rule listed above")
        return problems


def _references(model: BaseModel) -> Iterator[tuple[str, str, str]]:
    """(kind, field, value) for every ConceptName/RuleRef inside a params model, nested included."""
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            yield from _references(value)
            continue
        kind = _ref_kind(info.annotation, info.metadata)
        if kind:
            yield from ((kind, name, v) for v in _strings(value))


def _ref_kind(annotation: Any, metadata: list[Any]) -> str | None:
    for meta in metadata:
        if isinstance(meta, _Ref):
            return meta.kind
    if get_origin(annotation) is Annotated:
        return _ref_kind(None, list(get_args(annotation)[1:]))
    for arg in get_args(annotation):
        kind = _ref_kind(arg, [])
        if kind:
            return kind
    return None


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    return [s for v in value for s in _strings(v)]


CHECKS: dict[str, Check[Any]] = {}


def check(name: str, params: type[P], branches: Iterable[str]
          ) -> Callable[[Callable[[CheckContext, P], RuleResult]], Callable[[CheckContext, P], RuleResult]]:
    """Register a check function under the name pathway files use."""

    def register(fn: Callable[[CheckContext, P], RuleResult]) -> Callable[[CheckContext, P], RuleResult]:
        if name in CHECKS:
            raise RuntimeError(f"check {name!r} registered twice")
        CHECKS[name] = Check(name, params, fn, frozenset(branches))
        return fn

    return register


@dataclass(frozen=True)
class Pathway:
    """A loaded pathway: the validated definition plus each rule's validated parameters."""

    definition: PathwayDefinition
    params: dict[str, CheckParams] = field(default_factory=dict)

    def derived(self, key: str, build: Callable[[], T]) -> T:
        """`build()`, computed once for this loaded pathway (it never changes once loaded)."""
        cache: dict[str, Any] = self.__dict__.setdefault("_derived", {})
        if key not in cache:
            cache[key] = build()
        return cache[key]  # type: ignore[no-any-return]

    @cached_property
    def concepts(self) -> ConceptIndex:
        return ConceptIndex(self.definition)

    @cached_property
    def concepts_used(self) -> tuple[str, ...]:
        """The concepts the rules' parameters name, in rule (precedence) order, each once: what
        the pathway actually looks at, including a site's local codes added to those concepts."""
        used: dict[str, None] = {}
        for rule in self.definition.rules:
            params = self.params.get(rule.id)
            if params is not None:
                used.update((value, None) for kind, _, value in _references(params)
                            if kind == "concept")
        return tuple(used)
