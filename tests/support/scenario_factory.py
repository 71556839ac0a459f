"""Generate the 24 clinical-scenario fixtures of the lumbar-radiculopathy pathway.

Source of truth: shared/docs/clinical-rules.md §6 (scenarios) and
fixtures/fhir/lumbar-radiculopathy/CONVENTIONS.md (file layout, codes, resource shapes).

Every scenario is judged at the same instant, ASOF. Each scenario picks the day of its episode it is
judged on (`eval_day`), so day Dn of that scenario is ASOF - (eval_day - n) days, at 09:00 UTC
unless a builder is given another hour. Items recorded on the evaluation day itself are put at
08:00 or earlier so that nothing is dated exactly at (or after) ASOF.

Run from the repository root:

    .venv/bin/python -m tests.support.scenario_factory

It (re)writes `NN-slug/case.json` and `NN-slug/step-K.bundle.json` (plus scenario 20's
`rejected.odi-unflagged.json`) and leaves engine-written `expected.*.json` files alone. The output
is deterministic: same code, same bytes.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "fixtures" / "fhir" / "lumbar-radiculopathy"
ASOF = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ASOF_TEXT = "2026-03-02T09:00:00Z"
BASE_URL = "http://example.org/fhir"

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
CPT = "http://www.ama-assn.org/go/cpt"
UCUM = "http://unitsofmeasure.org"
LRP = "http://example.org/CodeSystem/lrp-exam"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"

Resource = dict[str, Any]

# ---------------------------------------------------------------------------------------------
# Vocabulary used by the fixtures (match on system + code; displays are informative only)
# ---------------------------------------------------------------------------------------------

ICD_DISPLAY = {
    "M54.16": "Radiculopathy, lumbar region",
    "M51.16": "Intervertebral disc disorders with radiculopathy, lumbar region",
    "M51.17": "Intervertebral disc disorders with radiculopathy, lumbosacral region",
    "M54.31": "Sciatica, right side",
    "M54.32": "Sciatica, left side",
    "M54.41": "Lumbago with sciatica, right side",
    "M48.062": "Spinal stenosis, lumbar region with neurogenic claudication",
    "R33.9": "Retention of urine, unspecified",
    "C79.51": "Secondary malignant neoplasm of bone",
}

SIDES = {
    "right": (SNOMED, "24028007", "Right (qualifier value)"),
    "left": (SNOMED, "7771000", "Left (qualifier value)"),
    "bilateral": (SNOMED, "51440002", "Right and left (qualifier value)"),
}

# The six key muscles of spec §4.3, in myotome order.
MUSCLES = {
    "L2-HIPFLEX": "MRC grade, L2 hip flexion",
    "L3-KNEEEXT": "MRC grade, L3 knee extension",
    "L4-ANKLEDF": "MRC grade, L4 ankle dorsiflexion",
    "L5-EHL": "MRC grade, L5 great-toe extension",
    "L5-EVERT": "MRC grade, L5 ankle eversion",
    "S1-PF": "MRC grade, S1 plantar flexion",
}

RED_FLAGS = {
    "SADDLE": "Saddle (perianal/perineal/genital) sensory change",
    "BLADDER": "Bladder symptom: retention, hesitancy or reduced sensation of urinary flow",
    "BOWEL": "Bowel symptom: incontinence or loss of rectal-fullness sensation",
}

PRESENT = (SNOMED, "52101004", "Present (qualifier value)")
ABSENT = (SNOMED, "2667000", "Absent (qualifier value)")

MRI_LUMBAR = (LOINC, "30679-5", "MR Lumbar spine WO contrast")
PHYSIO = (SNOMED, "229064008", "Movement therapy")
ESI_TF = (CPT, "64483", "Injection, anesthetic agent and/or steroid, transforaminal epidural, with "
                        "imaging guidance (fluoroscopy or CT); lumbar or sacral, single level")
SURGERY = (SNOMED, "442118009", "Primary hemilaminectomy for decompression of lumbar spine")

# Codes used in `expect`.
REQ = {
    "pt": (SNOMED, "306170007"),
    "ed": (SNOMED, "183866009"),
    "mri": (LOINC, "30679-5"),
    "mri-cpt": (CPT, "72148"),
    "mri-contrast": (LOINC, "24967-2"),
    "spine": (SNOMED, "308482002"),
    "pain-mgmt": (SNOMED, "306265007"),
    "esi-tf": (CPT, "64483"),
    "esi-il": (CPT, "62323"),
}


def coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    out = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def concept(system: str, code: str, display: str | None = None, text: str | None = None
            ) -> dict[str, Any]:
    out: dict[str, Any] = {"coding": [coding(system, code, display)]}
    if text:
        out["text"] = text
    return out


def side_site(side: str | None, level: str | None = None) -> dict[str, Any]:
    """A bodySite CodeableConcept: laterality coding (if any) and the spinal level as text."""
    out: dict[str, Any] = {}
    if side:
        out["coding"] = [coding(*SIDES[side])]
    if level:
        out["text"] = level
    return out


# ---------------------------------------------------------------------------------------------
# Scenario context: patient id and the day clock
# ---------------------------------------------------------------------------------------------

@dataclass
class Scenario:
    nn: int
    slug: str
    title: str
    eval_day: int
    steps: list[list[Resource]] = field(default_factory=list)
    expect: dict[str, Any] = field(default_factory=dict)
    extra_files: dict[str, Resource] = field(default_factory=dict)
    case_extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tag(self) -> str:
        return f"{self.nn:02d}"

    @property
    def patient_id(self) -> str:
        return f"lrp-{self.tag}"

    @property
    def folder(self) -> str:
        return f"{self.tag}-{self.slug}"

    def at(self, day: int, hour: int = 9, minute: int = 0) -> str:
        """Day `day` of this scenario's episode as a UTC dateTime string."""
        moment = ASOF - timedelta(days=self.eval_day - day)
        moment = moment.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if moment > ASOF:
            raise ValueError(f"scenario {self.tag}: D{day} {hour:02d}:{minute:02d} is after asOf")
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    def now_hour(self, day: int, hour: int = 9) -> int:
        """Default hour for a day: 08:00 on the evaluation day, else the given hour."""
        return 8 if day == self.eval_day and hour >= 9 else hour

    def ref(self) -> dict[str, str]:
        return {"reference": f"Patient/{self.patient_id}"}


