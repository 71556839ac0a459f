"""`carepath replay`: historical Bundles or bulk-export NDJSON in, a summary of decisions out."""

from __future__ import annotations

import json
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
    assert summary.patients == 1 and summary.files == 1
    assert len(summary.unreadable) == 1 and len(summary.skipped) == 1
    assert main(["replay", str(tmp_path), "--at", AT]) == 1, "a corrupt file fails the replay"
    err = capsys.readouterr().err
    assert "rejected file" in err and "broken.json" in err
    assert "skipped (not FHIR)" in err and "notes.json" in err
    assert main(["replay", str(tmp_path), "--at", AT, "--allow-rejected"]) == 0


def test_each_rejected_input_is_named_with_its_reason_and_fails_the_replay(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Only what R4 forbids is rejected (an unusable value is a warning, spec 2a.12)."""
    scenario = FIXTURES / "20-odi-raw-score"
    (tmp_path / "step-1.bundle.json").write_bytes((scenario / "step-1.bundle.json").read_bytes())
    bad = json.loads((scenario / "rejected.odi-unflagged.json").read_bytes())
    bad["status"] = "finished"  # not in the required observation-status value set
    (tmp_path / "bad-status.json").write_text(json.dumps(bad))
    assert main(["replay", str(tmp_path), "--at", AT]) == 1
    captured = capsys.readouterr()
    assert "rejected Observation/20-odi-unflagged (bad-status.json): Observation.status" in captured.err
    assert "rejected inputs: 1; unreadable files: 0" in captured.out
    assert main(["replay", str(tmp_path), "--at", AT, "--allow-rejected"]) == 0


def test_the_progress_shows_count_rate_and_time_left() -> None:
    from rich.console import Console

    from service.service_layer.replay import _progress

    console = Console(record=True, force_terminal=True, width=160)
    with _progress(console) as bar:
        task = bar.add_task("evaluating", total=40)
        for done in range(1, 11):
            bar.update(task, completed=done)
        line = bar.get_renderable()
        console.print(line)
    shown = console.export_text()
    assert "10/40" in shown and "25%" in shown and "patients/s" in shown and "ETA" in shown


def test_a_missing_source_exits_2_with_a_message(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(tmp_path / "nowhere"), "--at", AT]) == 2
    assert "neither a file nor a directory" in capsys.readouterr().err
