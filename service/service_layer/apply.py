"""PlanDefinition/$apply: evaluate a patient's stored data now and return the CarePlan, with the
requests and tasks contained (R4 $apply convention). Nothing is stored or written back."""

from __future__ import annotations

from typing import Any

from service.adapters.store import Store
from service.bootstrap import Services
from service.errors import NotFound
from service.fhir.models import INPUT_TYPES
from service.rules.registry import Pathway
from service.service_layer.decide import decide


async def apply_pathway(services: Services, pathway: Pathway, patient_id: str) -> dict[str, Any]:
    async with services.engine.connect() as conn:
        on_file = await Store(conn).for_patient(patient_id, INPUT_TYPES | {"Task"})
    inputs = [r for r in on_file if r["resourceType"] in INPUT_TYPES]
    if not inputs:
        raise NotFound(f"no data on file for Patient/{patient_id}")
    tasks = [r for r in on_file if r["resourceType"] == "Task"]  # when each was first raised
    outputs = decide(pathway, patient_id, inputs, services.clock(), tasks).outputs
    careplan = outputs.careplan or {
        "resourceType": "CarePlan", "status": "draft", "intent": "proposal",
        "subject": {"reference": f"Patient/{patient_id}"},
        "instantiatesCanonical": [pathway.definition.canonical],
        "note": [{"text": "pathway not applicable: no active radicular diagnosis and no red flag"}]}
    contained = outputs.service_requests + outputs.tasks
    local = {f"{r['resourceType']}/{r['id']}": f"#{r['id']}" for r in contained}
    result = {k: v for k, v in careplan.items() if k != "id"}
    result["contained"] = [{k: v for k, v in r.items() if k != "meta"} for r in contained] or None
    result["activity"] = [
        {**a, "reference": {**a["reference"], "reference": local.get(a["reference"]["reference"],
                                                                     a["reference"]["reference"])}}
        if "reference" in a else a for a in careplan.get("activity", [])] or None
    return {k: v for k, v in result.items() if v is not None}