def day_tag(day: int) -> str:
    return f"d{day}" if day >= 0 else f"dm{-day}"


# ---------------------------------------------------------------------------------------------
# Resource builders
# ---------------------------------------------------------------------------------------------

def patient(s: Scenario, birth_date: str, gender: str) -> Resource:
    return {
        "resourceType": "Patient",
        "id": s.patient_id,
        "identifier": [{"system": "http://example.org/fhir/sid/carepath-test-patient",
                        "value": s.patient_id}],
        "name": [{"family": "Scenario", "given": [f"Case{s.tag}"]}],
        "gender": gender,
        "birthDate": birth_date,
    }


def condition(s: Scenario, short: str, code: str, *, onset_day: int,
              recorded_day: int | None = None,
              system: str = ICD10, display: str | None = None, side: str | None = None,
              level: str | None = None, clinical: str = "active", verification: str = "confirmed",
              abatement_day: int | None = None, onset_hour: int = 9, recorded_hour: int = 9,
              note: str | None = None) -> Resource:
    res: Resource = {
        "resourceType": "Condition",
        "id": f"{s.tag}-{short}",
        "clinicalStatus": concept(CLINICAL, clinical),
        "verificationStatus": concept(VERIFICATION, verification),
        "category": [concept(CONDITION_CATEGORY, "problem-list-item", "Problem List Item")],
        "code": concept(system, code, display or ICD_DISPLAY.get(code)),
    }
    if side or level:
        res["bodySite"] = [side_site(side, level)]
    res["subject"] = s.ref()
    res["onsetDateTime"] = s.at(onset_day, onset_hour)
    if abatement_day is not None:
        res["abatementDateTime"] = s.at(abatement_day)
    rec = onset_day if recorded_day is None else recorded_day
    res["recordedDate"] = s.at(rec, s.now_hour(rec, recorded_hour))
    if note:
        res["note"] = [{"text": note}]
    return res


def _observation(s: Scenario, oid: str, code: dict[str, Any], category: str, when: str,
                 status: str = "final") -> Resource:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": status,
        "category": [concept(OBSERVATION_CATEGORY, category)],
        "code": code,
        "subject": s.ref(),
        "effectiveDateTime": when,
    }


def nrs(s: Scenario, day: int, value: int, *, hour: int = 9) -> Resource:
    """Leg-pain NRS 0-10 (LOINC 72514-3)."""
    res = _observation(s, f"{s.tag}-nrs-{day_tag(day)}",
                       concept(LOINC, "72514-3", "Pain severity - 0-10 verbal numeric rating "
                                                 "[Score] - Reported"),
                       "survey", s.at(day, s.now_hour(day, hour)))
    res["valueQuantity"] = {"value": value, "unit": "{score}", "system": UCUM, "code": "{score}"}
    return res


def odi(s: Scenario, day: int, value: int, *, raw: bool = False, hour: int = 9,
        short: str | None = None) -> Resource:
    """ODI score (LOINC 97909-6) in %, or a raw 0-50 score flagged LRP-ODI-RAW."""
    res = _observation(s, f"{s.tag}-{short or 'odi-' + day_tag(day)}",
                       concept(LOINC, "97909-6", "Oswestry disability index score ODI"),
                       "survey", s.at(day, s.now_hour(day, hour)))
    if raw:
        res["method"] = concept(LRP, "LRP-ODI-RAW", "ODI raw score 0-50")
        res["valueQuantity"] = {"value": value, "unit": "{score}", "system": UCUM,
                                "code": "{score}"}
    else:
        res["valueQuantity"] = {"value": value, "unit": "%", "system": UCUM, "code": "%"}
    return res


def mrc(s: Scenario, muscle: str, side: str, grade: int, day: int, *, hour: int = 9) -> Resource:
    """MRC motor grade 0-5 for one key muscle and side (local code LRP-MRC-*)."""
    res = _observation(s, f"{s.tag}-mrc-{muscle.lower()}-{side[0]}-{day_tag(day)}",
                       concept(LRP, f"LRP-MRC-{muscle}", MUSCLES[muscle]),
                       "exam", s.at(day, s.now_hour(day, hour)))
    res["valueInteger"] = grade
    res["bodySite"] = side_site(side)
    return res


def motor_exam(s: Scenario, day: int, grades: dict[tuple[str, str], int] | None = None, *,
               sides: Iterable[str] = ("left", "right"), hour: int = 9) -> list[Resource]:
    """A motor exam of the six key muscles; every grade 5 unless overridden by (muscle, side)."""
    grades = grades or {}
    return [mrc(s, m, side, grades.get((m, side), 5), day, hour=hour)
            for side in sides for m in MUSCLES]


def finding(s: Scenario, flag: str, present: bool, day: int, *, status: str = "final",
            hour: int = 9) -> Resource:
    """Presence/absence red-flag finding LRP-SADDLE / LRP-BLADDER / LRP-BOWEL."""
    res = _observation(s, f"{s.tag}-{flag.lower()}-{day_tag(day)}",
                       concept(LRP, f"LRP-{flag}", RED_FLAGS[flag]),
                       "exam", s.at(day, s.now_hour(day, hour)), status)
    res["valueCodeableConcept"] = concept(*(PRESENT if present else ABSENT))
    return res


