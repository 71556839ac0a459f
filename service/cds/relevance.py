"""Which prefetched resources the pathway can use, decided by their codes before validation.

An EHR's prefetch returns a patient's whole record (vital signs, labs, other problems); the
pathway reads only resources whose `code` is bound to one of its concepts. Validating the rest with
the FHIR models would cost most of a CDS call and change no decision, so they are left out here and
only the usable ones are validated (every guarantee of validation still holds for what the rules
read). A resource whose code cannot be read as system + code is kept, so that validation names
what is wrong with it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from service.fhir.normalize import codings
from service.rules.concepts import ConceptIndex

# The resource types the pathway reads only through a concept bound to their `code`.
_CODED = frozenset({"Observation", "Condition", "Procedure", "DiagnosticReport"})


def usable(resource: Any, indexes: Iterable[ConceptIndex]) -> bool:
    """False only when the resource's codes are readable and none belongs to a pathway concept."""
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str) \
            or resource["resourceType"] not in _CODED:
        return True  # validation names what is wrong with it
    try:
        coded = codings(resource.get("code"))
    except (TypeError, AttributeError, KeyError):
        return True
    if not coded or not all(isinstance(c.system, str) and isinstance(c.code, str) for c in coded):
        return True
    return any(index.lookup_any(coded) for index in indexes)
