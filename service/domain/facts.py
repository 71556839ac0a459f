"""Clinical facts: version-agnostic statements normalised from FHIR at the edge (rule R0).

Each fact keeps `ref` ("Observation/abc") so that every decision can cite its evidence.
Times are timezone-aware UTC clinical times, never record-keeping times.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum


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

    def measured(self, concept: str, *, settled_only: bool = True) -> list[Measurement]:
        """Measurements of one concept in clinical-time order."""
        found = [
            m for m in self.measurements
            if m.concept == concept and (m.settled or not settled_only)
        ]
        return sorted(found, key=lambda m: (m.time, m.ref))

    def measured_prefix(self, prefix: str) -> list[Measurement]:
        found = [m for m in self.measurements if m.concept.startswith(prefix) and m.settled]
        return sorted(found, key=lambda m: (m.time, m.ref))

    def found(self, concept: str) -> list[Finding]:
        return sorted((f for f in self.findings if f.concept == concept), key=lambda f: (f.time, f.ref))

    def diagnosed(self, concept: str) -> list[Diagnosis]:
        return [d for d in self.diagnoses if concept in d.concepts]

    def medicated(self, concept: str) -> list[MedicationUse]:
        return sorted((m for m in self.medications if m.concept == concept),
                      key=lambda m: (m.time, m.ref))

    def done(self, concept: str) -> list[ProcedureDone]:
        return sorted((p for p in self.procedures if p.concept == concept), key=lambda p: (p.time, p.ref))