def red_flag_screen(s: Scenario, day: int, *, skip: Iterable[str] = (), hour: int = 9
                    ) -> list[Resource]:
    """A negative cauda-equina screen: saddle, bladder and bowel all Absent (final)."""
    return [finding(s, f, False, day, hour=hour) for f in RED_FLAGS if f not in skip]


def procedure(s: Scenario, short: str, code: tuple[str, str, str], *, status: str = "completed",
              day: int | None = None, start_day: int | None = None, end_day: int | None = None,
              side: str | None = None, level: str | None = None, hour: int = 9,
              note: str | None = None) -> Resource:
    res: Resource = {
        "resourceType": "Procedure",
        "id": f"{s.tag}-{short}",
        "status": status,
        "code": concept(*code),
        "subject": s.ref(),
    }
    if day is not None:
        res["performedDateTime"] = s.at(day, s.now_hour(day, hour))
    else:
        period = {"start": s.at(start_day, hour)}
        if end_day is not None:
            period["end"] = s.at(end_day, s.now_hour(end_day, hour))
        res["performedPeriod"] = period
    if side or level:
        res["bodySite"] = [side_site(side, level)]
    if note:
        res["note"] = [{"text": note}]
    return res


def physiotherapy(s: Scenario, start_day: int, end_day: int | None = None) -> Resource:
    """Physiotherapy course: in-progress from start_day, or completed start..end."""
    return procedure(s, f"physio-{day_tag(start_day)}", PHYSIO,
                     status="completed" if end_day is not None else "in-progress",
                     start_day=start_day, end_day=end_day)


def mri_done(s: Scenario, day: int, hour: int = 9) -> Resource:
    return procedure(s, f"mri-{day_tag(day)}", MRI_LUMBAR, day=day, hour=hour)


def esi(s: Scenario, day: int, side: str = "left", level: str = "L5/S1") -> Resource:
    return procedure(s, f"esi-{day_tag(day)}", ESI_TF, day=day, side=side, level=level)


def service_request(s: Scenario, short: str, code: tuple[str, str, str], *, day: int,
                    status: str = "draft", intent: str = "proposal", reason: str | None = None
                    ) -> Resource:
    """A clinician-authored request (not from the engine: no urn:lrp identifier)."""
    res: Resource = {
        "resourceType": "ServiceRequest",
        "id": f"{s.tag}-{short}",
        "status": status,
        "intent": intent,
        "priority": "routine",
        "code": concept(*code),
        "subject": s.ref(),
        "authoredOn": s.at(day, s.now_hour(day)),
        "requester": {"display": "Referring clinician (primary care)"},
    }
    if reason:
        res["reasonCode"] = [{"text": reason}]
    return res


def bundle(s: Scenario, step: int, resources: list[Resource]) -> Resource:
    """A transaction Bundle of PUTs; the Patient must come first."""
    if resources[0]["resourceType"] != "Patient":
        raise ValueError(f"scenario {s.tag} step {step}: the bundle must start with the Patient")
    ids = [(r["resourceType"], r["id"]) for r in resources]
    if len(ids) != len(set(ids)):
        raise ValueError(f"scenario {s.tag} step {step}: duplicate resource ids")
    return {
        "resourceType": "Bundle",
        "id": f"{s.patient_id}-step-{step}",
        "type": "transaction",
        "entry": [{
            "fullUrl": f"{BASE_URL}/{r['resourceType']}/{r['id']}",
            "resource": r,
            "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
        } for r in resources],
    }


# ---------------------------------------------------------------------------------------------
# Expectation helpers
# ---------------------------------------------------------------------------------------------

def want(key: str, priority: str, status: str = "draft", **extra: Any) -> dict[str, Any]:
    system, code = REQ[key]
    return {"system": system, "code": code, "priority": priority, "status": status, **extra}


def absent(*keys: str) -> list[dict[str, str]]:
    return [{"system": REQ[k][0], "code": REQ[k][1]} for k in keys]


