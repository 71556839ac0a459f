"""Valid requests with one value swapped for another JSON type (null, array, object, number,
huge number, string with NUL, long string), at every position, on every body-taking route that
parses FHIR or CDS Hooks JSON, authenticated: each answer is 2xx or 4xx, never 5xx. This reaches
the parsers deeper than schema-driven fuzzing, whose bodies are rarely valid enough to get there."""

from __future__ import annotations

import copy
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.cds.support import draft_order, hook_request, prefetch_of, scenario
from tests.conftest import FIXTURES, TOKEN
from tests.fuzz.support import KEY, fuzz_settings, report, write_jwks
from tests.webhooks.support import bearer, medplum_headers, notification, standard_headers

BASE = "http://carepath.test"
ODD: list[Any] = [None, [], {}, 7, 10**30, 1.5, True, "x\x00y", "a" * 300, [1], {"a": None}]


def _positions(value: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield at
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _positions(child, (*at, key))
    elif isinstance(value, list) and value:
        yield from _positions(value[0], (*at, 0))  # the first item stands for the others


def _swapped(value: Any, at: tuple[Any, ...], new: Any) -> Any:
    if not at:
        return new
    value = copy.deepcopy(value)
    parent = value
    for step in at[:-1]:
        parent = parent[step]
    parent[at[-1]] = new
    return value


def _requests() -> list[tuple[str, dict[str, Any], str]]:
    bundle = json.loads((FIXTURES / "03-urinary-retention" / "step-1.bundle.json").read_text())
    first = {e["resource"]["resourceType"]: e["resource"] for e in bundle["entry"]}
    observation, condition = first["Observation"], first["Condition"]
    groups = scenario("03-urinary-retention", "lrp-03")
    prefetch = prefetch_of({k: v[:1] for k, v in groups.items()})
    mri = draft_order("mri-1", "lrp-03", "http://loinc.org", "30679-5", "MR Lumbar spine")
    return [
        ("/fhir/Observation", observation, "api"),
        ("/fhir/Condition", condition, "api"),
        ("/fhir", {"resourceType": "Bundle", "type": "batch", "entry": bundle["entry"][:2]}, "api"),
        ("/fhir/PlanDefinition/lumbar-radiculopathy/$apply", {"resourceType": "Parameters",
         "parameter": [{"name": "subject", "valueReference": {"reference": "Patient/lrp-03"}}]},
         "api"),
        ("/cds-services/carepath-patient-view", hook_request("patient-view", "lrp-03",
                                                             prefetch=prefetch), "cds"),
        ("/cds-services/carepath-imaging-order-select", hook_request(
            "order-select", "lrp-03", prefetch=prefetch, draft_orders=[mri]), "cds"),
        ("/cds-services/carepath-patient-view/feedback", {"feedback": [{
            "card": "c1", "outcome": "overridden", "outcomeTimestamp": "2026-03-02T09:00:00Z",
            "overrideReason": {"reason": {"code": "x"}, "userComment": "y"}}]}, "cds"),
        ("/webhooks/engine/subscription", notification(
            "event-notification", events=[(1, f"Observation/{observation['id']}")],
            resources=[observation]), "subscription"),
        ("/webhooks/engine/resource", observation, "resource"),
        ("/webhooks/engine/json", {"type": "x", "data": {
            "resourceType": "Bundle", "type": "collection", "entry": bundle["entry"][:2]}}, "json"),
        ("/admin/webhook-subscribers", {"url": "https://hooks.example.org/x",
                                        "events": ["pathway.escalated"]}, "api"),
    ]


def _signed(path: str, raw: bytes, how: str) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if how == "api":
        headers["Authorization"] = f"Bearer {TOKEN}"
    elif how == "cds":
        headers["Authorization"] = f"Bearer {KEY.token(BASE + path)}"
    elif how == "subscription":
        headers.update(bearer())
    elif how == "resource":
        headers.update(medplum_headers(raw))
    else:
        headers.update(standard_headers(raw, msg_id=f"msg_{uuid.uuid4().hex}"))
    return headers


async def test_no_value_of_the_wrong_type_gets_a_server_error(  # type: ignore[no-untyped-def]
        client_for, database_url: str, tmp_path: Path) -> None:
    client = await client_for(fuzz_settings(database_url, write_jwks(tmp_path), BASE))
    statuses: Counter[int] = Counter()
    errors = []
    for path, body, how in _requests():
        for n, at in enumerate(_positions(body)):
            for new in (ODD[n % len(ODD)], ODD[(n + 4) % len(ODD)], ODD[(n + 7) % len(ODD)]):
                raw = json.dumps(_swapped(body, at, new)).encode()
                answer = await client.post(path, content=raw, headers=_signed(path, raw, how))
                statuses[answer.status_code] += 1
                if answer.status_code >= 500:
                    errors.append(f"{path} {'.'.join(map(str, at))} = {new!r:.20}")
    print(report("type-confusion", statuses))
    assert errors == []
    assert sum(statuses.values()) > 1000 and statuses[200] + statuses[201] + statuses[202] > 0
