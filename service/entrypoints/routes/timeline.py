"""GET /patients/{id}/timeline: the clinician's page for API callers (bearer token). Clinicians in
the EHR open the same page through the SMART app (`/app/launch`, see `clinician_app`)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from service.entrypoints.api_docs import errors
from service.entrypoints.deps import CallerDep, ServicesDep
from service.entrypoints.views import render
from service.errors import NotFound
from service.fhir.ids import is_fhir_id
from service.service_layer import patient_view

router = APIRouter(tags=["Clinician"])


@router.get("/patients/{patient_id}/timeline", response_class=HTMLResponse,
            responses=errors(401, 404))
async def timeline(patient_id: str, services: ServicesDep, _: CallerDep) -> HTMLResponse:
    """The patient's page: proposals, open Tasks, one chart per measure, decisions explained."""
    if not is_fhir_id(patient_id):  # no such patient can be on file
        raise NotFound(f"no data on file for Patient/{patient_id[:64]}")
    view = await patient_view.load(services.engine, services.pathway, patient_id, services.clock())
    if view is None:
        raise NotFound(f"no data on file for Patient/{patient_id}")
    return HTMLResponse(render.patient_page(view), headers=render.headers())