def expect(*, requests: list | None = None, absent_requests: list | None = None,
           tasks: list[str] | None = None, absent_tasks: list[str] | None = None,
           rules: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    out = {
        "requests": requests or [],
        "absentRequests": absent_requests or [],
        "tasks": tasks or [],
        "absentTasks": absent_tasks or [],
        "rules": rules or {},
    }
    out.update(extra)
    return out


NOT_ESCALATED = {"R1": "not-met", "R2": "not-met", "R3": "not-met", "R4": "not-met"}

# ---------------------------------------------------------------------------------------------
# Shared scenario pieces
# ---------------------------------------------------------------------------------------------


def failed_conservative_history(s: Scenario, *, nrs_base: int, odi_base: int | None,
                                physio_end: int | None = 45) -> list[Resource]:
    """D3 baseline (NRS, ODI, normal motor exam, negative red-flag screen); physio from D3."""
    out = [nrs(s, 3, nrs_base)]
    if odi_base is not None:
        out.append(odi(s, 3, odi_base))
    out += motor_exam(s, 3) + red_flag_screen(s, 3)
    out.append(physiotherapy(s, 3, physio_end))
    return out


# ---------------------------------------------------------------------------------------------
# The 24 scenarios (spec §6). Each returns a filled Scenario.
# ---------------------------------------------------------------------------------------------

def scenario_01() -> Scenario:
    s = Scenario(1, "conservative-start", "D3: new left M51.16, NRS 8, MRC all 5, no red flags: "
                 "start conservative care (R6), no MRI (R5, HEDIS 28 d)", eval_day=3)
    s.steps = [[
        patient(s, "1987-05-14", "female"),
        condition(s, "radic", "M51.16", onset_day=0, recorded_day=3, side="left", level="L4/L5"),
        nrs(s, 3, 8), *motor_exam(s, 3), *red_flag_screen(s, 3),
    ]]
    s.expect = expect(
        requests=[want("pt", "routine")],
        absent_requests=absent("mri", "mri-cpt", "ed", "spine"),
        absent_tasks=["red-flag-screen-due"],
        rules={**NOT_ESCALATED, "R5": "met", "R6": "met", "R7": "not-met"},
    )
    return s


def scenario_02() -> Scenario:
    s = Scenario(2, "clinician-mri-blocked", "As #1; D10 a clinician proposes a lumbar MRI: the "
                 "imaging gate (R5) blocks it", eval_day=10)
    s.steps = [[
        patient(s, "1985-11-02", "male"),
        condition(s, "radic", "M51.16", onset_day=0, recorded_day=3, side="left", level="L4/L5"),
        nrs(s, 3, 8), *motor_exam(s, 3), *red_flag_screen(s, 3),
        service_request(s, "mri-proposal", (LOINC, "30679-5", "MR Lumbar spine WO contrast"),
                        day=10, reason="Persistent left leg pain"),
    ]]
    s.expect = expect(
        absent_requests=absent("mri", "mri-cpt"),
        tasks=["imaging-not-indicated"],
        absent_tasks=["red-flag-screen-due"],
        rules={**NOT_ESCALATED, "R5": "met"},
    )
    return s


def _ces_expect(**extra: Any) -> dict[str, Any]:
    return expect(requests=[want("ed", "stat", "active"), want("mri", "stat", "active")], **extra)


def scenario_03() -> Scenario:
    s = Scenario(3, "urinary-retention", "D2: new urinary retention (R33.9) with left sciatica: "
                 "suspected CES (R1), emergency referral", eval_day=2)
    s.steps = [[
        patient(s, "1983-02-21", "male"),
        condition(s, "sciatica", "M54.32", onset_day=0, recorded_day=2),
        condition(s, "retention", "R33.9", onset_day=2, onset_hour=6, recorded_day=2),
        nrs(s, 2, 7), *motor_exam(s, 2),
        # Bladder is documented by the R33.9 Condition; saddle and bowel screened negative.
        *red_flag_screen(s, 2, skip=["BLADDER"]),
    ]]
    s.expect = _ces_expect(absent_requests=absent("pt"), rules={"R1": "met"})
    return s


def _saddle_preliminary(s: Scenario) -> list[Resource]:
    return [
        patient(s, "1989-08-30", "female"),
        condition(s, "radic", "M51.16", onset_day=0, recorded_day=5, side="left", level="L5/S1"),
        nrs(s, 5, 7), *motor_exam(s, 5),
        finding(s, "SADDLE", True, 5, status="preliminary"),
        *red_flag_screen(s, 5, skip=["SADDLE"]),
    ]


def scenario_04() -> Scenario:
    s = Scenario(4, "saddle-preliminary", "D5: saddle numbness recorded as a preliminary Present "
                 "observation: R1 fires (preliminary positives count)", eval_day=5)
    s.steps = [_saddle_preliminary(s)]
    s.expect = _ces_expect(absent_requests=absent("pt"), rules={"R1": "met"})
    return s


def scenario_05() -> Scenario:
    s = Scenario(5, "saddle-entered-in-error", "#4, then the saddle observation is updated to "
                 "entered-in-error: the R1 requests stay active (no auto-revoke); review Task",
                 eval_day=5)
    step1 = _saddle_preliminary(s)
    withdrawn = json.loads(json.dumps(next(r for r in step1 if r["id"] == "05-saddle-d5")))
    withdrawn["status"] = "entered-in-error"
    withdrawn["note"] = [{"text": "Entered in error: recorded against the wrong patient."}]
    s.steps = [step1, [step1[0], withdrawn]]
    s.expect = _ces_expect(tasks=["evidence-withdrawn-review"], rules={"R1": "not-met"})
    return s


def scenario_06() -> Scenario:
    s = Scenario(6, "ankle-df-mrc3", "D20: left ankle dorsiflexion MRC 3 (5 at D3): severe (R3) "
                 "and new (R4) deficit, spine referral + MRI asap", eval_day=20)
    s.steps = [[
        patient(s, "1984-03-09", "male"),
        condition(s, "radic", "M51.16", onset_day=0, recorded_day=3, side="left", level="L4/L5"),
        nrs(s, 3, 7), *motor_exam(s, 3), *red_flag_screen(s, 3),
        physiotherapy(s, 5),
        nrs(s, 20, 7), *motor_exam(s, 20, {("L4-ANKLEDF", "left"): 3}), *red_flag_screen(s, 20),
    ]]
    s.expect = expect(
        requests=[want("spine", "asap"), want("mri", "asap")],
        absent_requests=absent("ed"),
        tasks=["motor-reexamine"],
        absent_tasks=["red-flag-screen-due"],
        rules={"R1": "not-met", "R3": "met", "R4": "met"},
    )
    return s


def _ehl_series(s: Scenario, birth: str, gender: str, d34_grade: int) -> list[Resource]:
    """D5 GP visit (pain, red flags, physio; no motor exam), then left-EHL exams D30/33/34."""
    return [
        patient(s, birth, gender),
        condition(s, "radic", "M51.16", onset_day=0, recorded_day=5, side="left", level="L4/L5"),
        nrs(s, 5, 7), *red_flag_screen(s, 5), physiotherapy(s, 5),
        nrs(s, 30, 7), *motor_exam(s, 30, {("L5-EHL", "left"): 4}), *red_flag_screen(s, 30),
        *motor_exam(s, 33, {("L5-EHL", "left"): 3}),
        # 25 h after the D33 exam (spec: confirmation needs a second exam >= 24 h later).
        *motor_exam(s, 34, {("L5-EHL", "left"): d34_grade}, hour=10),
    ]


def scenario_07() -> Scenario:
    s = Scenario(7, "ehl-drop-confirmed", "Left EHL MRC 4 (D30), 3 (D33), 3 (D34): one-grade drop "
                 "confirmed after >= 24 h (R4) and severe (R3): asap", eval_day=35)
    s.steps = [_ehl_series(s, "1986-12-01", "female", 3)]
    s.expect = expect(
        requests=[want("spine", "asap"), want("mri", "asap")],
        absent_requests=absent("ed"),
        tasks=["motor-reexamine"],
        absent_tasks=["red-flag-screen-due"],
        rules={"R1": "not-met", "R3": "met", "R4": "met"},
    )
    return s


def scenario_08() -> Scenario:
    s = Scenario(8, "ehl-drop-unconfirmed", "Left EHL MRC 4 (D30), 3 (D33), 4 (D34): drop not "
                 "confirmed (no R4), latest 4 (no R3): re-examine Task only", eval_day=35)
    s.steps = [_ehl_series(s, "1990-06-17", "male", 4)]
    s.expect = expect(
        absent_requests=absent("spine", "mri", "mri-cpt", "ed"),
        tasks=["motor-reexamine"],
        absent_tasks=["red-flag-screen-due"],
        rules={"R1": "not-met", "R3": "not-met", "R4": "not-met"},
    )
    return s


def scenario_09() -> Scenario:
    s = Scenario(9, "bilateral-cross-side", "Right ankle DF MRC 4 (D30), left ankle DF MRC 3 "
                 "(D33): no cross-side progression; bilateral deficit, one side severe, new: "
                 "R1 stat",
                 eval_day=34)
    s.steps = [[
        patient(s, "1982-10-25", "male"),
        condition(s, "radic", "M51.16", onset_day=0, recorded_day=5, side="right", level="L4/L5"),
        nrs(s, 5, 7), *red_flag_screen(s, 5), physiotherapy(s, 5),
        # D30: right leg examined (symptomatic side); D33: left leg examined (new symptoms).
        nrs(s, 30, 7), *motor_exam(s, 30, {("L4-ANKLEDF", "right"): 4}, sides=["right"]),
        *motor_exam(s, 33, {("L4-ANKLEDF", "left"): 3}, sides=["left"]),
        *red_flag_screen(s, 33),
    ]]
    s.expect = _ces_expect(absent_tasks=["red-flag-screen-due"], rules={"R1": "met"})
    return s


def scenario_10() -> Scenario:
    s = Scenario(10, "out-of-order-exam", "Exam effective D40 (left ankle DF MRC 3) arrives after "
                 "the exam effective D45 (MRC 5): ordered by effective time it is an improvement; "
                 "no R3/R4", eval_day=45)
    s.steps = [
        [
            patient(s, "1988-01-11", "female"),
            condition(s, "radic", "M51.16", onset_day=0, recorded_day=5, side="left",
                      level="L4/L5"),
            nrs(s, 5, 7), *red_flag_screen(s, 5), physiotherapy(s, 5),
            nrs(s, 45, 4), *motor_exam(s, 45), *red_flag_screen(s, 45),
        ],
        [
            patient(s, "1988-01-11", "female"),
            *motor_exam(s, 40, {("L4-ANKLEDF", "left"): 3}),
        ],
    ]
    s.expect = expect(
        absent_requests=absent("spine", "mri", "mri-cpt", "ed"),
        absent_tasks=["red-flag-screen-due"],
        rules={"R1": "not-met", "R3": "not-met", "R4": "not-met"},
    )
    return s


def _d45_outcomes(s: Scenario, birth: str, gender: str, nrs45: int, odi45: int | None
                  ) -> list[Resource]:
    out = [
        patient(s, birth, gender),
        condition(s, "radic", "M51.16", onset_day=0, recorded_day=3, side="left", level="L4/L5"),
        *failed_conservative_history(s, nrs_base=7, odi_base=44, physio_end=None),
        nrs(s, 45, nrs45),
    ]
    if odi45 is not None:
        out.append(odi(s, 45, odi45))
    return out + [*motor_exam(s, 45), *red_flag_screen(s, 45)]


def scenario_11() -> Scenario:
    s = Scenario(11, "r7-failed-conservative", "D45, physio from D3: NRS 7 -> 6, ODI 44 -> 40: no "
                 "MCID, conservative care failed (R7): routine MRI", eval_day=45)
    s.steps = [_d45_outcomes(s, "1986-04-04", "male", 6, 40)]
    s.expect = expect(
        requests=[want("mri", "routine")],
        absent_requests=absent("pain-mgmt", "esi-tf", "ed"),
        absent_tasks=["collect-outcomes", "red-flag-screen-due"],
        rules={**NOT_ESCALATED, "R5": "not-met", "R7": "met", "R9": "not-met"},
    )
    return s


def scenario_12() -> Scenario:
    s = Scenario(12, "r9-improved-nrs", "D45: NRS 7 -> 4 (-43 %), ODI 44 -> 41: improved on NRS, "
                 "no R7 (R9)", eval_day=45)
    s.steps = [_d45_outcomes(s, "1991-09-19", "female", 4, 41)]
    s.expect = expect(
        absent_requests=absent("mri", "mri-cpt", "pain-mgmt", "spine"),
        absent_tasks=["collect-outcomes", "red-flag-screen-due"],
        rules={"R7": "not-met", "R9": "met"},
    )
    return s


def scenario_13() -> Scenario:
    s = Scenario(13, "r7-stale-outcomes", "D45: NRS 7 -> 6, no ODI, NRS last recorded D20 (> 14 d "
                 "ago): Task collect NRS/ODI, no escalation", eval_day=45)
    s.steps = [[
        patient(s, "1984-07-07", "male"),
        condition(s, "radic", "M51.16", onset_day=0, recorded_day=3, side="left", level="L4/L5"),
        *failed_conservative_history(s, nrs_base=7, odi_base=None, physio_end=None),
        nrs(s, 20, 6),
        # D38 physiotherapy review: red-flag screen and motor exam, no outcome measures.
        *motor_exam(s, 38), *red_flag_screen(s, 38),
    ]]
    s.expect = expect(
        absent_requests=absent("mri", "mri-cpt", "pain-mgmt", "spine"),
        tasks=["collect-outcomes"],
        absent_tasks=["red-flag-screen-due"],
        rules={"R7": "indeterminate"},
    )
    return s


def _concordant_l5s1(s: Scenario, mri_day: int) -> list[Resource]:
    """MRI done on mri_day, then a clinician-confirmed concordant M51.17 left L5/S1."""
    return [
        mri_done(s, mri_day),
        condition(s, "disc-l5s1", "M51.17", onset_day=0, recorded_day=mri_day, recorded_hour=14,
                  side="left", level="L5/S1",
                  note="MRI: left paracentral L5/S1 disc herniation compressing the left S1 root; "
                       "concordant with symptoms."),
    ]


def _failed_then_mri(s: Scenario, birth: str, gender: str, mri_day: int) -> list[Resource]:
    """Left sciatica from D0, physio D3-D45, NRS 8 / ODI 52 -> NRS 8 / ODI 50 at D45, MRI."""
    return [
        patient(s, birth, gender),
        condition(s, "sciatica", "M54.32", onset_day=0, recorded_day=3),
        *failed_conservative_history(s, nrs_base=8, odi_base=52),
        nrs(s, 45, 8), odi(s, 45, 50),
        *_concordant_l5s1(s, mri_day),
    ]


def scenario_14() -> Scenario:
    s = Scenario(14, "r7-esi-concordant", "Failed conservative care; D60 concordant MRI (M51.17 "
                 "L5/S1 left); NRS 8: offer ESI (pain management + CPT 64483 left L5/S1) and a "
                 "surgical opinion, both routine", eval_day=62)
    s.steps = [[
        *_failed_then_mri(s, "1983-05-28", "female", 60),
        nrs(s, 60, 8), odi(s, 60, 50), *motor_exam(s, 60), *red_flag_screen(s, 60),
    ]]
    # Extension of the `expect` request shape: the request's bodySite entries must include this
    # laterality coding, and one of them must carry this level as text.
    left_l5s1 = {"bodySite": {"system": SNOMED, "code": "7771000", "text": "L5/S1"}}
    s.expect = expect(
        requests=[want("pain-mgmt", "routine"), want("esi-tf", "routine", **left_l5s1),
                  want("spine", "routine")],
        absent_requests=absent("mri", "mri-cpt", "ed"),
        absent_tasks=["collect-outcomes", "red-flag-screen-due"],
        rules={**NOT_ESCALATED, "R7": "met"},
    )
    return s


def scenario_15() -> Scenario:
    s = Scenario(15, "stenosis-no-esi", "Lumbar stenosis with neurogenic claudication (M48.062) "
                 "only, no radicular dx, failed 6 weeks, MRI concordant: no ESI (NICE); surgical "
                 "opinion routine", eval_day=56)
    s.steps = [[
        patient(s, "1981-11-13", "male"),
        *failed_conservative_history(s, nrs_base=8, odi_base=46),
        nrs(s, 45, 8), odi(s, 45, 44),
        mri_done(s, 52),
        condition(s, "stenosis", "M48.062", onset_day=0, recorded_day=52, recorded_hour=14,
                  level="L4/L5",
                  note="MRI: severe central canal stenosis at L4/L5; neurogenic claudication."),
        nrs(s, 52, 7, hour=15), odi(s, 52, 42, hour=15),
        *motor_exam(s, 52, hour=15), *red_flag_screen(s, 52, hour=15),
    ]]
    s.expect = expect(
        requests=[want("spine", "routine")],
        absent_requests=absent("pain-mgmt", "esi-tf", "esi-il", "mri", "mri-cpt"),
        absent_tasks=["collect-outcomes", "red-flag-screen-due"],
        rules={"R7": "met"},
    )
    return s


def _esi_at_d70(s: Scenario, birth: str, gender: str) -> list[Resource]:
    """Failed conservative care, concordant MRI D55, pre-injection NRS 8 at D62, ESI D70."""
    return [
        *_failed_then_mri(s, birth, gender, 55),
        nrs(s, 62, 8), odi(s, 62, 50), *motor_exam(s, 62), *red_flag_screen(s, 62),
        esi(s, 70),
    ]


def scenario_16() -> Scenario:
    s = Scenario(16, "r8-esi-failed", "ESI D70, pre-injection NRS 8; D90 NRS 7 (-12 %): failed "
                 "ESI (R8): spine surgery referral routine", eval_day=90)
    s.steps = [[
        *_esi_at_d70(s, "1985-02-02", "male"),
        nrs(s, 90, 7), odi(s, 90, 48), *motor_exam(s, 90), *red_flag_screen(s, 90),
    ]]
    s.expect = expect(
        requests=[want("spine", "routine")],
        absent_requests=absent("ed"),
        absent_tasks=["collect-post-esi-outcomes", "red-flag-screen-due"],
        rules={"R1": "not-met", "R3": "not-met", "R4": "not-met", "R8": "met"},
    )
    return s


def scenario_17() -> Scenario:
    s = Scenario(17, "r8-esi-partial", "ESI D70 (1 session in 12 months), pre-injection NRS 8; D90 "
                 "NRS 5 (-37 %): partial response: surgical opinion routine", eval_day=90)
    s.steps = [[
        *_esi_at_d70(s, "1987-10-10", "female"),
        nrs(s, 90, 5), odi(s, 90, 42), *motor_exam(s, 90), *red_flag_screen(s, 90),
    ]]
    s.expect = expect(
        requests=[want("spine", "routine")],
        absent_requests=absent("ed"),
        absent_tasks=["collect-post-esi-outcomes", "red-flag-screen-due"],
        rules={"R1": "not-met", "R3": "not-met", "R4": "not-met"},
    )
    return s


def scenario_18() -> Scenario:
    s = Scenario(18, "r8-no-post-esi-outcome", "ESI D70; no NRS afterwards; judged D113 (> D70 + "
                 "42 d): Task collect post-ESI outcome, no decision", eval_day=113)
    s.steps = [[
        *_esi_at_d70(s, "1984-12-24", "male"),
        # D105 telephone review: red-flag screen and motor exam only, no outcome measure.
        *motor_exam(s, 105), *red_flag_screen(s, 105),
    ]]
    s.expect = expect(
        absent_requests=absent("spine"),
        tasks=["collect-post-esi-outcomes"],
        absent_tasks=["red-flag-screen-due"],
        rules={"R8": "indeterminate"},
    )
    return s


def scenario_19() -> Scenario:
    s = Scenario(19, "excludes1-dedupe", "M54.41 (right) and M51.16 both active with the same "
                 "onset: one episode (Excludes1 dedupe), side right from M54.41", eval_day=3)
    s.steps = [[
        patient(s, "1990-03-03", "female"),
        condition(s, "lumbago-sciatica", "M54.41", onset_day=0, recorded_day=3),
        condition(s, "disc", "M51.16", onset_day=0, recorded_day=3),
        nrs(s, 3, 7), *motor_exam(s, 3), *red_flag_screen(s, 3),
    ]]
    s.expect = expect(
        requests=[want("pt", "routine")],
        absent_tasks=["red-flag-screen-due"],
        rules={**NOT_ESCALATED, "R6": "met"},
        episode={"side": "right", "onset": s.at(0),
                 "diagnoses": ["Condition/19-disc", "Condition/19-lumbago-sciatica"]},
    )
    return s


def scenario_20() -> Scenario:
    s = Scenario(20, "odi-raw-score", "ODI 22 with unit {score} flagged LRP-ODI-RAW is read as "
                 "44 %: NRS 7 -> 6, ODI 44 -> 44, failed conservative care (R7). An unflagged "
                 "unitless ODI 22 is rejected", eval_day=45)
    s.steps = [[
        patient(s, "1986-08-08", "male"),
        condition(s, "radic", "M51.16", onset_day=0, recorded_day=3, side="left", level="L4/L5"),
        *failed_conservative_history(s, nrs_base=7, odi_base=44, physio_end=None),
        nrs(s, 43, 6), odi(s, 43, 22, raw=True, short="odi-raw-d43"),
        *motor_exam(s, 43), *red_flag_screen(s, 43),
    ]]
    unflagged = _observation(s, "20-odi-unflagged",
                             concept(LOINC, "97909-6", "Oswestry disability index score ODI"),
                             "survey", s.at(44))
    unflagged["valueQuantity"] = {"value": 22}
    s.extra_files = {"rejected.odi-unflagged.json": unflagged}
    s.case_extra = {"rejects": ["rejected.odi-unflagged.json"]}
    s.expect = expect(
        requests=[want("mri", "routine")],
        absent_tasks=["collect-outcomes", "red-flag-screen-due"],
        rules={"R7": "met", "R9": "not-met"},
    )
    return s


def scenario_21() -> Scenario:
    s = Scenario(21, "malignancy-history", "History of C79.51 (bone metastases) and new back pain "
                 "with radiculopathy at D4: R2, MRI with/without contrast urgent; exempt from the "
                 "imaging gate", eval_day=4)
    s.steps = [[
        patient(s, "1981-09-03", "female"),
        condition(s, "bone-mets", "C79.51", onset_day=-400, recorded_day=-400,
                  note="Breast carcinoma with bone metastases, on oncology follow-up."),
        condition(s, "radic", "M54.16", onset_day=0, recorded_day=4, side="left"),
        nrs(s, 4, 7), *motor_exam(s, 4), *red_flag_screen(s, 4),
    ]]
    s.expect = expect(
        requests=[{"system": LOINC, "code": "24967-2", "priority": "urgent", "status": "draft"}],
        tasks=["specialist-referral"],
        absent_tasks=["red-flag-screen-due"],
        rules={"R1": "not-met", "R2": "met", "R5": "not-met"},
    )
    return s


def scenario_22() -> Scenario:
    s = Scenario(22, "mri-reorder-after-deterioration", "MRI done D50; D100 new left EHL deficit "
                 "(MRC 5 at D80 -> 4): R4 on evidence newer than the MRI: MRI re-order allowed, "
                 "spine referral asap", eval_day=100)
    s.steps = [[
        patient(s, "1983-04-16", "male"),
        condition(s, "radic", "M51.16", onset_day=0, recorded_day=3, side="left", level="L4/L5"),
        *failed_conservative_history(s, nrs_base=8, odi_base=50),
        nrs(s, 45, 7), odi(s, 45, 48),
        mri_done(s, 50), *motor_exam(s, 50),
        nrs(s, 80, 5), odi(s, 80, 34), *motor_exam(s, 80), *red_flag_screen(s, 80),
        nrs(s, 100, 5), odi(s, 100, 34),
        *motor_exam(s, 100, {("L5-EHL", "left"): 4}), *red_flag_screen(s, 100),
    ]]
    s.expect = expect(
        requests=[want("spine", "asap"), want("mri", "asap")],
        absent_requests=absent("ed"),
        tasks=["motor-reexamine"],
        absent_tasks=["red-flag-screen-due"],
        rules={"R1": "not-met", "R3": "not-met", "R4": "met"},
    )
    return s


def scenario_23() -> Scenario:
    s = Scenario(23, "esi-cap-reached", "Four lumbar ESIs in the last 12 months (previous, "
                 "resolved episode); current episode failed conservative care with concordant "
                 "MRI: ESI blocked (LCD cap); surgical referral offered", eval_day=62)
    prior = [
        condition(s, "radic-prior", "M51.16", onset_day=-340, recorded_day=-335, side="left",
                  level="L4/L5", clinical="resolved", abatement_day=-30),
        nrs(s, -335, 8),
        *(esi(s, d, level="L4/L5") for d in (-290, -230, -170, -100)),
        nrs(s, -105, 7), nrs(s, -75, 3), nrs(s, -30, 1),
    ]
    current = _failed_then_mri(s, "1982-06-06", "female", 60)
    s.steps = [[
        current[0], *prior, *current[1:],
        nrs(s, 60, 8), odi(s, 60, 50), *motor_exam(s, 60), *red_flag_screen(s, 60),
    ]]
    s.expect = expect(
        requests=[want("spine", "routine")],
        absent_requests=absent("pain-mgmt", "esi-tf", "esi-il", "mri", "mri-cpt"),
        absent_tasks=["collect-outcomes", "red-flag-screen-due"],
        rules={**NOT_ESCALATED, "R7": "met"},
    )
    return s


def scenario_24() -> Scenario:
    s = Scenario(24, "new-episode-after-resolved", "Previous episode (M51.16, onset D-600) "
                 "resolved D-400 after hemilaminectomy D-450; new M54.16 with onset today: new "
                 "episode, clocks reset, prior surgery kept", eval_day=0)
    s.steps = [[
        patient(s, "1980-12-12", "male"),
        condition(s, "radic-prior", "M51.16", onset_day=-600, recorded_day=-595, side="left",
                  level="L4/L5", clinical="resolved", abatement_day=-400),
        procedure(s, "hemilaminectomy", SURGERY, day=-450, side="left", level="L4/L5"),
        condition(s, "radic", "M54.16", onset_day=0, onset_hour=6, recorded_day=0,
                  recorded_hour=7, side="left"),
        nrs(s, 0, 6, hour=7), *motor_exam(s, 0, hour=7), *red_flag_screen(s, 0, hour=7),
    ]]
    s.expect = expect(
        requests=[want("pt", "routine")],
        absent_tasks=["red-flag-screen-due"],
        rules={**NOT_ESCALATED, "R5": "not-met", "R6": "met", "R7": "not-met"},
        episode={"onset": s.at(0, 6), "diagnoses": ["Condition/24-radic"]},
    )
    return s


SCENARIOS: list[Callable[[], Scenario]] = [
    scenario_01, scenario_02, scenario_03, scenario_04, scenario_05, scenario_06, scenario_07,
    scenario_08, scenario_09, scenario_10, scenario_11, scenario_12, scenario_13, scenario_14,
    scenario_15, scenario_16, scenario_17, scenario_18, scenario_19, scenario_20, scenario_21,
    scenario_22, scenario_23, scenario_24,
]

# ---------------------------------------------------------------------------------------------
# Writing and validation
# ---------------------------------------------------------------------------------------------


def case_document(s: Scenario) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "title": s.title,
        "scenario": s.nn,
        "patient": s.patient_id,
        "asOf": ASOF_TEXT,
        "evalDay": s.eval_day,
        "steps": [f"step-{k}.bundle.json" for k in range(1, len(s.steps) + 1)],
    }
    doc.update(s.case_extra)
    doc["expect"] = s.expect
    return doc


