"""The CDS services: discovery entries and one invocation (prefetch -> decide -> cards)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from service.bootstrap import Services
from service.cds import prefetch
from service.cds.relevance import usable
from service.cds.cards import order_cards, patient_view_cards
from service.cds.models import CardsOut, DiscoveryOut, HookRequestIn, ServiceOut
from service.errors import MalformedBody, NotFound, PreconditionFailed
from service.fhir.models import Issue
from service.fhir.normalize import subject_id
from service.service_layer.decide import decide


@dataclass(frozen=True)
class CdsService:
    id: str
    hook: str
    title: str
    description: str


SERVICES = {s.id: s for s in (
    CdsService("carepath-patient-view", "patient-view", "Lumbar radiculopathy pathway status",
               "Where this patient is on the lumbar radiculopathy pathway: red flags, escalations, "
               "conservative care, imaging and intervention steps, each explained by its evidence."),
    CdsService("carepath-imaging-order-select", "order-select", "Lumbar imaging appropriateness",
               "Warns when a lumbar MRI/CT is selected before 6 weeks of conservative care without red "
               "flags, and suggests a physiotherapy referral instead."),
    CdsService("carepath-imaging-order-sign", "order-sign", "Lumbar imaging appropriateness (sign)",
               "The imaging-appropriateness check at signing time."),
)}


def discovery() -> DiscoveryOut:
    return DiscoveryOut(services=[ServiceOut(hook=s.hook, id=s.id, title=s.title, description=s.description,
                                             prefetch=dict(prefetch.TEMPLATES)) for s in SERVICES.values()])


def service_named(service_id: str) -> CdsService:
    service = SERVICES.get(service_id)
    if service is None:
        raise NotFound(f"no CDS service {service_id!r}; see GET /cds-services")
    return service


@dataclass
class Inputs:
    resources: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    draft_refs: list[str] = field(default_factory=list)


async def gather(services: Services, request: HookRequestIn) -> Inputs:
    """Prefetched data, or the same fetched from `fhirServer`; 412 when neither is possible."""
    context = request.context.model_dump(exclude_none=True)
    given = request.prefetch or {}
    missing = [key for key in prefetch.TEMPLATES if key not in given]
    if missing and not request.fhirServer:
        raise PreconditionFailed(f"prefetch {', '.join(missing)} missing and no fhirServer to fetch it from")
    values = dict(given)
    token = request.fhirAuthorization.access_token if request.fhirAuthorization else None
    for key in missing:
        values[key] = await prefetch.fetch(services.http, request.fhirServer or "", token,
                                           prefetch.render(prefetch.TEMPLATES[key], context))
    inputs = Inputs()
    patient_id = request.context.patientId
    concepts = [p.concepts for p in services.pathways.values()]
    for key in prefetch.TEMPLATES:
        for i, resource in enumerate(prefetch.resources_of(values.get(key))):
            if usable(resource, concepts):
                _admit(services, inputs, resource, f"prefetch.{key}[{i}]", patient_id)
    return inputs


def add_draft_orders(services: Services, request: HookRequestIn, inputs: Inputs) -> None:
    """The draft ServiceRequests in `context.draftOrders` become inputs (RequestOnFile facts)."""
    bundle = request.context.draftOrders
    if not bundle or bundle.get("resourceType") != "Bundle" or not isinstance(bundle.get("entry", []), list):
        raise MalformedBody(f"{request.hook} needs context.draftOrders as a FHIR Bundle",
                            [Issue("context.draftOrders", "a Bundle of draft orders is required", "required")])
    for i, entry in enumerate(bundle.get("entry") or []):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or resource.get("resourceType") != "ServiceRequest":
            continue  # medication, nutrition and vision orders are outside this pathway
        if _admit(services, inputs, resource, f"context.draftOrders.entry[{i}]", request.context.patientId):
            inputs.draft_refs.append(f"ServiceRequest/{resource.get('id')}")


def _admit(services: Services, inputs: Inputs, resource: Any, where: str, patient_id: str) -> bool:
    problems = services.ingestor.problems(resource, where + ".")
    if problems:
        inputs.skipped.append(f"{problems[0].expression}: {problems[0].message}")
        return False
    owner = subject_id(resource)
    if owner not in (None, patient_id):
        inputs.skipped.append(f"{where}: belongs to Patient/{owner}, not Patient/{patient_id}")
        return False
    inputs.resources.append(resource)
    return True


async def invoke(services: Services, service: CdsService, request: HookRequestIn) -> CardsOut:
    """Run the pathway on the request's data and answer with cards."""
    if request.hook != service.hook:
        raise MalformedBody(f"service {service.id} answers the {service.hook} hook, not {request.hook}",
                            [Issue("hook", f"expected {service.hook}", "value")])
    inputs = await gather(services, request)
    if service.hook != "patient-view":
        add_draft_orders(services, request, inputs)
    pathway = services.pathway
    decision = decide(pathway, request.context.patientId, inputs.resources, services.clock())
    if service.hook == "patient-view":
        cards = patient_view_cards(pathway.definition, decision, request.hookInstance, inputs.skipped)
    else:
        cards = order_cards(pathway.definition, decision, request.hookInstance, inputs.draft_refs,
                            inputs.skipped)
    return CardsOut(cards=cards)
