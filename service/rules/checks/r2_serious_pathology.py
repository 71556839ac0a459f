"""R2. Other serious pathology (infection, malignancy, fracture) -> URGENT or VERY URGENT.

Clinical meaning: spinal infection (or fever >= 38.0 C with back pain, IV drug use,
immunosuppression), a cancer history or unexplained weight loss with new back pain, or a fracture
risk (lumbar fracture, significant trauma, osteoporosis, prolonged steroids, age > 50 with new
pain) needs urgent imaging as ACR recommends and a specialty referral; a concurrent severe motor
deficit or fever raises it to VERY URGENT. These inputs also exempt the patient from the R5 gate.
Source: NICE NG59 1.1.1; ACR Low Back Pain V6/V7 (2021). The input set is a product default.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from service.domain.evaluation import Action, Evidence, Outcome, RuleResult, Urgency
from service.domain.facts import PatientFacts
from service.rules.definition import Priority
from service.rules.registry import CheckContext, CheckParams, ConceptName, check
from service.rules.series import by_muscle_and_side, evidence_of, positive_findings


class SeriousPathologyParams(CheckParams):
    infection: list[ConceptName]
    fever_concept: ConceptName
    fever_at_least: float
    fever_within: timedelta
    malignancy_history: list[ConceptName]
    malignancy_signs: list[ConceptName]
    fracture: list[ConceptName]
    older_than_years: int
    new_pain_within: timedelta
    muscles: list[ConceptName]
    severe_at_or_below: float
    escalated_urgency: Priority


@check("serious_pathology", SeriousPathologyParams, {"infection", "malignancy", "fracture"})
def serious_pathology(ctx: CheckContext, p: SeriousPathologyParams) -> RuleResult:
    """Fire per pathology branch; urgency rises with a severe motor deficit or fever."""
    facts, now = ctx.facts, ctx.now
    new_pain = ctx.episode is not None and now - ctx.episode.onset <= p.new_pain_within
    fever = [evidence_of(m, "temperature (Cel)") for m in facts.measured(p.fever_concept)
             if m.value >= p.fever_at_least and now - m.time <= p.fever_within]
    branches: dict[str, list[Evidence]] = {}
    infection = _present(facts, p.infection) + (fever if ctx.episode else [])
    if infection:
        branches["infection"] = infection
    history = [evidence_of(d) for c in p.malignancy_history for d in facts.diagnosed(c)
               if not d.refuted]
    signs = _present(facts, p.malignancy_signs)
    if new_pain and (history or signs):
        branches["malignancy"] = history + signs
    fracture = _present(facts, p.fracture)
    age = _age(facts.birth_date, now) if new_pain else None  # only new pain asks (a date is a day-long window)
    if new_pain and age is not None and age > p.older_than_years:
        fracture.append(Evidence(f"Patient/{facts.patient_id}", "age (years) with new back pain",
                                 age, supporting=True))
    if fracture:
        branches["fracture"] = fracture
    if not branches:
        return RuleResult(ctx.rule.id, Outcome.NOT_MET,
                          "no infection, malignancy or fracture input on file")
    severe = [evidence_of(series[-1]) for series in by_muscle_and_side(facts, p.muscles).values()
              if series[-1].value <= p.severe_at_or_below]
    urgency = Urgency.from_priority(p.escalated_urgency) if (severe or fever) else (
        Urgency.from_priority(ctx.rule.urgency or "urgent"))
    evidence = tuple(e for found in branches.values() for e in found) + tuple(severe)
    why = " and ".join(sorted(branches))
    qualifier = " with severe motor deficit or fever" if urgency > Urgency.URGENT else ""
    return RuleResult(ctx.rule.id, Outcome.MET,
                      f"possible serious pathology ({why}){qualifier}: imaging per ACR and "
                      "specialty referral; exempt from the imaging gate",
                      urgency=urgency, evidence=evidence,
                      actions=tuple(Action(b, urgency) for b in sorted(branches)))


def _present(facts: PatientFacts, concepts: list[str]) -> list[Evidence]:
    found = [evidence_of(d) for c in concepts for d in facts.diagnosed(c) if d.active]
    found += [evidence_of(f) for c in concepts for f in positive_findings(facts, c)]
    return found


def _age(birth: date | None, now: datetime) -> int | None:
    if birth is None:
        return None
    today = now.date()
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))
