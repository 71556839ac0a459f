"""`carepath replay`: historical Bundles or bulk-export NDJSON in, a summary of decisions out."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from service.entrypoints.cli import main
from service.rules.registry import Pathway
from service.service_layer.replay import replay
from tests.conftest import AS_OF, FIXTURES

AT = "2026-03-02T09:00:00Z"


def _ndjson_export(scenario: Path, target: Path) -> None:
    """Bulk-export style: one file per resource type, one resource per line."""
    by_type: dict[str, list[bytes]] = {}
    for step in sorted(scenario.glob("step-*.bundle.json")):
        for entry in orjson.loads(step.read_bytes())["entry"]:
            resource = entry["resource"]
            by_type.setdefault(resource["resourceType"], []).append(orjson.dumps(resource))
    for kind, lines in by_type.items():
        (target / f"{kind}.ndjson").write_bytes(b"\n".join(lines) + b"\n")


def test_replaying_all_scenarios_decides_every_patient_once(pathway: Pathway) -> None:
    seen: list[tuple[int, int]] = []
    summary = replay(FIXTURES, pathway, AS_OF, lambda done, total: seen.append((done, total)))
    assert summary.patients == 24
    assert seen[-1] == (24, 24)
    assert sum(summary.urgency.values()) == 24
    assert summary.urgency["stat"] >= 1
    assert {"R1", "R3"} <= set(summary.rules)


def test_a_bulk_export_gives_the_same_decision_as_the_bundles(pathway: Pathway,
                                                               tmp_path: Path) -> None:
    scenario = FIXTURES / "03-urinary-retention"
    _ndjson_export(scenario, tmp_path)
    from_bundles = replay(scenario, pathway, AS_OF).decisions
    from_ndjson = replay(tmp_path, pathway, AS_OF).decisions
    assert from_ndjson == from_bundles
    assert from_ndjson[0]["urgency"] == "stat"


def test_the_command_prints_a_summary_table_and_writes_decisions(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "decisions.ndjson"
    scenario = FIXTURES / "03-urinary-retention"
    code = main(["replay", str(scenario), "--at", AT, "--output", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "Replay of lumbar-radiculopathy" in printed and "R1" in printed and "met" in printed
    [decision] = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert decision["urgency"] == "stat" and "outputs" not in decision


def test_unreadable_files_are_skipped_and_the_rest_still_evaluated(
        tmp_path: Path, pathway: Pathway, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "notes.json").write_text('{"hello": "world"}')
    step = FIXTURES / "01-conservative-start" / "step-1.bundle.json"
    (tmp_path / "good.json").write_bytes(step.read_bytes())
    summary = replay(tmp_path, pathway, AS_OF)
    assert summary.patients == 1 and summary.files == 1 and len(summary.skipped) == 2
    assert main(["replay", str(tmp_path), "--at", AT]) == 0
    assert "skipped" in capsys.readouterr().err


def test_a_missing_source_exits_2_with_a_message(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(tmp_path / "nowhere"), "--at", AT]) == 2
    assert "neither a file nor a directory" in capsys.readouterr().err
