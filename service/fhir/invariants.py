"""Native forms of the R4 invariants that fire on nearly every input resource.

Evaluating FHIRPath with fhirpathpy is most of the cost of validation (tens of µs per expression),
and a handful of invariants (ref-1 on every Reference, qty-3 on every Quantity, per-1, obs-6,
obs-7, con-4, con-5, ext-1; dom-2..dom-5 on every resource with contained resources) account for
almost all evaluations. Those made only of `name.exists()`/`name.empty()` terms joined by `or`
(qty-3, obs-6 and 44 more) share one native form (`existence`). Each native form here reads the
JSON the way fhirpathpy navigates it and answers only where that is certain: True (the invariant
holds, or fhirpathpy would not give the single result `false` that makes it an error), False (it
is violated), or None (undecided: the caller evaluates the FHIRPath with fhirpathpy). A native
form is used only while the definitions carry the very expression it was written for, and
tests/unit/test_native_invariants.py checks every answer against fhirpathpy over the real corpora
and mutations of them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fhirpathpy.models import models

Native = Callable[[dict[str, Any], str, dict[str, Any]], bool | None]
_MODEL = models["r4"]


def _some(value: Any) -> bool:
    """fhirpathpy's `util.is_some`: a member with this JSON value yields at least one node."""
    return value is not None and value != []


def _exists(node: dict[str, Any], name: str) -> bool:
    """`name.exists()` for a non-choice element (its `_name` sibling yields nodes too)."""
    return _some(node.get(name)) or _some(node.get("_" + name))


def _typed(node: dict[str, Any], path: str) -> str | None:
    """The path fhirpathpy types `node` by: its resourceType, when it has one (None when that is
    not a string), else the element path."""
    kind = node.get("resourceType", path) if "resourceType" in node else path
    return kind if isinstance(kind, str) else None


def _is_choice(path: str, name: str) -> bool:
    child = f"{path}.{name}"
    return bool(_MODEL["choiceTypePaths"].get(_MODEL["pathsDefinedElsewhere"].get(child, child)))


def _choice_exists(node: dict[str, Any], path: str, name: str) -> bool:
    """`name.exists()` for a choice element `path.name[x]`, as fhirpathpy resolves it: the first
    type (in its model's order) whose `nameType` or `_nameType` is not null is the only one read."""
    child = f"{path}.{name}"
    child = _MODEL["pathsDefinedElsewhere"].get(child, child)
    for code in _MODEL["choiceTypePaths"].get(child, ()):
        value, extra = node.get(name + code), node.get(f"_{name}{code}")
        if value is not None or extra is not None:
            return _some(value) or _some(extra)
    return False


def ref_1(node: dict[str, Any], _path: str, context: dict[str, Any]) -> bool | None:
    """reference.startsWith('#').not() or (reference.substring(1) in %rootResource.contained.id)"""
    if "_reference" in node:
        return None
    reference = node.get("reference")
    if reference is None:
        return True
    if not isinstance(reference, str):
        return None
    if not reference.startswith("#"):
        return True
    if reference == "#":
        return None
    contained = context["rootResource"].get("contained")
    if contained is None:
        return False
    if not isinstance(contained, list):
        return None
    ids = []
    for resource in contained:
        if not isinstance(resource, dict) or "_id" in resource or not isinstance(resource.get("id", ""), str):
            return None
        if "id" in resource:
            ids.append(resource["id"])
    return reference[1:] in ids


def obs_7(node: dict[str, Any], path: str, _context: dict[str, Any]) -> bool | None:
    """value.empty() or component.code.where(coding.intersect(%resource.code.coding).exists()).empty()"""
    typed = _typed(node, path)
    if typed is None:
        return None
    if not _exists(node, "component") or not _choice_exists(node, typed, "value"):
        return True
    return None


def ext_1(node: dict[str, Any], path: str, _context: dict[str, Any]) -> bool | None:
    """extension.exists() != value.exists()"""
    typed = _typed(node, path)
    return None if typed is None else _exists(node, "extension") != _choice_exists(node, typed, "value")


