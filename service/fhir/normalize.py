"""Normalise validated FHIR R4 JSON into clinical facts (spec §2, rule R0).

Two uses share one code path:
- `value_issues(resource)`: at ingest. Units, ranges, decimals and unflagged raw scores the pathway
  cannot use are reported as located *warnings* (2a.12): the resource is valid R4, so it is stored,
  and the value is left out of the rules (never coerced).
- `to_facts(patient, resources)`: at evaluation. Anything unusable is left out and named in
  `PatientFacts.problems`; excluded statuses are dropped; entered-in-error becomes `Withdrawn`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from service.domain.facts import (
    Coding,
    Diagnosis,
    Finding,
    Measurement,
    MedicationUse,
    PatientFacts,
    ProcedureDone,
    RequestOnFile,
    Side,
    Withdrawn,
)
from service.fhir.models import Issue
from service.fhir.time import parse_date, parse_datetime
from service.rules.concepts import ConceptIndex
from service.rules.definition import MeasureSpec

OWN_KEY_PREFIX = "urn:lrp:"
_EXCLUDED_OBSERVATION = {"registered", "cancelled"}
_EXCLUDED_PROCEDURE = {"not-done", "preparation"}
_REPORT_DONE = {"final", "amended", "corrected", "appended"}
_STUDY_DONE = {"available"}
# Spec §2 status filters: conservative-care medication counts when active or completed.
_MEDICATION_COUNTS = {"active", "completed"}
_SUBJECT_REQUIRED = {"Observation", "Condition", "Procedure", "DiagnosticReport", "ServiceRequest",
                     "ImagingStudy", "MedicationRequest", "MedicationStatement"}
# Required bindings that the R4B models do not enforce (they type these as plain `code`).
_REQUIRED_CODES: dict[str, dict[str, frozenset[str]]] = {
    "Observation": {"status": frozenset({"registered", "preliminary", "final", "amended", "corrected",
                                         "cancelled", "entered-in-error", "unknown"})},
    "Procedure": {"status": frozenset({"preparation", "in-progress", "not-done", "on-hold", "stopped",
                                       "completed", "entered-in-error", "unknown"})},
    "DiagnosticReport": {"status": frozenset({"registered", "partial", "preliminary", "final", "amended",
                                              "corrected", "appended", "cancelled", "entered-in-error",
                                              "unknown"})},
    "ServiceRequest": {"status": frozenset({"draft", "active", "on-hold", "revoked", "completed",
                                            "entered-in-error", "unknown"}),
                       "intent": frozenset({"proposal", "plan", "directive", "order", "original-order",
                                            "reflex-order", "filler-order", "instance-order", "option"})},
    "ImagingStudy": {"status": frozenset({"registered", "available", "cancelled",
                                          "entered-in-error", "unknown"})},
    "MedicationRequest": {"status": frozenset({"active", "on-hold", "cancelled", "completed",
                                               "entered-in-error", "stopped", "draft", "unknown"})},
    "MedicationStatement": {"status": frozenset({"active", "completed", "entered-in-error",
                                                 "intended", "stopped", "on-hold", "unknown",
                                                 "not-taken"})},
}
_GRADE = re.compile(r"^\s*([0-5])\s*[+-]?\s*$")


def codings(concept: Any) -> list[Coding]:
    if not isinstance(concept, dict):
        return []
    return [Coding(c["system"], c["code"], c.get("display")) for c in concept.get("coding", [])
            if isinstance(c, dict) and c.get("system") and c.get("code")]


def subject_id(resource: dict[str, Any]) -> str | None:
    """The patient id a resource is about (Patient itself, or subject/patient reference)."""
    if resource.get("resourceType") == "Patient":
        return resource.get("id")
    for field in ("subject", "patient"):
        ref = resource.get(field)
        if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
            reference = ref["reference"]
            if reference.startswith("Patient/"):
                return reference.split("/", 2)[1]
            if reference.startswith(("http://", "https://")) and "/Patient/" in reference:
                return reference.split("/Patient/", 1)[1].split("/", 1)[0] or None
    return None


def clinical_time(resource: dict[str, Any]) -> datetime | None:
    """effectiveDateTime -> effectivePeriod.end (else start) -> issued; never meta.lastUpdated."""
    moment = parse_datetime(resource.get("effectiveDateTime"))  # the usual case, first
    if moment:
        return moment
    period = resource.get("effectivePeriod") or {}
    for value in (resource.get("effectiveInstant"), period.get("end"), period.get("start"),
                  resource.get("issued")):
        moment = parse_datetime(value)
        if moment:
            return moment
    return None


def _ref(resource: dict[str, Any]) -> str:
    return f"{resource['resourceType']}/{resource.get('id', '?')}"


def _side(resource: dict[str, Any], index: ConceptIndex, fallback: Side = Side.UNSPECIFIED) -> Side:
    site = resource.get("bodySite")
    sites = site if isinstance(site, list) else [site] if site else []
    found = index.side_of([c for s in sites for c in codings(s)])
    return found if found is not Side.UNSPECIFIED else fallback


def _site_text(resource: dict[str, Any]) -> str | None:
    site = resource.get("bodySite")
    sites = site if isinstance(site, list) else [site] if site else []
    texts = [s.get("text") for s in sites if isinstance(s, dict) and s.get("text")]
    return texts[0] if texts else None


def measured_value(spec: MeasureSpec, resource: dict[str, Any], raw_flag: tuple[str, str] | None
                   ) -> tuple[float | None, str | None]:
    """The value in the concept's canonical unit, or the reason it cannot be used."""
    if "valueInteger" in resource:
        value, unit, where = float(resource["valueInteger"]), None, "valueInteger"
    elif "valueQuantity" in resource:
        quantity = resource["valueQuantity"]
        if quantity.get("value") is None:
            return None, "valueQuantity.value is missing"
        value, unit, where = float(quantity["value"]), quantity.get("code") or quantity.get("unit"), "valueQuantity"
    elif "valueString" in resource and _GRADE.match(str(resource["valueString"])):
        value, unit, where = float(_GRADE.match(resource["valueString"]).group(1)), None, "valueString"
    else:
        return None, "no numeric value (valueQuantity or valueInteger)"
    lower, upper = spec.range
    if unit in (None, ""):
        if not spec.unitless:
            return None, f"{where}: unit is missing (expected {', '.join(spec.units)})"
    elif unit in spec.units:
        value *= spec.units[unit]
    elif spec.raw and unit in spec.raw.units:
        method = {c.key() for c in codings(resource.get("method"))}
        if raw_flag not in method:
            return None, f"{where}: unit {unit!r} is ambiguous: a raw score must be flagged in Observation.method"
        if not spec.raw.range[0] <= value <= spec.raw.range[1]:
            return None, f"{where}: raw score {value:g} outside {spec.raw.range[0]:g}-{spec.raw.range[1]:g}"
        value *= spec.raw.factor
    else:
        return None, f"{where}: unit {unit!r} not accepted (expected {', '.join(spec.units) or 'none'})"
    if spec.integer and value != int(value):
        return None, f"{where}: {value:g} is not a whole number"
    if not lower <= value <= upper:
        return None, f"{where}: {value:g} is outside {lower:g}-{upper:g}"
    return value, None


