"""Replay: evaluate historical data (patient Bundles or bulk-export NDJSON) offline, so a pathway
change can be checked against real records before it is switched on. Nothing is stored."""

from __future__ import annotations

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
    skipped: list[str] = field(default_factory=list)
    patients: int = 0
    rejected: int = 0
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
    for file in input_files(path):
        try:
            resources = list(read_resources(file))
        except (OSError, ValueError) as exc:
            summary.skipped.append(f"{file}: {str(exc)[:120]}")
            continue
        summary.files += 1
        for resource in resources:
            if patient := subject_id(resource):
                by_patient[patient].append(resource)
    total = len(by_patient)
    for done, (_, resources) in enumerate(sorted(by_patient.items()), start=1):
        result, _ = evaluate_resources(pathway, resources, now)
        summary.rejected += len(result["rejected"])
        for decision in result["decisions"]:
            summary.patients += 1
            summary.urgency[decision["urgency"] or "none"] += 1
            for rule in decision["rules"]:
                summary.rules[rule["rule"]][rule["outcome"]] += 1
            summary.decisions.append({k: v for k, v in decision.items() if k != "outputs"})
        progress(done, total)
    return summary


def run(path: Path, pathways_dir: Path, now: datetime, output: Path | None = None) -> int:
    """`carepath replay`: a progress bar on stderr, then the summary; 2 if nothing was read."""
    from rich.console import Console
    from rich.progress import Progress

    from service.rules.loader import load_pathways

    pathway = next(iter(load_pathways(pathways_dir).values()))
    console, errors = Console(), Console(stderr=True)
    try:
        with Progress(console=errors, transient=True) as bar:
            task = bar.add_task("evaluating patients", total=None)
            summary = replay(path, pathway, now,
                             lambda done, total: bar.update(task, completed=done, total=total))
    except FileNotFoundError as exc:
        errors.print(f"carepath: {exc}")
        return 2
    for skipped in summary.skipped[:5]:
        errors.print(f"skipped {skipped}", markup=False, highlight=False, soft_wrap=True)
    if len(summary.skipped) > 5:
        errors.print(f"... and {len(summary.skipped) - 5} more files that are not FHIR resources")
    if output is not None:
        output.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in summary.decisions))
    name = f"{pathway.definition.id}|{pathway.definition.version}"
    console.print(f"Replay of {name} as of {now.isoformat()}", soft_wrap=True, highlight=False)
    console.print(summary_table(summary))
    return 0 if summary.files else 2


def summary_table(summary: ReplaySummary) -> Any:
    from rich.table import Table

    outcomes = sorted({o for counts in summary.rules.values() for o in counts})
    table = Table(title=f"{summary.patients} patients from {summary.files} files",
                  caption=_caption(summary))
    table.add_column("rule")
    for outcome in outcomes:
        table.add_column(outcome, justify="right")
    for rule in sorted(summary.rules):
        table.add_row(rule, *(str(summary.rules[rule][o]) for o in outcomes))
    return table


def _caption(summary: ReplaySummary) -> str:
    urgency = ", ".join(f"{k}: {v}" for k, v in sorted(summary.urgency.items()))
    return (f"urgency: {urgency or 'none'}; rejected inputs: {summary.rejected}; "
            f"skipped files: {len(summary.skipped)}")
