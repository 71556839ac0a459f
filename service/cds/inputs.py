"""The data one CDS call decides on, gathered in one place.

For each prefetch key: what the EHR prefetched; else the same query fetched from its
`fhirServer`; else (no `fhirServer` given) what Carepath holds for the patient, received through
its FHIR API and webhooks. `412` only when none of these can supply it; supporting keys
(medications) that no source has are left out and the card says so. Prefetched and fetched
resources are validated as input is; the stored record was validated when it arrived. What was
made of a prefetch is remembered by its content (see `admitted`): a chart opened again is not
validated again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from service.adapters.store import Store
from service.bootstrap import Services
from service.cds import prefetch
from service.cds.admitted import Admitted, AdmittedPrefetches, Position
from service.cds.draft_orders import DraftOrder, read_draft_orders
from service.cds.models import HookRequestIn
from service.cds.relevance import usable
from service.errors import MalformedBody, PreconditionFailed
from service.fhir.models import INPUT_TYPES, Issue
from service.fhir.normalize import subject_id

_REMEMBERED = 256  # prefetches (patients' charts) whose verdicts are kept


@dataclass
class Inputs:
    resources: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    drafts: list[DraftOrder] = field(default_factory=list)
    stored_keys: list[str] = field(default_factory=list)  # keys answered from Carepath's own record
    unavailable: list[str] = field(default_factory=list)  # supporting keys no source could answer
    admitted: Admitted | None = None  # the verdicts on the prefetch (remembered by its content)


async def gather(services: Services, request: HookRequestIn) -> Inputs:
    """The patient's data for this call (see the module docstring for the order of sources)."""
    context = request.context.model_dump(exclude_none=True)
    patient_id = request.context.patientId
    values = dict(request.prefetch or {})
    missing = [key for key in prefetch.TEMPLATES if key not in values]
    inputs = Inputs()
    if missing and request.fhirServer:
        token = request.fhirAuthorization.access_token if request.fhirAuthorization else None
        for key in missing:
            query = prefetch.render(prefetch.TEMPLATES[key], context)
            try:
                values[key] = await prefetch.fetch(services.http, request.fhirServer, token, query)
            except prefetch.FetchFailed:
                if key not in prefetch.SUPPORTING:
                    raise
                inputs.unavailable.append(key)  # e.g. a server without MedicationStatement
    elif missing:
        stored = await _stored(services, patient_id)
        if stored:
            wanted = {prefetch.resource_type(key) for key in missing}
            inputs.resources += [r for r in stored if r["resourceType"] in wanted]
            inputs.stored_keys = missing
        elif set(missing) <= prefetch.SUPPORTING:
            inputs.unavailable = missing
        else:
            raise PreconditionFailed(
                f"prefetch {', '.join(missing)} missing, no fhirServer to fetch it from, and Carepath "
                "holds no data for this patient")
    contents = {key: prefetch.resources_of(values.get(key)) for key in prefetch.TEMPLATES}
    memory = _memory(services)
    digest = memory.digest(patient_id, [values.get(key) for key in prefetch.TEMPLATES])
    admitted = memory.get(digest) if digest is not None else None
    if admitted is None:
        admitted = _admit_all(services, contents, patient_id)
        if digest is not None:
            memory.add(digest, admitted)
    inputs.resources += [contents[key][i] for key, i in admitted.kept]
    inputs.skipped += admitted.skipped
    inputs.admitted = admitted
    return inputs


def _memory(services: Services) -> AdmittedPrefetches:
    memory = services.extras.get("cds_admitted")
    if memory is None:
        memory = services.extras["cds_admitted"] = AdmittedPrefetches(_REMEMBERED)
    return memory  # type: ignore[no-any-return]


def _admit_all(services: Services, contents: dict[str, list[Any]], patient_id: str) -> Admitted:
    """The prefetched resources the pathway can use and that validation accepts, and why the
    others it could use were refused."""
    concepts = [p.concepts for p in services.pathways.values()]
    kept: list[Position] = []
    skipped: list[str] = []
    for key, resources in contents.items():
        for i, resource in enumerate(resources):
            if isinstance(resource, dict) and isinstance(resource.get("resourceType"), str) \
                    and resource["resourceType"] not in INPUT_TYPES:
                continue  # a type this pathway version does not read (yet): not evidence
            if not usable(resource, concepts):
                continue  # coded outside every pathway concept: validating it changes nothing
            problem = _refusal(services, resource, f"prefetch.{key}[{i}]", patient_id)
            if problem:
                skipped.append(problem)
            else:
                kept.append((key, i))
    return Admitted(tuple(kept), tuple(skipped))


async def _stored(services: Services, patient_id: str) -> list[dict[str, Any]]:
    """The patient's inputs as Carepath holds them (with its own earlier requests, as an
    evaluation reads them)."""
    async with services.engine.connect() as conn:
        return await Store(conn).for_patient(patient_id, INPUT_TYPES)


def add_draft_orders(services: Services, request: HookRequestIn, inputs: Inputs) -> None:
    """The draft ServiceRequests become inputs (RequestOnFile facts); an invalid one is refused
    with the place it is at, never skipped."""
    patient_id = request.context.patientId
    context = request.context
    for draft in read_draft_orders(context.draftOrders, request.hook, patient_id, context.selections):
        services.ingestor.check(draft.resource, f"{draft.where}.resource.")
        if subject_id(draft.resource) != patient_id:
            where = f"{draft.where}.resource.subject"
            raise MalformedBody(f"{where} is not context.patientId",
                                [Issue(where, "a draft order must be for context.patientId", "value")])
        inputs.drafts.append(draft)
    # The draft is the current version of an order the EHR may also have prefetched.
    drafted = {d.ref for d in inputs.drafts}
    kept = [r for r in inputs.resources if f"{r.get('resourceType')}/{r.get('id')}" not in drafted]
    inputs.resources = kept + [d.resource for d in inputs.drafts]


def _refusal(services: Services, resource: Any, where: str, patient_id: str) -> str | None:
    """Why a prefetched resource cannot be used (None: it can)."""
    problems = services.ingestor.problems(resource, where + ".")
    if problems:
        return f"{problems[0].expression}: {problems[0].message}"
    if subject_id(resource) not in (None, patient_id):
        return f"{where}: belongs to another patient"
    return None