def value_issues(resource: dict[str, Any], index: ConceptIndex, where: str = "") -> list[Issue]:
    """Strict checks beyond the FHIR schema: units, ranges, raw-score flags, a usable clinical time."""
    kind = resource.get("resourceType")
    base = where or f"{kind}."
    issues: list[Issue] = [
        Issue(base + element, f"{element} {resource.get(element)!r} is not a valid code; expected one of "
              f"{', '.join(sorted(allowed))}", "code-invalid")
        for element, allowed in _REQUIRED_CODES.get(str(kind), {}).items()
        if element in resource and resource[element] not in allowed]
    if issues:
        return issues
    if kind == "Observation":
        if resource.get("status") in {"entered-in-error", *_EXCLUDED_OBSERVATION} or resource.get("dataAbsentReason"):
            return []
        for match in index.lookup_any(codings(resource.get("code"))):
            spec = index.measures.get(match.concept)
            if spec is None:
                continue
            _, problem = measured_value(spec, resource, index.raw_flags.get(match.concept))
            if problem:
                issues.append(Issue(base + problem.split(":")[0],
                                    f"{match.concept}: {problem}; stored, but left out of the pathway",
                                    "value", "warning"))
        if index.lookup_any(codings(resource.get("code"))) and clinical_time(resource) is None:
            issues.append(Issue(base + "effective[x]", "no clinical time (effective[x] or issued): stored, "
                                "but left out of the pathway", "incomplete", "warning"))
    if kind in _SUBJECT_REQUIRED and subject_id(resource) is None:
        issues.append(Issue(base + "subject", "subject is not a Patient reference (Patient/{id}): stored, "
                            "but no patient's pathway uses it", "informational", "information"))
    return issues