def per_1(node: dict[str, Any], _path: str, _context: dict[str, Any]) -> bool | None:
    """start.hasValue().not() or end.hasValue().not() or (start <= end)

    fhirpathpy compares two dateTime strings as text (so '2020-01-01T10:00:00+01:00' is after
    '2020-01-01T09:30:00Z'): so does this, as validation always has."""
    if "_start" in node or "_end" in node:
        return None
    start, end = node.get("start"), node.get("end")
    if start is None or end is None:
        return True
    if not isinstance(start, str) or not isinstance(end, str):
        return None
    return start <= end


def _codings(node: dict[str, Any], name: str) -> list[dict[str, Any]] | None:
    """The codings of CodeableConcept `name` when every one is plain JSON (system and code strings
    or absent, no `_` siblings); None otherwise."""
    concept = node.get(name)
    if concept is None and "_" + name not in node:
        return []
    if not isinstance(concept, dict) or "_" + name in node or "_coding" in concept:
        return None
    codings = concept.get("coding")
    if codings is None:
        return []
    if not isinstance(codings, list):
        return None
    for coding in codings:
        if not isinstance(coding, dict) or "_system" in coding or "_code" in coding or \
                not isinstance(coding.get("system", ""), str) or not isinstance(coding.get("code", ""), str):
            return None
    return codings


def con_4(node: dict[str, Any], path: str, _context: dict[str, Any]) -> bool | None:
    """abatement.empty() or clinicalStatus.coding.where(system='...condition-clinical' and
    (code='resolved' or code='remission' or code='inactive')).exists()"""
    typed = _typed(node, path)
    if typed is None:
        return None
    if not _choice_exists(node, typed, "abatement"):
        return True
    codings = _codings(node, "clinicalStatus")
    if codings is None:
        return None
    return any(c.get("system") == "http://terminology.hl7.org/CodeSystem/condition-clinical"
               and c.get("code") in ("resolved", "remission", "inactive") for c in codings)


def con_5(node: dict[str, Any], _path: str, _context: dict[str, Any]) -> bool | None:
    """verificationStatus.coding.where(system='...condition-ver-status' and code='entered-in-error')
    .empty() or clinicalStatus.empty()"""
    if not _exists(node, "clinicalStatus"):
        return True
    codings = _codings(node, "verificationStatus")
    if codings is None:
        return None
    return not any(c.get("system") == "http://terminology.hl7.org/CodeSystem/condition-ver-status"
                   and c.get("code") == "entered-in-error" for c in codings)


