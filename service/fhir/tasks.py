"""Read back our own open Tasks for the timing of tasks (when each was first raised)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from service.domain.tasks import TaskOnFile
from service.fhir.time import parse_datetime

OWN_KEY_PREFIX = "urn:lrp:"
CLOSED = frozenset({"cancelled", "completed", "failed", "entered-in-error", "rejected"})


def tasks_on_file(resources: Iterable[dict[str, Any]]) -> list[TaskOnFile]:
    """Our Tasks that are still open, by deterministic identifier, with their authoredOn."""
    found = []
    for resource in resources:
        if resource.get("resourceType") != "Task" or resource.get("status") in CLOSED:
            continue
        key = next((str(i["value"]) for i in resource.get("identifier", [])
                    if str(i.get("value", "")).startswith(OWN_KEY_PREFIX)), None)
        authored = parse_datetime(resource.get("authoredOn"))
        if key and authored:
            found.append(TaskOnFile(key, authored))
    return found