def to_facts(patient_id: str, resources: Iterable[dict[str, Any]], index: ConceptIndex) -> PatientFacts:
    """All usable facts about one patient; unusable inputs are named in `problems`."""
    measurements: list[Measurement] = []
    findings: list[Finding] = []
    diagnoses: list[Diagnosis] = []
    procedures: list[ProcedureDone] = []
    requests: list[RequestOnFile] = []
    withdrawn: list[Withdrawn] = []
    medications: list[MedicationUse] = []
    problems: list[str] = []
    birth_date = None
    for resource in resources:
        kind = resource.get("resourceType")
        if kind == "Patient":
            birth_date = parse_date(resource.get("birthDate"))
        elif kind == "Observation":
            _observation(resource, index, measurements, findings, withdrawn, problems)
        elif kind == "Condition":
            _condition(resource, index, diagnoses, withdrawn)
        elif kind == "Procedure":
            _procedure(resource, index, procedures, withdrawn)
        elif kind == "DiagnosticReport":
            _report(resource, index, procedures, diagnoses)
        elif kind == "ImagingStudy":
            _imaging_study(resource, index, procedures)
        elif kind in ("MedicationRequest", "MedicationStatement"):
            _medication(resource, index, medications, withdrawn)
        elif kind == "ServiceRequest":
            _request(resource, index, requests)
    return PatientFacts(patient_id, birth_date, tuple(measurements), tuple(findings), tuple(diagnoses),
                        tuple(procedures), tuple(requests), tuple(withdrawn), tuple(problems),
                        tuple(medications))


def _observation(resource: dict[str, Any], index: ConceptIndex, measurements: list[Measurement],
                 findings: list[Finding], withdrawn: list[Withdrawn], problems: list[str]) -> None:
    matches = index.lookup_any(codings(resource.get("code")))
    if not matches:
        return
    status = resource.get("status", "unknown")
    time = clinical_time(resource)
    if status == "entered-in-error":
        withdrawn.extend(Withdrawn(_ref(resource), m.concept, time) for m in matches)
        return
    if status in _EXCLUDED_OBSERVATION or resource.get("dataAbsentReason") or time is None:
        return
    side = _side(resource, index)
    ref = _ref(resource)
    for match in matches:
        spec = index.measures.get(match.concept)
        if spec is not None:
            value, problem = measured_value(spec, resource, index.raw_flags.get(match.concept))
            if problem:
                problems.append(f"{ref} left out: {problem}")
                continue
            measurements.append(Measurement(ref, match.concept, value, time, status, side, _site_text(resource)))
            continue
        present = _presence(resource, index)
        if present is None:
            problems.append(f"{ref} left out: no present/absent value")
            continue
        findings.append(Finding(ref, match.concept, present, time, status, side))


def _presence(resource: dict[str, Any], index: ConceptIndex) -> bool | None:
    if isinstance(resource.get("valueBoolean"), bool):
        return resource["valueBoolean"]
    keys = {c.key() for c in codings(resource.get("valueCodeableConcept"))}
    if keys & index.present:
        return True
    if keys & index.absent:
        return False
    return None


def _condition(resource: dict[str, Any], index: ConceptIndex, diagnoses: list[Diagnosis],
               withdrawn: list[Withdrawn]) -> None:
    codes = codings(resource.get("code"))
    matches = index.lookup_any(codes)
    if not matches:
        return
    clinical = next((c.code for c in codings(resource.get("clinicalStatus"))), None)
    verification = next((c.code for c in codings(resource.get("verificationStatus"))), None)
    onset = parse_datetime(resource.get("onsetDateTime")) or parse_datetime(
        (resource.get("onsetPeriod") or {}).get("start"))
    recorded = parse_datetime(resource.get("recordedDate"))
    if verification == "entered-in-error":
        withdrawn.append(Withdrawn(_ref(resource), matches[0].concept, onset or recorded))
        return
    abated = _abatement(resource, recorded)
    if abated is None and clinical in {"inactive", "resolved", "remission"}:
        abated = recorded or onset
    sided = next((m.side for m in matches if m.side is not Side.UNSPECIFIED), Side.UNSPECIFIED)
    matched_codes = [c for c in codes if index.lookup(c)]
    diagnoses.append(Diagnosis(_ref(resource), frozenset(m.concept for m in matches), matched_codes[0],
                               onset, recorded, abated, clinical, verification,
                               _side(resource, index, sided), _site_text(resource)))


def _abatement(resource: dict[str, Any], recorded: datetime | None) -> datetime | None:
    period = resource.get("abatementPeriod") or {}
    for value in (resource.get("abatementDateTime"), period.get("end"), period.get("start")):
        moment = parse_datetime(value)
        if moment:
            return moment
    if resource.get("abatementBoolean") is True or resource.get("abatementString"):
        return recorded
    return None


