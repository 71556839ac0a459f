"""R0: find the current radicular episode and its onset.

Spec §2: anchor on the earliest active VS-RADIC diagnosis; onset = onsetDateTime -> onsetPeriod.start
-> recordedDate -> first positive pain observation. A diagnosis after the previous one abated or
resolved, or one recorded as recurrence/relapse, starts a new clock (ESI count and surgery history
stay with the patient). PD: the clock also resets after >= 90 days with no positive pain observation.
Co-coded diagnoses (ICD-10 Excludes1 traps such as M54.41 with M51.16) are one episode.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from service.domain.evaluation import Episode
from service.domain.facts import Diagnosis, PatientFacts, Side

ANCHOR = "radicular_dx"
PAIN = "pain_nrs"
QUIET_GAP = timedelta(days=90)
_UNDATED = datetime.max.replace(tzinfo=UTC)


def current_episode(facts: PatientFacts) -> Episode | None:
    """The open episode, or None when no active radicular diagnosis is on file (it depends on the
    facts alone, so it is worked out once per facts)."""
    return facts.derived("current_episode", lambda: _current_episode(facts))


def _current_episode(facts: PatientFacts) -> Episode | None:
    anchors = [d for d in facts.diagnosed(ANCHOR) if not d.refuted]
    candidates = [d for d in anchors if d.active]
    if not candidates:
        return None
    restarts = [d for d in candidates if d.clinical_status in {"recurrence", "relapse"}]
    if restarts:
        latest = max(_when(d) for d in restarts)
        candidates = [d for d in candidates if _when(d) >= latest]
    closed_at = max((d.abated for d in anchors if d.abated), default=None)
    if closed_at is not None:
        candidates = [d for d in candidates if _when(d) >= closed_at] or candidates
    anchor = min(candidates, key=lambda d: (_when(d), d.ref))
    onset = anchor.time or _first_positive_pain(facts)
    if onset is None:
        return None
    return Episode(
        id=anchor.ref.split("/", 1)[1],
        onset=_after_quiet_gaps(facts, onset),
        anchor_ref=anchor.ref,
        side=_side(candidates),
        diagnoses=tuple(sorted(d.ref for d in candidates)),
    )


def _when(diagnosis: Diagnosis) -> datetime:
    return diagnosis.time or _UNDATED


def _first_positive_pain(facts: PatientFacts) -> datetime | None:
    return next((m.time for m in facts.measured(PAIN) if m.value > 0), None)


def _after_quiet_gaps(facts: PatientFacts, onset: datetime) -> datetime:
    """Move the onset past any gap of >= 90 days between positive pain observations."""
    positive = [m.time for m in facts.measured(PAIN) if m.value > 0 and m.time >= onset]
    for earlier, later in zip(positive, positive[1:], strict=False):
        if later - earlier >= QUIET_GAP:
            onset = later
    return onset


def _side(diagnoses: list[Diagnosis]) -> str | None:
    sides = {d.side for d in diagnoses if d.side is not Side.UNSPECIFIED}
    if Side.BILATERAL in sides or {Side.LEFT, Side.RIGHT} <= sides:
        return Side.BILATERAL.value
    return next(iter(sides)).value if sides else None
