"""The 24 clinical scenarios of the spec as golden tests, posted through the real FHIR API.

Each scenario's Bundles are posted in order; the CarePlan, ServiceRequests and Tasks read back must
(1) meet the spec's expectation recorded in case.json, and (2) equal the reviewed golden files
`expected.*.json` exactly (run with UPDATE_GOLDEN=1 to rewrite them after a reviewed change).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIXTURES, make_settings
from tests.support.scenarios import expectation_failures, load_case, run_case, stable

CASES = sorted(p for p in FIXTURES.iterdir() if p.is_dir())


def _golden(folder: Path, name: str, actual: list[dict[str, Any]]) -> list[dict[str, Any]]:
    path = folder / f"expected.{name}.json"
    if os.environ.get("UPDATE_GOLDEN") or not path.exists():
        path.write_text(json.dumps(actual, indent=2) + "\n")
    return json.loads(path.read_text())


def test_every_scenario_of_the_spec_has_a_fixture() -> None:
    assert [int(p.name[:2]) for p in CASES] == list(range(1, 25))


@pytest.mark.parametrize("folder", CASES, ids=[p.name for p in CASES])
async def test_scenario_outputs_match_the_spec_and_golden_files(folder: Path, client_for, sqlite_url) -> None:  # type: ignore[no-untyped-def]
    client = await client_for(make_settings(sqlite_url))
    outputs = await run_case(client, folder)
    assert expectation_failures(load_case(folder), outputs) == []
    for name, found in (("careplan", outputs.careplans), ("servicerequests", outputs.service_requests),
                        ("tasks", outputs.tasks)):
        assert stable(found) == _golden(folder, name, stable(found)), f"{folder.name}: {name} differ"


@pytest.mark.postgres
@pytest.mark.parametrize("folder", [CASES[4], CASES[9], CASES[15]], ids=lambda p: p.name)
async def test_scenarios_give_the_same_outputs_on_postgresql(folder: Path, client_for, postgres_url) -> None:  # type: ignore[no-untyped-def]
    client = await client_for(make_settings(postgres_url))
    outputs = await run_case(client, folder)
    assert expectation_failures(load_case(folder), outputs) == []
    assert stable(outputs.service_requests) == json.loads((folder / "expected.servicerequests.json").read_text())
    assert stable(outputs.careplans) == json.loads((folder / "expected.careplan.json").read_text())


@pytest.mark.parametrize("folder", CASES, ids=[p.name for p in CASES])
async def test_reposting_the_latest_data_creates_and_revises_nothing(folder: Path, client_for, sqlite_url) -> None:  # type: ignore[no-untyped-def]
    client = await client_for(make_settings(sqlite_url))
    first = await run_case(client, folder)
    again = await run_case(client, folder, steps=load_case(folder)["steps"][-1:])
    versions = lambda out: sorted((r["id"], r["meta"]["versionId"])  # noqa: E731
                                  for r in out.careplans + out.service_requests + out.tasks)
    assert versions(again) == versions(first)
