"""Literal references inside a resource: find them, and rewrite those that name our own outputs.

Write-back replaces Carepath's local ids (`ServiceRequest/sr-...`, `Device/carepath`) with the
server's (`ServiceRequest/{server id}`) or with a transaction Bundle's `urn:uuid:` placeholders;
references to the EHR's own resources (`Patient/...`, evidence) are left as they are.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any


def literal_references(value: Any) -> Iterator[str]:
    """Every `Reference.reference` string in a resource (contained `#id` references included)."""
    if isinstance(value, dict):
        ref = value.get("reference")
        if isinstance(ref, str):
            yield ref
        for item in value.values():
            yield from literal_references(item)
    elif isinstance(value, list):
        for item in value:
            yield from literal_references(item)


def rewrite_references(value: Any, mapping: Mapping[str, str]) -> Any:
    """A copy of `value` where each `reference` found in `mapping` (as `Type/id`) is replaced."""
    if isinstance(value, dict):
        out = {k: rewrite_references(v, mapping) for k, v in value.items()}
        ref = value.get("reference")
        if isinstance(ref, str) and ref in mapping:
            out["reference"] = mapping[ref]
        return out
    if isinstance(value, list):
        return [rewrite_references(item, mapping) for item in value]
    return value
