"""The draft orders of an order-select or order-sign request.

EHRs need not give draft orders an `id`. Each draft ServiceRequest is identified by its `id`, else
by its Bundle entry's `fullUrl`, else by its position in `context.draftOrders`, so that none is
silently ignored; `action_ref` is how a suggestion's `delete` action names it (the relative
reference, or the `fullUrl` the EHR gave it in this transaction), and is absent when only the
position identifies it: no reference an EHR could apply exists then.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from service.errors import MalformedBody
from service.fhir.models import Issue

_BY_URL = re.compile(r"(?:^|/)ServiceRequest/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")
_UUID = re.compile(r"^urn:uuid:([0-9a-fA-F\-]{36})$")


@dataclass(frozen=True)
class DraftOrder:
    resource: dict[str, Any]  # as evaluated: with an id assigned when the EHR gave none
    where: str  # its place in the request, e.g. "context.draftOrders.entry[0]"
    position: int  # 1-based, as a clinician would count the orders
    action_ref: str | None
    selected: bool = True  # order-select: among `context.selections` (the orders just chosen)

    @property
    def ref(self) -> str:
        """How the evaluation cites it ("ServiceRequest/<id>")."""
        return f"ServiceRequest/{self.resource['id']}"


def read_draft_orders(bundle: Any, hook: str, patient_id: str,
                      selections: list[str] | None = None) -> list[DraftOrder]:
    """The draft ServiceRequests of `context.draftOrders`, each identified (medication, nutrition
    and vision orders are outside this pathway). A draft order without `subject` is the context
    patient's. On order-select, the orders named in `selections` are the ones just chosen (when
    none of them names a draft ServiceRequest, e.g. it has no id, all count as chosen)."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle" \
            or not isinstance(bundle.get("entry", []), list):
        raise MalformedBody(f"{hook} needs context.draftOrders as a FHIR Bundle",
                            [Issue("context.draftOrders", "a Bundle of draft orders is required", "required")])
    orders: list[DraftOrder] = []
    for i, entry in enumerate(bundle.get("entry") or []):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or resource.get("resourceType") != "ServiceRequest":
            continue
        full_url = entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else None
        rid, action_ref = _identity(resource.get("id"), full_url, i + 1)
        resource = {**resource, "id": rid}
        resource.setdefault("subject", {"reference": f"Patient/{patient_id}"})
        orders.append(DraftOrder(resource, f"context.draftOrders.entry[{i}]", i + 1, action_ref))
    chosen = set(selections or ()) if hook == "order-select" else set()
    if any({o.ref, o.action_ref} & chosen for o in orders):
        orders = [replace(o, selected=bool({o.ref, o.action_ref} & chosen)) for o in orders]
    return orders


def _identity(rid: Any, full_url: str | None, position: int) -> tuple[Any, str | None]:
    if rid is not None:  # kept as given: a malformed id is refused by validation, not replaced
        return rid, f"ServiceRequest/{rid}"
    if full_url:
        by_url = _BY_URL.search(full_url)
        if by_url:
            return by_url.group(1), f"ServiceRequest/{by_url.group(1)}"
        uuid = _UUID.match(full_url)
        return (uuid.group(1) if uuid else f"draft-order-{position}"), full_url
    return f"draft-order-{position}", None