def _procedure(resource: dict[str, Any], index: ConceptIndex, procedures: list[ProcedureDone],
               withdrawn: list[Withdrawn]) -> None:
    codes = codings(resource.get("code"))
    matches = index.lookup_any(codes)
    status = resource.get("status", "unknown")
    period = resource.get("performedPeriod") or {}
    time = next((t for t in (parse_datetime(resource.get("performedDateTime")),
                             parse_datetime(period.get("start")), parse_datetime(period.get("end"))) if t), None)
    if not matches:
        return
    if status == "entered-in-error":
        withdrawn.extend(Withdrawn(_ref(resource), m.concept, time) for m in matches)
        return
    if status in _EXCLUDED_PROCEDURE or time is None:
        return
    coding = next(c for c in codes if index.lookup(c))
    side = _side(resource, index)
    procedures.extend(ProcedureDone(_ref(resource), m.concept, coding, time, status, side,
                                    _site_text(resource)) for m in matches)


def _report(resource: dict[str, Any], index: ConceptIndex, procedures: list[ProcedureDone],
            diagnoses: list[Diagnosis]) -> None:
    """An imaging report: the study counts as done; its conclusion codes as confirmed diagnoses."""
    if resource.get("status") not in _REPORT_DONE:
        return
    time = clinical_time(resource)
    if not _study_done(resource, codings(resource.get("code")), time, index, procedures):
        return
    for concept in resource.get("conclusionCode", []):
        found = [c for c in codings(concept) if index.lookup(c)]
        if found:
            diagnoses.append(Diagnosis(_ref(resource), frozenset(m.concept for m in index.lookup(found[0])),
                                       found[0], time, time, None, "active", "confirmed"))


def _imaging_study(resource: dict[str, Any], index: ConceptIndex,
                   procedures: list[ProcedureDone]) -> None:
    """An available ImagingStudy whose procedureCode is a lumbar study (CPT 72148/72158: 2a.7)."""
    if resource.get("status") not in _STUDY_DONE:
        return
    codes = [c for concept in resource.get("procedureCode", []) for c in codings(concept)]
    _study_done(resource, codes, parse_datetime(resource.get("started")), index, procedures)


def _study_done(resource: dict[str, Any], codes: list[Coding], time: datetime | None,
                index: ConceptIndex, procedures: list[ProcedureDone]) -> bool:
    """A lumbar study done at `time` when one of `codes` is a pathway concept (2a.7)."""
    matches = index.lookup_any(codes)
    if time is None or not matches:
        return False
    coding = next(c for c in codes if index.lookup(c))
    procedures.extend(ProcedureDone(_ref(resource), m.concept, coding, time, "completed")
                      for m in matches)
    return True


def _medication(resource: dict[str, Any], index: ConceptIndex, medications: list[MedicationUse],
                withdrawn: list[Withdrawn]) -> None:
    """A MedicationRequest/MedicationStatement coded inline (medicationCodeableConcept).

    Dated by authoredOn (request) or effective[x] start, else dateAsserted (statement).
    """
    codes = codings(resource.get("medicationCodeableConcept"))
    matches = index.lookup_any(codes)
    if not matches:
        return
    period = resource.get("effectivePeriod") or {}
    time = next((t for t in (parse_datetime(v) for v in (
        resource.get("authoredOn"), resource.get("effectiveDateTime"), period.get("start"),
        period.get("end"), resource.get("dateAsserted"))) if t), None)
    status = resource.get("status", "unknown")
    if status == "entered-in-error":
        withdrawn.extend(Withdrawn(_ref(resource), m.concept, time) for m in matches)
        return
    if status not in _MEDICATION_COUNTS or time is None:
        return
    coding = next(c for c in codes if index.lookup(c))
    medications.extend(MedicationUse(_ref(resource), m.concept, coding, time, status)
                       for m in matches)


def _request(resource: dict[str, Any], index: ConceptIndex, requests: list[RequestOnFile]) -> None:
    codes = codings(resource.get("code"))
    own = next((i.get("value") for i in resource.get("identifier", [])
                if str(i.get("value", "")).startswith(OWN_KEY_PREFIX)), None)
    if not codes:
        return
    matched = [c for c in codes if index.lookup(c)] or codes
    rule = own.split(":")[4] if own and own.count(":") >= 5 else None
    requests.append(RequestOnFile(_ref(resource), frozenset(m.concept for m in index.lookup_any(codes)),
                                  matched[0], resource.get("status", "unknown"),
                                  parse_datetime(resource.get("authoredOn")), resource.get("priority"),
                                  own, rule))
