"""The CDS services: discovery entries and one invocation (prefetch -> decide -> cards)."""

from __future__ import annotations

from dataclasses import dataclass

from service.bootstrap import Services
from service.cds import prefetch
from service.cds.cards import CardContext, order_cards, patient_view_cards
from service.cds.inputs import add_draft_orders, gather
from service.cds.models import CardsOut, DiscoveryOut, HookRequestIn, ServiceOut
from service.errors import MalformedBody, NotFound
from service.fhir.models import Issue
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
               "Warns when lumbar spine imaging (MRI, CT or radiographs, ordered by CPT, LOINC, SNOMED CT "
               "or a local code) is selected before 6 weeks of conservative care without red flags, "
               "and suggests a physiotherapy referral instead."),
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


async def invoke(services: Services, service: CdsService, request: HookRequestIn) -> CardsOut:
    """Run the pathway on the request's data and answer with cards."""
    if request.hook != service.hook:
        raise MalformedBody(f"service {service.id} answers the {service.hook} hook, not {request.hook}",
                            [Issue("hook", f"expected {service.hook}", "value")])
    inputs = await gather(services, request)
    if service.hook != "patient-view":
        add_draft_orders(services, request, inputs)
    pathway = services.pathway
    # The facts are remembered with the prefetch when the prefetch is all there is to read.
    memo = inputs.admitted if service.hook == "patient-view" and not inputs.stored_keys else None
    decision = decide(pathway, request.context.patientId, inputs.resources, services.clock(),
                      facts=memo.facts if memo else None)
    if memo is not None:
        memo.facts = decision.facts
    ctx = CardContext(pathway, request.hookInstance,
                      resources={f"{r['resourceType']}/{r.get('id')}": r for r in inputs.resources},
                      base_url=services.settings.base_url, stored_keys=inputs.stored_keys,
                      unavailable=inputs.unavailable, skipped=inputs.skipped)
    if service.hook == "patient-view":
        return CardsOut(cards=patient_view_cards(ctx, decision))
    return CardsOut(cards=order_cards(ctx, decision, inputs.drafts))
