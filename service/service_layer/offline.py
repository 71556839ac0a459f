"""Evaluate a Bundle without a server or database (`carepath evaluate`, replay, golden tests)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from service.fhir.bundles import bundle_entries
from service.fhir.models import INPUT_TYPES, validate_resource
from service.fhir.normalize import subject_id, value_issues
from service.rules.loader import load_pathways
from service.rules.registry import Pathway
from service.service_layer.decide import decide


def evaluate_resources(pathway: Pathway, resources: list[dict[str, Any]], now: datetime
                       ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Per patient: the decision summary and its outputs. Invalid inputs are reported, not used."""
    usable, rejected, warned = [], [], []
    for resource in resources:
        if resource.get("resourceType") not in INPUT_TYPES:
            continue
        found = validate_resource(resource) or value_issues(resource, pathway.concepts)
        issues = [i for i in found if i.refuses]
        named = {"resource": f"{resource.get('resourceType')}/{resource.get('id')}"}
        if issues:
            rejected.append({**named, "issues": [{"expression": i.expression, "message": i.message}
                                                 for i in issues]})
        else:  # 2a.12: valid R4 is used; a value the pathway cannot use is left out, with a warning
            usable.append(resource)
            if found:
                warned.append({**named, "issues": [{"expression": i.expression, "message": i.message,
                                                    "severity": i.severity} for i in found]})
    patients = dict.fromkeys(p for r in usable if (p := subject_id(r)))
    decisions = []
    for patient in patients:
        mine = [r for r in usable if subject_id(r) == patient]
        decision = decide(pathway, patient, mine, now)
        e = decision.evaluation
        decisions.append({
            "patient": patient,
            "pathway": f"{e.pathway_id}|{e.pathway_version}",
            "evaluatedAt": e.evaluated_at.isoformat(),
            "episode": {"id": e.episode.id, "onset": e.episode.onset.isoformat()} if e.episode else None,
            "urgency": e.plan.urgency.priority if e.plan.urgency else None,
            "rules": [{"rule": r.rule_id, "outcome": r.outcome.value, "reason": r.reason,
                       "priority": r.urgency.priority if r.urgency else None,
                       "evidence": [ev.ref for ev in r.evidence]} for r in e.results],
            "outputs": decision.outputs.resources(),
            "problems": list(e.problems),
        })
    return {"decisions": decisions, "rejected": rejected, "warnings": warned}, usable


def evaluate_bundle(bundle: dict[str, Any], pathways_dir: Path, now: datetime) -> dict[str, Any]:
    pathway = next(iter(load_pathways(pathways_dir).values()))
    _, entries = bundle_entries(bundle)
    entries = [e for e in entries if e.writes]
    return evaluate_resources(pathway, [e.resource for e in entries], now)[0]
