"""Normalise -> evaluate -> denormalise for one patient: the pipeline every entry point shares."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.domain.evaluation import PathwayEvaluation
from service.domain.facts import PatientFacts
from service.fhir.denormalize import Outputs, build_outputs
from service.fhir.normalize import to_facts
from service.fhir.tasks import tasks_on_file
from service.rules.horizon import assess
from service.rules.registry import Pathway


@dataclass(frozen=True)
class Decision:
    evaluation: PathwayEvaluation
    outputs: Outputs
    facts: PatientFacts


def decide(pathway: Pathway, patient_id: str, resources: Iterable[dict[str, Any]], now: datetime,
           tasks: Iterable[dict[str, Any]] = (), facts: PatientFacts | None = None) -> Decision:
    """Evaluate everything on file for a patient (inputs and this pathway's earlier outputs);
    `tasks` are our earlier Tasks, whose first-raised time sets their due time (spec 2a.1).
    `facts`, when the caller already read these very resources for this pathway, saves reading
    them again."""
    facts = facts if facts is not None else to_facts(patient_id, resources, pathway.concepts)
    evaluation = assess(pathway, facts, now, tasks_on_file(tasks))
    return Decision(evaluation, build_outputs(pathway.definition, evaluation), facts)
