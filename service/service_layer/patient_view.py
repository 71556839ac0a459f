"""What the clinician's page shows about one patient, as plain data: who the patient is, the
pathway's current proposals and open Tasks, one series per measure the pathway uses (taken from
the pathway definition, so a site's local code added to a concept appears), and each decision with
its evidence in words. Rendering (SVG geometry, HTML) is the entrypoint's business."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from service.adapters.store import Store
from service.domain.facts import Measurement, Side
from service.fhir.models import INPUT_TYPES
from service.fhir.normalize import OWN_KEY_PREFIX, to_facts
from service.fhir.time import parse_datetime
from service.rules.registry import Pathway

_OPEN_REQUEST = {"draft", "active", "on-hold"}
_OPEN_TASK = {"draft", "requested", "received", "accepted", "ready", "in-progress", "on-hold"}
_ITEM_KEY = re.compile(r"\((?:[a-z]-)([a-z][a-z-]*)\)")
_PRIORITY_ORDER = {"stat": 0, "asap": 1, "urgent": 2, "routine": 3}
SIDE_LABEL = {Side.LEFT: "Left", Side.RIGHT: "Right", Side.BILATERAL: "Both sides",
              Side.UNSPECIFIED: "Side not stated"}


@dataclass(frozen=True)
class Header:
    patient_id: str
    name: str | None
    gender: str | None
    birth_date: date | None
    age: int | None


@dataclass(frozen=True)
class Proposal:
    title: str
    priority: str
    status: str
    reason: str
    authored: datetime | None


@dataclass(frozen=True)
class OpenTask:
    description: str
    status: str
    priority: str
    due: datetime | None
    overdue: bool
    raised_by: str


@dataclass(frozen=True)
class Point:
    time: datetime
    value: float
    ref: str


@dataclass(frozen=True)
class Line:
    side: Side
    label: str
    points: tuple[Point, ...]


@dataclass(frozen=True)
class Measure:
    """One chart: a measure concept the pathway uses, its valid range, one line per side."""

    concept: str
    title: str
    low: float
    high: float
    integer: bool
    lines: tuple[Line, ...]


@dataclass(frozen=True)
class Evidence:
    ref: str
    text: str
    time: datetime | None


@dataclass(frozen=True)
class Decision:
    rule: str
    title: str
    source: str
    time: datetime
    priority: str | None
    reason: str
    evidence: tuple[Evidence, ...]


@dataclass(frozen=True)
class PatientView:
    header: Header
    pathway: str
    now: datetime
    proposals: tuple[Proposal, ...]
    tasks: tuple[OpenTask, ...]
    measures: tuple[Measure, ...]
    not_recorded: tuple[str, ...]
    decisions: tuple[Decision, ...]


async def load(engine: AsyncEngine, pathway: Pathway, patient_id: str, now: datetime
               ) -> PatientView | None:
    """The patient's view, or None when nothing is on file for them."""
    async with engine.connect() as conn:
        store = Store(conn)
        inputs = await store.for_patient(patient_id, INPUT_TYPES)
        outputs = await store.for_patient(patient_id, ("ServiceRequest", "Task"))
        evaluations = await store.evaluations_of(patient_id)
    if not inputs:
        return None
    return build(pathway, patient_id, inputs, outputs, evaluations, now)


def build(pathway: Pathway, patient_id: str, inputs: list[dict[str, Any]],
          outputs: list[dict[str, Any]], evaluations: list[dict[str, Any]], now: datetime
          ) -> PatientView:
    facts = to_facts(patient_id, inputs, pathway.concepts)
    by_ref = {m.ref: m for m in facts.measurements}
    named = {f"{r.get('resourceType')}/{r.get('id')}": _coded_name(r) for r in inputs}
    decisions = _decisions(pathway, evaluations, by_ref, named)
    measures = _measures(pathway, facts.measurements, decisions)
    definition = pathway.definition
    charted = {m.concept for m in measures}
    return PatientView(
        header=_header(patient_id, inputs, now),
        pathway=f"{definition.title} {definition.version}",
        now=now,
        proposals=_proposals(outputs),
        tasks=_tasks(outputs, now),
        measures=measures,
        not_recorded=tuple(definition.concepts[c].description for c in pathway.concepts_used
                           if definition.concepts[c].measure and c not in charted),
        decisions=decisions,
    )


def measure_label(pathway: Pathway, m: Measurement) -> str:
    """'MRC grade, L5 great-toe extension, left: 3' rather than 'mrc.L5-EHL left: 3.0'."""
    concept = pathway.definition.concepts.get(m.concept)
    title = concept.description if concept else m.concept
    side = f", {SIDE_LABEL[m.side].lower()}" if m.side is not Side.UNSPECIFIED else ""
    return f"{title}{side}: {m.value:g}"


def _header(patient_id: str, inputs: list[dict[str, Any]], now: datetime) -> Header:
    patient = next((r for r in inputs if r.get("resourceType") == "Patient"), {})
    name = None
    for entry in patient.get("name") or []:
        parts = [*entry.get("given", []), entry.get("family", "")]
        name = entry.get("text") or " ".join(parts).strip()
        if name:
            break
    born = parse_datetime(patient.get("birthDate"))
    age = None
    if born:
        age = now.year - born.year - ((now.month, now.day) < (born.month, born.day))
    return Header(patient_id, name or None, patient.get("gender"),
                  born.date() if born else None, age)


def _text(resource: dict[str, Any], field: str) -> str:
    concept = resource.get(field) or {}
    return concept.get("text") or next(
        (c.get("display") for c in concept.get("coding", []) if c.get("display")), "")


