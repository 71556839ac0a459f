"""Normalise -> evaluate -> denormalise for one patient: the pipeline every entry point shares."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.domain.evaluation import PathwayEvaluation
from service.fhir.denormalize import Outputs, build_outputs
from service.fhir.normalize import to_facts
from service.rules.evaluator import evaluate
from service.rules.registry import Pathway


@dataclass(frozen=True)
class Decision:
    evaluation: PathwayEvaluation
    outputs: Outputs


def decide(pathway: Pathway, patient_id: str, resources: Iterable[dict[str, Any]], now: datetime) -> Decision:
    """Evaluate everything on file for a patient (inputs and this pathway's earlier outputs)."""
    facts = to_facts(patient_id, resources, pathway.concepts)
    evaluation = evaluate(pathway, facts, now)
    return Decision(evaluation, build_outputs(pathway.definition, evaluation))
