"""Spec v1.1 section 2a, one test per gap found by testing against the spec (pure pipeline)."""

from __future__ import annotations

from typing import Any

from service.rules.registry import Pathway
from service.service_layer.decide import Decision, decide
from tests.conftest import AS_OF
from tests.unit.test_rules_edge_cases import (
    ICD,
    LOINC,
    LRP,
    SNOMED,
    at,
    dx,
    finding,
    outcome,
    requests,
    score,
    tasks,
)

BOTH = "51440002"
CPT = "http://www.ama-assn.org/go/cpt"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def run(pathway: Pathway, *resources: dict[str, Any]) -> Decision:
    return decide(pathway, "p", list(resources), AS_OF)


def bilateral(resource: dict[str, Any]) -> dict[str, Any]:
    return {**resource, "bodySite": {"coding": [{"system": SNOMED, "code": BOTH}]}}


def mrc(
    rid: str,
    grade: int,
    days_ago: float,
    side: str | None = None,
    muscle: str = "LRP-MRC-L3-KNEEEXT",
) -> dict[str, Any]:
    return score(rid, muscle, grade, days_ago, side, LRP)


def procedure(
    rid: str, system: str, code: str, days_ago: float, status: str = "completed", **extra: Any
) -> dict[str, Any]:
    return {
        "resourceType": "Procedure",
        "id": rid,
        "status": status,
        "subject": {"reference": "Patient/p"},
        "code": {"coding": [{"system": system, "code": code}]},
        "performedDateTime": at(days_ago),
        **extra,
    }


def medication(
    rid: str,
    code: str,
    days_ago: float,
    status: str = "active",
    kind: str = "MedicationRequest",
    system: str = RXNORM,
) -> dict[str, Any]:
    when = (
        {"authoredOn": at(days_ago)}
        if kind == "MedicationRequest"
        else {"effectiveDateTime": at(days_ago)}
    )
    return {
        "resourceType": kind,
        "id": rid,
        "status": status,
        **({"intent": "order"} if kind == "MedicationRequest" else {}),
        "medicationCodeableConcept": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": "Patient/p"},
        **when,
    }


def request_for(decision: Decision, code: str) -> dict[str, Any]:
    return next(
        r for r in decision.outputs.service_requests if r["code"]["coding"][0]["code"] == code
    )


def refs(request: dict[str, Any], element: str) -> set[str]:
    return {r["reference"] for r in request.get(element, [])}


def failed_conservative_care(days: int = 50) -> list[dict[str, Any]]:
    """An episode of `days` days: NRS 7 and ODI 40 at the start and 2 days ago (no improvement)."""
    percent = {"value": 40, "unit": "%", "code": "%"}
    return [
        dx("radic", "M54.32", days),
        score("nrs0", "72514-3", 7, days - 2),
        score("nrs1", "72514-3", 7, 2),
        score("odi0", "97909-6", percent, days - 2, key="valueQuantity"),
        score("odi1", "97909-6", percent, 2, key="valueQuantity"),
        finding("screen", "LRP-SADDLE", False, 2),
    ]


def flags(decision: Decision) -> tuple[str, ...]:
    return decision.evaluation.plan.flags


# --- 2a.6 bilateral -----------------------------------------------------------------------------


def test_an_mrc_3_recorded_right_and_left_is_a_bilateral_severe_deficit_and_fires_r1(
    pathway: Pathway,
) -> None:
    decision = run(pathway, dx("radic", "M54.16", 10), bilateral(mrc("m", 3, 1)))
    assert outcome(decision, "R1") == "met"
    assert requests(decision)["183866009"] == ("stat", "active")
    assert requests(decision)["30679-5"] == ("stat", "active")


def test_a_bilateral_mrc_4_is_not_severe_and_a_later_one_sided_exam_supersedes_it(
    pathway: Pathway,
) -> None:
    moderate = run(pathway, dx("radic", "M54.16", 10), bilateral(mrc("m", 4, 1)))
    assert outcome(moderate, "R1") == "not-met" and outcome(moderate, "R3") == "not-met"
    recovered = run(
        pathway, dx("radic", "M54.16", 10), bilateral(mrc("m", 3, 3)), mrc("r", 5, 1, "right")
    )
    assert "183866009" not in requests(
        recovered
    )  # right recovered: left-only severe, R3 handles it
    assert requests(recovered)["308482002"] == ("asap", "draft")


