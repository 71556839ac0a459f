"""Evaluate a whole episode, from scratch, on every change (spec §2: never incrementally)."""

from __future__ import annotations

from datetime import datetime

from service.domain.evaluation import Outcome, PathwayEvaluation, RuleResult
from service.domain.facts import PatientFacts
from service.rules import checks as _checks  # noqa: F401  (registers the checks)
from service.rules.episode import current_episode
from service.rules.planner import build_plan
from service.rules.registry import CHECKS, CheckContext, Pathway


def evaluate(pathway: Pathway, facts: PatientFacts, now: datetime) -> PathwayEvaluation:
    """Run every rule in precedence order, then plan. A failing check is *indeterminate*, never false."""
    definition = pathway.definition
    episode = current_episode(facts)
    results: dict[str, RuleResult] = {}
    problems = list(facts.problems)
    for rule in definition.rules:
        context = CheckContext(rule, facts, episode, now, dict(results), definition)
        try:
            results[rule.id] = CHECKS[rule.check].run(context, pathway.params[rule.id])
        except Exception as exc:  # noqa: BLE001  (a rule bug must be visible, not a silent "not met")
            problems.append(f"rule {rule.id} could not be evaluated: {type(exc).__name__}: {exc}")
            results[rule.id] = RuleResult(rule.id, Outcome.INDETERMINATE,
                                          f"rule could not be evaluated ({type(exc).__name__})")
    ordered = list(results.values())
    return PathwayEvaluation(
        pathway_id=definition.id, pathway_version=definition.version, patient_id=facts.patient_id,
        evaluated_at=now, episode=episode, results=tuple(ordered),
        plan=build_plan(definition, facts, episode, ordered, now), problems=tuple(problems))
