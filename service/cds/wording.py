"""Plain words for cards: what was ordered, evidence with dates and values, guideline sources.

Cards are read in seconds by a clinician in the middle of ordering: no resource ids, no pathway
concept names, no "PD" (product default) markers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from service.domain.evaluation import Evidence
from service.domain.facts import Coding
from service.fhir.normalize import codings
from service.rules.registry import Pathway

_SYSTEM_NAMES = {
    "http://www.ama-assn.org/go/cpt": "CPT",
    "http://loinc.org": "LOINC",
    "http://snomed.info/sct": "SNOMED CT",
    "http://hl7.org/fhir/sid/icd-10-cm": "ICD-10-CM",
    "http://hl7.org/fhir/sid/icd-10": "ICD-10",
}
_AFTERTHOUGHT = re.compile(r"\s*\((?:local finding|VS-[A-Z]+)\)$")
_PRODUCT_DEFAULT = re.compile(r"\bPD\b")
_UNITLESS = {"{score}", "1"}
_RULE_ID = re.compile(r"\bR\d+\b")


def day(moment: datetime) -> str:
    """A date as clinicians write it: 2 Mar 2026."""
    return f"{moment.day} {moment:%b %Y}"


def code_label(coding: Coding) -> str:
    """`CPT 72133`, `LOINC 30679-5`, or the code and its system for a local code."""
    name = _SYSTEM_NAMES.get(coding.system)
    return f"{name} {coding.code}" if name else f"code {coding.code} ({coding.system})"


def concept_name(pathway: Pathway, concept: str) -> str:
    """A concept's description without internal qualifiers ("(local finding)")."""
    found = pathway.definition.concepts.get(concept)
    return _AFTERTHOUGHT.sub("", found.description) if found else concept.replace("_", " ")


def cited(source: str) -> str:
    """A rule's guideline sources, without the product-default markers and internal references."""
    parts = [p.strip() for p in source.split(";")]
    return "; ".join(p for p in parts if p and not _PRODUCT_DEFAULT.search(p) and not p.startswith("Spec "))


def plain_reason(pathway: Pathway, reason: str) -> str:
    """A check's reason with rule ids replaced by what the rules are about."""
    titles = {r.id: r.title.split(":")[0].lower() for r in pathway.definition.rules}
    return _RULE_ID.sub(lambda m: titles.get(m.group(0), m.group(0)), reason)


def matched_coding(pathway: Pathway, resource: Mapping[str, Any], concept: str) -> Coding | None:
    """The first coding of a resource's `code` that belongs to `concept` (system + code)."""
    for coding in codings(resource.get("code")):
        if any(m.concept == concept for m in pathway.concepts.lookup(coding)):
            return coding
    return None


def pathway_display(pathway: Pathway, concept: str, coding: Coding) -> str | None:
    """The display the pathway file gives a code of a concept."""
    for ref in pathway.definition.concepts[concept].codes:
        if pathway.definition.coding(ref).key() == coding.key():
            return ref.display
    return None


def ordered(pathway: Pathway, resource: Mapping[str, Any], concept: str) -> tuple[str, str | None]:
    """What was ordered, in the order's own words (its `code.text`, else the display of its
    matching coding, else the pathway's display for that code), and the code it was ordered by."""
    code = resource.get("code") if isinstance(resource.get("code"), dict) else {}
    coding = matched_coding(pathway, resource, concept)
    text = code.get("text") or (coding.display if coding else None)
    if not text and coding:
        text = pathway_display(pathway, concept, coding)
    return text or "lumbar imaging", code_label(coding) if coding else None


def resource_name(resource: Mapping[str, Any] | None) -> str | None:
    """A resource's own name for what it records: `code.text`, else its first coding's display
    with the code."""
    if not resource or not isinstance(resource.get("code"), dict):
        return None
    found = codings(resource["code"])
    text = resource["code"].get("text") or next((c.display for c in found if c.display), None)
    if found and text:
        return f"{text} ({code_label(found[0])})"
    return text or (code_label(found[0]) if found else None)


def value_text(pathway: Pathway, concept: str | None, value: Any) -> str | None:
    """A value with its unit (`350 mL`, `44 %`), a score out of its maximum (`8/10`, `4/5`),
    or a finding's presence."""
    if value is None or isinstance(value, bool):
        return None if value is None else ("yes" if value else "no")
    found = pathway.definition.concepts.get(concept) if concept else None
    if isinstance(value, int | float) and found and found.measure:
        unit = next((u for u, f in found.measure.units.items() if f == 1 and u not in _UNITLESS), None)
        return f"{value:g} {unit}" if unit else f"{value:g}/{found.measure.range[1]:g}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def evidence_line(pathway: Pathway, evidence: Evidence, resources: Mapping[str, Mapping[str, Any]]) -> str:
    """One piece of evidence in plain words: what, value, date."""
    concept, _, rest = evidence.what.partition(" ")
    if concept in pathway.definition.concepts:
        label = concept_name(pathway, concept) + (f", {rest}" if rest else "")
        value = value_text(pathway, concept, evidence.value)
    else:
        label = resource_name(resources.get(evidence.ref)) or evidence.what
        value = value_text(pathway, None, evidence.value)
        if evidence.what == "proposed imaging":
            label, value = f"imaging proposed: {label}", None
    line = f"{label}: {value}" if value else label
    return line + (f" on {day(evidence.time)}" if evidence.time else "")