def test_a_bilateral_foot_drop_or_radicular_finding_counts_as_bilateral(pathway: Pathway) -> None:
    foot_drop = run(pathway, dx("radic", "M54.16", 10), bilateral(dx("fd", "M21.379", 2)))
    assert requests(foot_drop)["183866009"] == ("stat", "active")
    # an unsided foot drop with a one-sided severe grade is not bilateral: R3, not R1
    one_leg = run(
        pathway, dx("radic", "M54.16", 10), dx("fd", "M21.379", 2), mrc("m", 3, 1, "left")
    )
    assert "183866009" not in requests(one_leg)
    assert requests(one_leg)["308482002"] == ("asap", "draft")
    pain = run(pathway, bilateral(dx("radic", "M54.16", 5)))
    assert outcome(pain, "R1") == "met"
    assert requests(pain)["183866009"] == ("stat", "active")


def test_a_bilateral_deficit_older_than_14_days_and_stable_is_very_urgent_with_review(
    pathway: Pathway,
) -> None:
    """2a.4: one exam older than 14 days with no later worse exam is stable."""
    decision = run(pathway, dx("radic", "M54.16", 30), bilateral(mrc("m", 3, 20)))
    assert requests(decision)["183866009"] == ("asap", "active")
    assert "red-flag-review" in tasks(decision)


# --- 2a.4 new vs stable -------------------------------------------------------------------------


def test_a_severe_deficit_is_new_within_14_days_and_established_after(pathway: Pathway) -> None:
    new = run(pathway, dx("radic", "M54.16", 30), mrc("m", 3, 13, "left"))
    assert requests(new)["308482002"] == ("asap", "draft")
    stable = run(pathway, dx("radic", "M54.16", 30), mrc("m", 3, 15, "left"))
    assert requests(stable)["308482002"] == ("urgent", "draft")
    worse_later = run(
        pathway, dx("radic", "M54.16", 30), mrc("m", 4, 20, "left"), mrc("n", 3, 3, "left")
    )
    assert requests(worse_later)["308482002"] == ("asap", "draft")


# --- 2a.3 / 2a.10 red flags later negated, conflicting at one time -------------------------------


def test_a_recent_red_flag_negated_by_a_later_final_exam_names_both_dates(pathway: Pathway) -> None:
    decision = run(
        pathway,
        dx("radic", "M54.16", 30),
        finding("pos", "LRP-BLADDER", True, 5, "preliminary"),
        finding("neg", "LRP-BLADDER", False, 2),
    )
    assert requests(decision)["183866009"] == ("asap", "active")
    task = next(
        t
        for t in decision.outputs.tasks
        if t["code"]["coding"][0]["code"] == "red-flag-negated-review"
    )
    assert at(5)[:10] in task["description"] and at(2)[:10] in task["description"]
    assert {"Observation/pos", "Observation/neg"} <= refs(
        request_for(decision, "183866009"), "reasonReference"
    )


def test_present_and_absent_at_the_same_time_is_present_with_a_review_task(
    pathway: Pathway,
) -> None:
    decision = run(
        pathway,
        dx("radic", "M54.16", 30),
        finding("a", "LRP-SADDLE", False, 1),
        finding("b", "LRP-SADDLE", True, 1),
    )
    assert requests(decision)["183866009"] == ("stat", "active")
    assert "red-flag-conflict-review" in tasks(decision)
    single = run(pathway, dx("radic", "M54.16", 30), finding("b", "LRP-SADDLE", True, 1))
    assert "red-flag-conflict-review" not in tasks(single)


# --- 2a.8 episode clock -------------------------------------------------------------------------


def test_physiotherapy_from_an_earlier_resolved_episode_does_not_start_the_r7_clock(
    pathway: Pathway,
) -> None:
    old = [
        dx("old", "M51.16", 400, clinical="resolved") | {"abatementDateTime": at(200)},
        procedure("physio-old", SNOMED, "229064008", 300),
    ]
    new_episode = [
        dx("radic", "M54.16", 20),
        score("n0", "72514-3", 7, 19),
        score("n1", "72514-3", 7, 1),
        finding("screen", "LRP-SADDLE", False, 1),
    ]
    decision = run(pathway, *old, *new_episode)
    assert outcome(decision, "R7") == "not-met"  # 20 days of this episode's care, not 300
    assert "30679-5" not in requests(decision)
    assert requests(decision)["306170007"] == (
        "routine",
        "draft",
    )  # R6: physiotherapy not under way
    assert "Procedure/physio-old" not in refs(request_for(decision, "306170007"), "reasonReference")


# --- 2a.7 imaging already done ------------------------------------------------------------------


def test_a_lumbar_imaging_report_is_a_current_study_and_gives_concordance(pathway: Pathway) -> None:
    care = [*failed_conservative_care(), procedure("physio", SNOMED, "229064008", 45)]
    without = run(pathway, *care)
    assert requests(without)["30679-5"] == ("routine", "draft")
    report = {
        "resourceType": "DiagnosticReport",
        "id": "mri",
        "status": "final",
        "subject": {"reference": "Patient/p"},
        "effectiveDateTime": at(5),
        "code": {"coding": [{"system": LOINC, "code": "18748-4"}]},
        "conclusionCode": [{"coding": [{"system": ICD, "code": "M51.17"}]}],
    }
    decision = run(pathway, *care, report)
    assert "30679-5" not in requests(decision)  # R7 (a): current study, no second MRI
    assert requests(decision)["308482002"] == ("routine", "draft")  # R7 (b): concordant
    assert "DiagnosticReport/mri" in refs(request_for(decision, "308482002"), "supportingInfo")