def dump(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_scenario(s: Scenario) -> list[Path]:
    folder = OUT / s.folder
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "case.json"]
    dump(written[0], case_document(s))
    for k, resources in enumerate(s.steps, start=1):
        path = folder / f"step-{k}.bundle.json"
        dump(path, bundle(s, k, resources))
        written.append(path)
    for name, data in s.extra_files.items():
        path = folder / name
        dump(path, data)
        written.append(path)
    # Remove inputs this version no longer produces (engine-written expected.*.json are kept).
    for stale in folder.glob("*.json"):
        if stale not in written and not stale.name.startswith("expected."):
            stale.unlink()
    return written


def validate(paths: Iterable[Path]) -> list[str]:
    """Every bundle must parse as an R4(B) Bundle, every resource as its own type."""
    from fhir.resources.R4B import get_fhir_model_class
    from fhir.resources.R4B.bundle import Bundle

    problems = []
    for path in paths:
        if path.name == "case.json":
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        try:
            if data["resourceType"] == "Bundle":
                Bundle.model_validate(data)
                for entry in data["entry"]:
                    res = entry["resource"]
                    get_fhir_model_class(res["resourceType"]).model_validate(res)
            else:
                get_fhir_model_class(data["resourceType"]).model_validate(data)
        except Exception as exc:  # noqa: BLE001 - report every invalid file, then fail
            problems.append(f"{path.relative_to(ROOT)}: {exc}")
    return problems


def main() -> int:
    written: list[Path] = []
    for build in SCENARIOS:
        s = build()
        written += write_scenario(s)
        print(f"{s.folder}: eval D{s.eval_day}, D0 = {s.at(0)}, {len(s.steps)} step(s)")
    problems = validate(written)
    for p in problems:
        print("INVALID", p, file=sys.stderr)
    print(f"{len(written)} files written, {len(problems)} invalid")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
