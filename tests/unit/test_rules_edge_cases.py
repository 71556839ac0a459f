"""Edge cases of the rules beyond the spec's 24 scenarios, on the pure pipeline (no database)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from service.rules.registry import Pathway
from service.service_layer.decide import Decision, decide
from tests.conftest import AS_OF

ICD, LRP, SNOMED, LOINC = ("http://hl7.org/fhir/sid/icd-10-cm", "http://example.org/CodeSystem/lrp-exam",
                           "http://snomed.info/sct", "http://loinc.org")
SIDES = {"left": "7771000", "right": "24028007"}


def at(day_offset: float) -> str:
    return (AS_OF - timedelta(days=day_offset)).strftime("%Y-%m-%dT%H:%M:%SZ")


def dx(rid: str, code: str, days_ago: float, system: str = ICD, verification: str = "confirmed",
       clinical: str = "active") -> dict[str, Any]:
    return {"resourceType": "Condition", "id": rid, "subject": {"reference": "Patient/p"},
            "clinicalStatus": {"coding": [{"system": "x", "code": clinical}]},
            "verificationStatus": {"coding": [{"system": "x", "code": verification}]},
            "code": {"coding": [{"system": system, "code": code}]}, "onsetDateTime": at(days_ago)}


def finding(rid: str, code: str, present: bool, days_ago: float, status: str = "final") -> dict[str, Any]:
    return {"resourceType": "Observation", "id": rid, "status": status, "subject": {"reference": "Patient/p"},
            "code": {"coding": [{"system": LRP, "code": code}]}, "effectiveDateTime": at(days_ago),
            "valueCodeableConcept": {"coding": [{"system": SNOMED, "code": "52101004" if present else "2667000"}]}}


def score(rid: str, code: str, value: Any, days_ago: float, side: str | None = None,
          system: str = LOINC, key: str = "valueInteger") -> dict[str, Any]:
    obs = {"resourceType": "Observation", "id": rid, "status": "final", "subject": {"reference": "Patient/p"},
           "code": {"coding": [{"system": system, "code": code}]}, "effectiveDateTime": at(days_ago), key: value}
    if side:
        obs["bodySite"] = {"coding": [{"system": SNOMED, "code": SIDES[side]}]}
    return obs


def run(pathway: Pathway, *resources: dict[str, Any]) -> Decision:
    return decide(pathway, "p", list(resources), AS_OF)


def outcome(decision: Decision, rule: str) -> str:
    result = decision.evaluation.result(rule)
    assert result is not None
    return result.outcome.value


def requests(decision: Decision) -> dict[str, tuple[str, str]]:
    return {r["code"]["coding"][0]["code"]: (r["priority"], r["status"]) for r in decision.outputs.service_requests}


def tasks(decision: Decision) -> set[str]:
    return {t["code"]["coding"][0]["code"] for t in decision.outputs.tasks}


RADIC = dx("radic", "M54.16", 30)


def test_old_stable_red_flag_is_very_urgent_with_review_never_routine(pathway: Pathway) -> None:
    decision = run(pathway, RADIC, finding("saddle", "LRP-SADDLE", True, 20))
    assert requests(decision)["183866009"] == ("asap", "active")
    assert "red-flag-review" in tasks(decision)


def test_conflicting_findings_at_the_same_time_count_as_present(pathway: Pathway) -> None:
    decision = run(pathway, RADIC, finding("a", "LRP-BLADDER", True, 1), finding("b", "LRP-BLADDER", False, 1))
    assert requests(decision)["183866009"] == ("stat", "active")


def test_a_later_final_negative_downgrades_to_very_urgent_but_a_preliminary_one_does_not(
        pathway: Pathway) -> None:
    """Spec 2a.3: a recent red flag later documented absent still fires, at asap, with a task."""
    positive = finding("a", "LRP-SADDLE", True, 3)
    negated = run(pathway, RADIC, positive, finding("b", "LRP-SADDLE", False, 1))
    assert requests(negated)["183866009"] == ("asap", "active")
    assert "red-flag-negated-review" in tasks(negated)
    still = run(pathway, RADIC, positive, finding("b", "LRP-SADDLE", False, 1, status="preliminary"))
    assert requests(still)["183866009"] == ("stat", "active")
    assert "red-flag-negated-review" not in tasks(still)


def test_a_red_flag_older_than_14_days_and_since_negated_fires_nothing(pathway: Pathway) -> None:
    decision = run(pathway, RADIC, finding("a", "LRP-SADDLE", True, 20),
                   finding("b", "LRP-SADDLE", False, 18))
    assert outcome(decision, "R1") == "not-met"
    assert "183866009" not in requests(decision)


def test_sexual_dysfunction_alone_raises_review_not_emergency(pathway: Pathway) -> None:
    decision = run(pathway, RADIC, finding("s", "LRP-SEXUAL", True, 1))
    assert outcome(decision, "R1") == "not-met"
    assert "183866009" not in requests(decision)
    assert "red-flag-review" in tasks(decision)


def test_suspected_cauda_equina_diagnosis_triggers_but_refuted_does_not(pathway: Pathway) -> None:
    suspected = run(pathway, RADIC, dx("ces", "G83.4", 1, verification="provisional"))
    assert requests(suspected)["183866009"] == ("stat", "active")
    refuted = run(pathway, RADIC, dx("ces", "G83.4", 1, verification="refuted"))
    assert outcome(refuted, "R1") == "not-met"


def test_an_earlier_stat_request_is_never_downgraded(pathway: Pathway) -> None:
    first = run(pathway, RADIC, finding("saddle", "LRP-SADDLE", True, 1))
    emergency = next(r for r in first.outputs.service_requests if r["code"]["coding"][0]["code"] == "183866009")
    later = decide(pathway, "p", [RADIC, finding("saddle", "LRP-SADDLE", True, 20), emergency], AS_OF)
    assert requests(later)["183866009"] == ("stat", "active")


def test_mrc_with_modifier_counts_as_the_grade(pathway: Pathway) -> None:
    decision = run(pathway, RADIC, score("m1", "LRP-MRC-L4-ANKLEDF", "3+", 2, "left", LRP, "valueString"))
    assert outcome(decision, "R3") == "met"
    assert requests(decision)["308482002"] == ("asap", "draft")


def test_motor_grades_are_not_compared_across_sides(pathway: Pathway) -> None:
    decision = run(pathway, RADIC, score("r", "LRP-MRC-L5-EHL", 5, 10, "right", LRP),
                   score("l", "LRP-MRC-L5-EHL", 4, 2, "left", LRP))
    assert outcome(decision, "R4") == "not-met"


def test_a_reflex_newly_absent_is_progression(pathway: Pathway) -> None:
    decision = run(pathway, RADIC, score("a", "LRP-REFLEX-ANKLE", 2, 10, "left", LRP),
                   score("b", "LRP-REFLEX-ANKLE", 0, 1, "left", LRP))
    assert outcome(decision, "R4") == "met"


def test_pain_worse_after_injection_is_a_failed_injection(pathway: Pathway) -> None:
    injection = {"resourceType": "Procedure", "id": "esi", "status": "completed", "subject": {"reference": "Patient/p"},
                 "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "64483"}]},
                 "performedDateTime": at(25)}
    decision = run(pathway, dx("radic", "M54.16", 90), injection, score("pre", "72514-3", 6, 27),
                   score("post", "72514-3", 8, 5))
    assert outcome(decision, "R8") == "met"
    assert requests(decision)["308482002"] == ("routine", "draft")


def test_an_entered_in_error_diagnosis_anchors_no_episode(pathway: Pathway) -> None:
    decision = run(pathway, dx("radic", "M54.16", 5, verification="entered-in-error"))
    assert decision.evaluation.episode is None and decision.outputs.careplan is None


def test_a_recurrence_restarts_the_episode_clock(pathway: Pathway) -> None:
    decision = run(pathway, dx("old", "M54.16", 300), dx("new", "M54.17", 3, clinical="recurrence"))
    episode = decision.evaluation.episode
    assert episode is not None and episode.id == "new"


def test_no_red_flag_screen_in_14_days_asks_for_one(pathway: Pathway) -> None:
    decision = run(pathway, RADIC, finding("old", "LRP-SADDLE", False, 20))
    assert "red-flag-screen-due" in tasks(decision)


def test_age_over_50_with_new_pain_is_a_fracture_risk_input(pathway: Pathway) -> None:
    older = {"resourceType": "Patient", "id": "p", "birthDate": "1960-01-01"}
    decision = run(pathway, older, RADIC)
    assert outcome(decision, "R2") == "met"
    assert requests(decision)["24972-2"] == ("urgent", "draft")
