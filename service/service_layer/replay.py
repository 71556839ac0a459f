"""Replay: evaluate historical data (patient Bundles or bulk-export NDJSON) offline, so a pathway
change can be checked against real records before it is switched on. Nothing is stored."""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from service.errors import CarepathError
from service.fhir.bundles import bundle_entries
from service.fhir.normalize import subject_id
from service.rules.registry import Pathway
from service.service_layer.offline import evaluate_resources

SUFFIXES = (".json", ".ndjson")


@dataclass
class ReplaySummary:
    files: int = 0
    skipped: list[str] = field(default_factory=list)  # JSON that is not FHIR (notes, case files)
    unreadable: list[str] = field(default_factory=list)  # files that cannot be read or parsed
    patients: int = 0
    rejected: list[str] = field(default_factory=list)  # "Type/id (file): where: problem"
    urgency: Counter[str] = field(default_factory=Counter)
    rules: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    decisions: list[dict[str, Any]] = field(default_factory=list)


def input_files(path: Path) -> list[Path]:
    """The file itself, or every .json/.ndjson file under the directory, in a stable order."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is neither a file nor a directory")
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES)


def read_resources(path: Path) -> Iterator[dict[str, Any]]:
    """Resources from a Bundle, a single resource, or NDJSON (one resource per line)."""
    if path.suffix == ".ndjson":
        for line in path.read_bytes().splitlines():
            if line.strip():
                yield from _unpack(orjson.loads(line))
        return
    yield from _unpack(orjson.loads(path.read_bytes()))


def _unpack(item: Any) -> Iterator[dict[str, Any]]:
    if not isinstance(item, dict) or not isinstance(item.get("resourceType"), str):
        raise ValueError("not a FHIR resource")
    if item["resourceType"] != "Bundle":
        yield item
        return
    try:
        _, entries = bundle_entries({**item, "type": "collection"})
    except CarepathError as exc:
        raise ValueError(exc.message) from exc
    for entry in entries:
        if entry.writes:
            yield from _unpack(entry.resource)


def replay(path: Path, pathway: Pathway, now: datetime,
           progress: Callable[[int, int], None] = lambda done, total: None) -> ReplaySummary:
    """Group every readable resource by patient, then decide each patient once, as of `now`."""
    summary = ReplaySummary()
    by_patient: dict[str, list[dict[str, Any]]] = defaultdict(list)
    origin: dict[str, str] = {}
    for file in input_files(path):
        try:
            resources = list(read_resources(file))
        except (OSError, orjson.JSONDecodeError) as exc:
            summary.unreadable.append(f"{file}: {str(exc)[:120]}")
            continue
        except ValueError as exc:
            summary.skipped.append(f"{file}: {str(exc)[:120]}")
            continue
        summary.files += 1
        for resource in resources:
            if patient := subject_id(resource):
                by_patient[patient].append(resource)
                origin.setdefault(f"{resource.get('resourceType')}/{resource.get('id')}", file.name)
    total = len(by_patient)
    for done, (_, resources) in enumerate(sorted(by_patient.items()), start=1):
        result, _ = evaluate_resources(pathway, resources, now)
        summary.rejected += [
            f"{r['resource']} ({origin.get(r['resource'], '?')}): "
            + "; ".join(f"{i['expression']}: {i['message']}" for i in r["issues"])
            for r in result["rejected"]]
        for decision in result["decisions"]:
            summary.patients += 1
            summary.urgency[decision["urgency"] or "none"] += 1
            for rule in decision["rules"]:
                summary.rules[rule["rule"]][rule["outcome"]] += 1
            summary.decisions.append({k: v for k, v in decision.items() if k != "outputs"})
        progress(done, total)
    return summary


def _progress(console: Any) -> Any:
    """Count, percentage, rate and time left, so a long replay says how long it will take."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text(f"{task.speed:.1f} patients/s" if task.speed else "- patients/s")

    return Progress(TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(),
                    TaskProgressColumn(), RateColumn(), TimeElapsedColumn(),
                    TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=True)


def run(path: Path, pathways_dir: Path, now: datetime, output: Path | None = None, *,
        allow_rejected: bool = False) -> int:
    """`carepath replay`: progress on stderr, each rejected input and unreadable file named on
    stderr (JSON files that are not FHIR, such as notes, are only counted), then the summary on
    stdout. Exit 2 if nothing was read, 1 if an input was rejected or a file could not be read
    (unless `allow_rejected`), else 0."""
    from rich.console import Console

    from service.rules.loader import load_pathways

    pathway = next(iter(load_pathways(pathways_dir).values()))
    # Off a terminal (a pipe, a CI log) rich would wrap at 80 columns: give it room instead.
    console = Console(width=None if sys.stdout.isatty() else 200, highlight=False)
    errors = Console(stderr=True, width=None if sys.stderr.isatty() else 200, highlight=False)
    try:
        with _progress(errors) as bar:
            task = bar.add_task("evaluating", total=None)
            summary = replay(path, pathway, now,
                             lambda done, total: bar.update(task, completed=done, total=total))
    except FileNotFoundError as exc:
        errors.print(f"carepath: {exc}", markup=False)
        return 2
    for skipped in summary.skipped[:3]:
        errors.print(f"skipped (not FHIR) {skipped}", markup=False, soft_wrap=True)
    if len(summary.skipped) > 3:
        errors.print(f"skipped {len(summary.skipped) - 3} more JSON files that are not FHIR",
                     markup=False, soft_wrap=True)
    for unreadable in summary.unreadable:
        errors.print(f"rejected file {unreadable}", markup=False, soft_wrap=True)
    for rejected in summary.rejected:
        errors.print(f"rejected {rejected}", markup=False, soft_wrap=True)
    if output is not None:
        output.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in summary.decisions))
    name = f"{pathway.definition.id}|{pathway.definition.version}"
    console.print(f"Replay of {name} as of {now.isoformat()}", soft_wrap=True)
    console.print(summary_table(summary))
    for line in _caption(summary):
        console.print(line, soft_wrap=True, markup=False)
    if not summary.files:
        return 2
    if (summary.rejected or summary.unreadable) and not allow_rejected:
        console.print("exit 1: inputs were rejected (--allow-rejected to accept that)",
                      soft_wrap=True, markup=False)
        return 1
    return 0


def summary_table(summary: ReplaySummary) -> Any:
    from rich.table import Table

    outcomes = sorted({o for counts in summary.rules.values() for o in counts})
    table = Table(title=f"{summary.patients} patients from {summary.files} files")
    table.add_column("rule")
    for outcome in outcomes:
        table.add_column(outcome, justify="right")
    for rule in sorted(summary.rules):
        table.add_row(rule, *(str(summary.rules[rule][o]) for o in outcomes))
    return table


def _caption(summary: ReplaySummary) -> list[str]:
    urgency = ", ".join(f"{k}: {v}" for k, v in sorted(summary.urgency.items()))
    return [f"urgency: {urgency or 'none'}",
            f"rejected inputs: {len(summary.rejected)}; unreadable files: "
            f"{len(summary.unreadable)}; skipped files (not FHIR): {len(summary.skipped)}"]