def _proposals(outputs: list[dict[str, Any]]) -> tuple[Proposal, ...]:
    found = [
        Proposal(
            title=_text(r, "code") or "Service request",
            priority=r.get("priority", "routine"),
            status=r.get("status", "unknown"),
            reason=readable("; ".join(n.get("text", "") for n in r.get("note", [])
                                      if n.get("text"))),
            authored=parse_datetime(r.get("authoredOn")))
        for r in outputs
        if r.get("resourceType") == "ServiceRequest" and r.get("status") in _OPEN_REQUEST
        and _proposed_by_pathway(r)]
    return tuple(sorted(found, key=lambda p: (_PRIORITY_ORDER.get(p.priority, 9), p.title)))


def _proposed_by_pathway(resource: dict[str, Any]) -> bool:
    """Ours (the deterministic urn:lrp: identifier), not the EHR's own orders."""
    return any(str(i.get("value", "")).startswith(OWN_KEY_PREFIX)
               for i in resource.get("identifier", []))


def _tasks(outputs: list[dict[str, Any]], now: datetime) -> tuple[OpenTask, ...]:
    found = []
    for r in outputs:
        if r.get("resourceType") != "Task" or r.get("status") not in _OPEN_TASK \
                or not _proposed_by_pathway(r):
            continue
        due = parse_datetime(((r.get("restriction") or {}).get("period") or {}).get("end"))
        notes = [n.get("text", "") for n in r.get("note", [])]
        found.append(OpenTask(
            description=r.get("description") or _text(r, "code") or "Task",
            status=r.get("status", "requested"), priority=r.get("priority", "routine"),
            due=due, overdue=bool(due and due < now),
            raised_by=next((n.removeprefix("Raised by ") for n in notes
                            if n.startswith("Raised by")), "")))
    return tuple(sorted(found, key=lambda t: (not t.overdue, _PRIORITY_ORDER.get(t.priority, 9),
                                              t.description)))


def _coded_name(resource: dict[str, Any]) -> str | None:
    """'Retention of urine, unspecified (R33.9)': the record's own words for what it codes."""
    code = resource.get("code") or {}
    first = next(iter(code.get("coding") or []), {})
    words = code.get("text") or first.get("display")
    if not words:
        return None
    code_value = first.get("code")
    return f"{words} ({code_value})" if code_value and code_value not in words else words


def readable(reason: str) -> str:
    """A rule's reason without the pathway's item keys: '(a-bladder)' reads '(bladder)'."""
    return _ITEM_KEY.sub(lambda m: f"({m.group(1).replace('-', ' ')})", reason)


def _decisions(pathway: Pathway, evaluations: list[dict[str, Any]],
               by_ref: dict[str, Measurement], named: dict[str, str | None]
               ) -> tuple[Decision, ...]:
    """Each rule that was met, once per distinct evidence, placed at its latest evidence time."""
    seen: set[tuple[str, tuple[str, ...]]] = set()
    out = []
    rules = {r.id: r for r in pathway.definition.rules}
    for record in evaluations:
        for result in record["summary"].get("results", []):
            if result.get("outcome") != "met":
                continue
            refs = tuple(sorted(str(ev.get("ref")) for ev in result.get("evidence", [])))
            key = (result["rule"], refs)
            if key in seen:
                continue
            seen.add(key)
            evidence = tuple(_evidence(pathway, ev, by_ref, named)
                             for ev in result.get("evidence", []))
            times = [e.time for e in evidence if e.time]
            ran = record["evaluated_at"]
            when = max(times) if times else parse_datetime(str(ran).replace(" ", "T"))
            rule = rules.get(result["rule"])
            out.append(Decision(
                rule=result["rule"], title=rule.title if rule else result["rule"],
                source=rule.source if rule else "", time=when or record["evaluated_at"],
                priority=result.get("priority"), reason=readable(result.get("reason", "")),
                evidence=evidence))
    return tuple(sorted(out, key=lambda d: (d.time, d.rule)))


def _evidence(pathway: Pathway, ev: dict[str, Any], by_ref: dict[str, Measurement],
              named: dict[str, str | None]) -> Evidence:
    ref = str(ev.get("ref"))
    time = parse_datetime(ev.get("time"))
    measured = by_ref.get(ref)
    if measured is not None:
        return Evidence(ref, measure_label(pathway, measured), time or measured.time)
    what = str(ev.get("what") or ref)
    concept = pathway.definition.concepts.get(what.split(" ")[0])
    if named.get(ref):
        what = str(named[ref])
    elif concept is not None:
        what = concept.description + what[len(what.split(" ")[0]):]
    value = ev.get("value")
    return Evidence(ref, what + (f": {value}" if value not in (None, "") else ""), time)


def _measures(pathway: Pathway, measurements: tuple[Measurement, ...],
              decisions: tuple[Decision, ...]) -> tuple[Measure, ...]:
    """One chart per measure the rules use and that has data; the ones cited by a decision first."""
    definition = pathway.definition
    cited = {m.concept for d in decisions for e in d.evidence
             for m in measurements if m.ref == e.ref}
    charts = []
    for concept in pathway.concepts_used:
        spec = definition.concepts[concept].measure
        mine = [m for m in measurements if m.concept == concept and m.settled]
        if spec is None or not mine:
            continue
        lines = []
        for side in (Side.LEFT, Side.RIGHT, Side.BILATERAL, Side.UNSPECIFIED):
            points = sorted((Point(m.time, m.value, m.ref) for m in mine if m.side is side),
                            key=lambda p: (p.time, p.ref))
            if points:
                label = "" if side is Side.UNSPECIFIED else SIDE_LABEL[side]
                lines.append(Line(side, label, tuple(points)))
        charts.append(Measure(concept, definition.concepts[concept].description, spec.range[0],
                              spec.range[1], spec.integer, tuple(lines)))
    return tuple(sorted(charts, key=lambda c: c.concept not in cited))
