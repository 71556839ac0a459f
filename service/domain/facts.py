"""Clinical facts: version-agnostic statements normalised from FHIR at the edge (rule R0).

Each fact keeps `ref` ("Observation/abc") so that every decision can cite its evidence.
Times are timezone-aware UTC clinical times, never record-keeping times.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any, TypeVar


@dataclass(frozen=True, slots=True)
class Coding:
    system: str
    code: str
    display: str | None = None

    def key(self) -> tuple[str, str]:
        return (self.system, self.code)


class Side(StrEnum):
    LEFT = "left"
    RIGHT = "right"
    BILATERAL = "bilateral"
    UNSPECIFIED = "unspecified"


# Observation statuses that count as evidence for every rule.
SETTLED_STATUSES = frozenset({"final", "amended", "corrected"})
# Extra statuses that count only when the finding is positive for a red flag (safety first).
PROVISIONAL_STATUSES = frozenset({"preliminary", "unknown"})


@dataclass(frozen=True, slots=True)
class Measurement:
    """A numeric observation: pain NRS, ODI %, MRC grade, PVR mL, reflex grade, temperature."""

    ref: str
    concept: str
    value: float
    time: datetime
    status: str
    side: Side = Side.UNSPECIFIED
    site: str | None = None

    @property
    def settled(self) -> bool:
        return self.status in SETTLED_STATUSES


@dataclass(frozen=True, slots=True)
class Finding:
    """A presence/absence finding (saddle sensation, bladder, bowel...), or a recorded risk factor."""

    ref: str
    concept: str
    present: bool
    time: datetime
    status: str
    side: Side = Side.UNSPECIFIED

    @property
    def settled(self) -> bool:
        return self.status in SETTLED_STATUSES


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """A Condition. `concepts` are the pathway concepts its code belongs to."""

    ref: str
    concepts: frozenset[str]
    coding: Coding
    onset: datetime | None
    recorded: datetime | None
    abated: datetime | None
    clinical_status: str | None
    verification_status: str | None
    side: Side = Side.UNSPECIFIED
    site: str | None = None

    @property
    def time(self) -> datetime | None:
        return self.onset or self.recorded

    @property
    def refuted(self) -> bool:
        return self.verification_status in {"refuted", "entered-in-error"}

    @property
    def active(self) -> bool:
        """Counts as current evidence: active/recurrence/relapse (or unstated) and not refuted."""
        if self.refuted or self.abated is not None:
            return False
        return self.clinical_status in {None, "active", "recurrence", "relapse"}

    @property
    def suspected(self) -> bool:
        return self.verification_status in {"unconfirmed", "provisional", "differential"}


@dataclass(frozen=True, slots=True)
class ProcedureDone:
    """A Procedure or imaging study that happened (ESI, surgery, physiotherapy, MRI)."""

    ref: str
    concept: str
    coding: Coding
    time: datetime
    status: str
    side: Side = Side.UNSPECIFIED
    site: str | None = None


@dataclass(frozen=True, slots=True)
class MedicationUse:
    """A MedicationRequest or MedicationStatement that counts (status active or completed)."""

    ref: str
    concept: str
    coding: Coding
    time: datetime
    status: str


@dataclass(frozen=True, slots=True)
class RequestOnFile:
    """A ServiceRequest already on file: the EHR's own, or one this pathway proposed earlier.

    `key` is set only for our own proposals: the deterministic identifier value.
    """

    ref: str
    concepts: frozenset[str]
    coding: Coding
    status: str
    authored: datetime | None
    priority: str | None = None
    key: str | None = None
    rule: str | None = None


@dataclass(frozen=True, slots=True)
class Withdrawn:
    """A resource now marked entered-in-error; kept so decisions it once supported can be reviewed."""

    ref: str
    concept: str | None
    time: datetime | None


@dataclass(frozen=True, slots=True)
class PatientFacts:
    """Everything usable on file for one patient. Immutable: the per-concept series the rules ask
    for are sorted once, on first use, and shared (as tuples) by every later question."""

    patient_id: str
    birth_date: date | None = None
    measurements: tuple[Measurement, ...] = ()
    findings: tuple[Finding, ...] = ()
    diagnoses: tuple[Diagnosis, ...] = ()
    procedures: tuple[ProcedureDone, ...] = ()
    requests: tuple[RequestOnFile, ...] = ()
    withdrawn: tuple[Withdrawn, ...] = ()
    problems: tuple[str, ...] = field(default=())
    medications: tuple[MedicationUse, ...] = ()
    _derived: dict[Hashable, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def derived(self, key: Hashable, build: Callable[[], T]) -> T:
        """`build()`, computed once for these facts: a value that depends on the facts alone."""
        value = self._derived.get(key, _UNSET)
        if value is _UNSET:
            value = self._derived[key] = build()
        return value  # type: ignore[no-any-return]

    def measured(self, concept: str, *, settled_only: bool = True) -> tuple[Measurement, ...]:
        """Measurements of one concept in clinical-time order."""
        key = "measured" if settled_only else "measured-any"
        by_concept = self.derived(key, lambda: _series(
            (m for m in self.measurements if m.settled or not settled_only), lambda m: m.concept))
        return by_concept.get(concept, ())

    def measured_prefix(self, prefix: str) -> list[Measurement]:
        found = [m for m in self.measurements if m.concept.startswith(prefix) and m.settled]
        return sorted(found, key=_in_time)

    def found(self, concept: str) -> tuple[Finding, ...]:
        return self.derived("found", lambda: _series(self.findings, lambda f: f.concept)).get(concept, ())

    def diagnosed(self, concept: str) -> tuple[Diagnosis, ...]:
        return self.derived("diagnosed", self._diagnoses_by_concept).get(concept, ())

    def medicated(self, concept: str) -> tuple[MedicationUse, ...]:
        return self.derived("medicated", lambda: _series(self.medications, lambda m: m.concept)).get(concept, ())

    def done(self, concept: str) -> tuple[ProcedureDone, ...]:
        return self.derived("done", lambda: _series(self.procedures, lambda p: p.concept)).get(concept, ())

    def _diagnoses_by_concept(self) -> dict[str, tuple[Diagnosis, ...]]:
        grouped: dict[str, list[Diagnosis]] = {}
        for diagnosis in self.diagnoses:
            for concept in diagnosis.concepts:
                grouped.setdefault(concept, []).append(diagnosis)
        return {concept: tuple(found) for concept, found in grouped.items()}


T = TypeVar("T")
_UNSET: Any = object()
_Dated = TypeVar("_Dated", Measurement, Finding, ProcedureDone, MedicationUse)


def _in_time(fact: Measurement | Finding | ProcedureDone | MedicationUse) -> tuple[datetime, str]:
    return (fact.time, fact.ref)


def _series(facts: Iterable[_Dated], concept: Callable[[_Dated], str]) -> dict[str, tuple[_Dated, ...]]:
    """Facts grouped by concept, each group in clinical-time order (ties by ref)."""
    grouped: dict[str, list[_Dated]] = {}
    for fact in facts:
        grouped.setdefault(concept(fact), []).append(fact)
    return {name: tuple(sorted(found, key=_in_time)) for name, found in grouped.items()}