def _contained(node: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The contained resources when they are a plain JSON array of objects; None otherwise."""
    contained = node.get("contained")
    if "_contained" in node or not isinstance(contained, list | None):
        return None
    if contained is None:
        return []
    return contained if all(isinstance(c, dict) for c in contained) else None


def _metas(node: dict[str, Any]) -> list[dict[str, Any]] | None:
    """`contained.meta` when every one is a plain JSON object; None otherwise."""
    contained = _contained(node)
    if contained is None or any("_meta" in c or not isinstance(c.get("meta", {}), dict) for c in contained):
        return None
    return [c["meta"] for c in contained if "meta" in c]


def dom_2(node: dict[str, Any], _path: str, _context: dict[str, Any]) -> bool | None:
    """contained.contained.empty()"""
    contained = _contained(node)
    return None if contained is None else not any(_exists(c, "contained") for c in contained)


def dom_3(node: dict[str, Any], _path: str, context: dict[str, Any]) -> bool | None:
    """contained.where((('#'+id in (%resource.descendants().reference | %resource.descendants().as(canonical)
    | ...)) or ...).not()).trace('unmatched', id).empty()

    Not enforced, as validation never has: for every contained resource fhirpathpy evaluates
    `%resource.descendants().as(canonical)`, and its as() refuses a collection of more than one
    item (ValueError), which the descendants of a resource (its resourceType and what it contains)
    always are. Where it would evaluate it (some contained resource, a %resource with two
    children or more) this answers True; the differential test keeps that true of the installed
    fhirpathpy."""
    if not _exists(node, "contained"):
        return True  # where() over nothing: empty, so .empty() is true
    resource = context["resource"]
    if not isinstance(resource, dict):
        return None
    children = sum(len(value) if isinstance(value, list) else 1 for value in resource.values())
    return True if children >= 2 else None


def dom_4(node: dict[str, Any], _path: str, _context: dict[str, Any]) -> bool | None:
    """contained.meta.versionId.empty() and contained.meta.lastUpdated.empty()"""
    metas = _metas(node)
    return None if metas is None else not any(_exists(m, "versionId") or _exists(m, "lastUpdated") for m in metas)


def dom_5(node: dict[str, Any], _path: str, _context: dict[str, Any]) -> bool | None:
    """contained.meta.security.empty()"""
    metas = _metas(node)
    return None if metas is None else not any(_exists(m, "security") for m in metas)


NATIVE: dict[str, tuple[str, Native]] = {  # invariant key -> (the expression it implements, native form)
    "ref-1": ("reference.startsWith('#').not() or (reference.substring(1).trace('url') in "
              "%rootResource.contained.id.trace('ids'))", ref_1),
    "obs-7": ("value.empty() or component.code.where(coding.intersect(%resource.code.coding).exists()).empty()",
              obs_7),
    "ext-1": ("extension.exists() != value.exists()", ext_1),
    "per-1": ("start.hasValue().not() or end.hasValue().not() or (start <= end)", per_1),
    "con-4": ("abatement.empty() or clinicalStatus.coding.where(system='http://terminology.hl7.org/CodeSystem/"
              "condition-clinical' and (code='resolved' or code='remission' or code='inactive')).exists()", con_4),
    "con-5": ("verificationStatus.coding.where(system='http://terminology.hl7.org/CodeSystem/condition-ver-status' "
              "and code='entered-in-error').empty() or clinicalStatus.empty()", con_5),
    "dom-2": ("contained.contained.empty()", dom_2),
    "dom-3": ("contained.where((('#'+id in (%resource.descendants().reference | "
              "%resource.descendants().as(canonical) | %resource.descendants().as(uri) | "
              "%resource.descendants().as(url))) or descendants().where(reference = '#').exists() or "
              "descendants().where(as(canonical) = '#').exists() or descendants().where(as(canonical) = '#')"
              ".exists()).not()).trace('unmatched', id).empty()", dom_3),
    "dom-4": ("contained.meta.versionId.empty() and contained.meta.lastUpdated.empty()", dom_4),
    "dom-5": ("contained.meta.security.empty()", dom_5),
}


_TERM = r"([a-z][A-Za-z0-9]*)\.(exists|empty)\(\)"
_EXISTENCE = re.compile(rf"{_TERM}(?: or {_TERM})*")


def existence(expression: str) -> Native | None:
    """The native form of an invariant that is only `name.exists()` / `name.empty()` terms joined by
    `or` (46 of R4's, e.g. qty-3 `code.empty() or system.exists()`, obs-6, cpt-2, pat-1, obs-3):
    each term is one boolean, so the result is whether any term is true."""
    if not _EXISTENCE.fullmatch(expression):
        return None
    terms = [(name, how == "exists") for name, how in re.findall(_TERM, expression)]

    def holds(node: dict[str, Any], path: str, _context: dict[str, Any]) -> bool | None:
        typed = _typed(node, path)
        if typed is None:
            return None
        return any((_choice_exists(node, typed, name) if _is_choice(typed, name) else _exists(node, name)) == exists
                   for name, exists in terms)

    return holds


def native(key: str, expression: str) -> Native | None:
    """The native form of invariant `key`, if there is one for exactly this expression."""
    found = NATIVE.get(key)
    return found[1] if found is not None and found[0] == expression else existence(expression)