def test_a_concordant_diagnosis_may_predate_the_mri_and_an_imaging_study_counts(
    pathway: Pathway,
) -> None:
    care = [
        *failed_conservative_care(),
        procedure("physio", SNOMED, "229064008", 45),
        dx("disc", "M51.17", 40),
    ]
    study = {
        "resourceType": "ImagingStudy",
        "id": "study",
        "status": "available",
        "subject": {"reference": "Patient/p"},
        "started": at(3),
        "procedureCode": [{"coding": [{"system": CPT, "code": "72148"}]}],
    }
    decision = run(pathway, *care, study)
    assert "30679-5" not in requests(decision)
    assert requests(decision)["308482002"] == ("routine", "draft")


# --- R7 conservative-care evidence: analgesia ---------------------------------------------------


def test_analgesia_is_conservative_care_evidence_but_gabapentin_is_not(pathway: Pathway) -> None:
    undocumented = run(pathway, *failed_conservative_care())
    assert "conservative-care-undocumented" in flags(undocumented)
    ibuprofen = run(pathway, *failed_conservative_care(), medication("ibu", "310965", 40))
    assert "conservative-care-undocumented" not in flags(ibuprofen)
    assert "MedicationRequest/ibu" in refs(request_for(ibuprofen, "30679-5"), "reasonReference")
    statement = run(
        pathway,
        *failed_conservative_care(),
        medication(
            "nap", "N02BE01", 40, "completed", "MedicationStatement", "http://www.whocc.no/atc"
        ),
    )
    assert "conservative-care-undocumented" not in flags(statement)
    for excluded in (
        medication("gaba", "25480", 40),  # gabapentin: not recommended care
        medication("ibu", "310965", 40, status="stopped"),
        medication("ibu", "310965", 40, status="entered-in-error"),
        medication("ibu", "310965", 60),
    ):  # before this episode
        assert "conservative-care-undocumented" in flags(
            run(pathway, *failed_conservative_care(), excluded)
        )


# --- 2a.9 reasonReference per rule --------------------------------------------------------------


def test_each_rule_cites_what_2a9_lists_as_the_reason(pathway: Pathway) -> None:
    start = run(pathway, dx("radic", "M54.16", 3), finding("s", "LRP-SADDLE", False, 1))
    assert refs(request_for(start, "306170007"), "reasonReference") == {"Condition/radic"}

    care = [*failed_conservative_care(), procedure("physio", SNOMED, "229064008", 45)]
    r7 = request_for(run(pathway, *care), "30679-5")
    assert refs(r7, "reasonReference") == {
        "Observation/nrs0",
        "Observation/nrs1",
        "Observation/odi0",
        "Observation/odi1",
        "Procedure/physio",
    }

    esi = procedure("esi", CPT, "64483", 25)
    r8 = request_for(
        run(
            pathway,
            dx("radic", "M54.16", 90),
            esi,
            score("pre", "72514-3", 8, 27),
            score("post", "72514-3", 7, 5),
        ),
        "308482002",
    )
    assert refs(r8, "reasonReference") == {"Procedure/esi", "Observation/pre", "Observation/post"}

    older = {"resourceType": "Patient", "id": "p", "birthDate": "1960-01-01"}
    r2 = request_for(run(pathway, older, dx("radic", "M54.16", 3)), "24972-2")
    assert "Patient/p" in refs(r2, "supportingInfo") and "Patient/p" not in refs(
        r2, "reasonReference"
    )


# --- 2a.11 asap counts as urgent: never auto-revoked --------------------------------------------


def test_an_asap_draft_is_kept_with_a_review_task_when_its_evidence_is_withdrawn(
    pathway: Pathway,
) -> None:
    radic, grade = dx("radic", "M54.16", 30), mrc("m", 3, 2, "left")
    first = run(pathway, radic, grade, finding("s", "LRP-SADDLE", False, 1))
    referral = request_for(first, "308482002")
    assert (referral["priority"], referral["status"]) == ("asap", "draft")
    later = run(
        pathway,
        radic,
        grade | {"status": "entered-in-error"},
        finding("s", "LRP-SADDLE", False, 1),
        *first.outputs.service_requests,
    )
    kept = referral["identifier"][0]["value"]
    assert kept in later.evaluation.plan.retained
    assert kept not in later.evaluation.plan.withdrawn
    assert "evidence-withdrawn-review" in tasks(later)
