"""Load and validate pathway files at start-up; a bad file is fatal, named by file, line and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError

from service.rules import checks as _checks  # noqa: F401  (registers the checks)
from service.rules.definition import PathwayDefinition
from service.rules.registry import CHECKS, Pathway


class PathwayDefinitionError(Exception):
    """A pathway file is unreadable or invalid. `str()` says file:line: field: problem."""

    def __init__(self, path: Path, problems: list[tuple[int | None, str, str]]) -> None:
        self.path = path
        self.problems = problems
        lines = [f"{path}:{line or '?'}: {field or '(file)'}: {msg}" for line, field, msg in problems]
        super().__init__("invalid pathway definition\n" + "\n".join(lines))


def _line_of(document: Any, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the deepest node on `loc` that ruamel recorded a position for."""
    node, line = document, None
    for key in loc:
        lc = getattr(node, "lc", None)
        try:
            if lc is not None:
                row = lc.key(key)[0] if isinstance(key, str) else lc.item(key)[0]
                line = row + 1
            node = node[key]
        except (KeyError, IndexError, TypeError, AttributeError):
            break
    return line


def _field(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def load_pathway(path: Path) -> Pathway:
    """Parse, validate the schema, then validate each rule's check name and parameters."""
    try:
        document = YAML(typ="rt").load(path.read_text(encoding="utf-8"))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise PathwayDefinitionError(path, [(mark.line + 1 if mark else None, "", str(exc.problem))]) from exc
    except OSError as exc:
        raise PathwayDefinitionError(path, [(None, "", str(exc))]) from exc
    try:
        definition = PathwayDefinition.model_validate(document)
    except ValidationError as exc:
        raise PathwayDefinitionError(path, [
            (_line_of(document, tuple(err["loc"])), _field(tuple(err["loc"])), err["msg"])
            for err in exc.errors()
        ]) from exc
    problems: list[tuple[int | None, str, str]] = []
    params: dict[str, Any] = {}
    for index, rule in enumerate(definition.rules):
        loc: tuple[Any, ...] = ("rules", index, "check")
        check = CHECKS.get(rule.check)
        if check is None:
            problems.append((_line_of(document, loc), _field(loc),
                             f"unknown check {rule.check!r}; known: {', '.join(sorted(CHECKS))}"))
            continue
        try:
            params[rule.id] = check.params.model_validate(rule.params)
        except ValidationError as exc:
            for err in exc.errors():
                loc = ("rules", index, "params", *err["loc"])
                problems.append((_line_of(document, loc), _field(loc), err["msg"]))
            continue
        problems.extend(
            (_line_of(document, ("rules", index)), _field(("rules", index)), msg)
            for msg in check.validate(definition, rule, params[rule.id])
        )
    if problems:
        raise PathwayDefinitionError(path, problems)
    return Pathway(definition=definition, params=params)


def load_pathways(directory: Path) -> dict[str, Pathway]:
    """Every `*.yaml` in the directory, keyed by pathway id; duplicate id@version is fatal."""
    found: dict[str, Pathway] = {}
    versions: set[tuple[str, str]] = set()
    for path in sorted(directory.glob("*.yaml")):
        pathway = load_pathway(path)
        key = (pathway.definition.id, pathway.definition.version)
        if key in versions:
            raise PathwayDefinitionError(path, [(None, "id", f"{key[0]}@{key[1]} is defined twice")])
        versions.add(key)
        current = found.get(key[0])
        if pathway.definition.status == "active" and (
                current is None or current.definition.status != "active"):
            found[key[0]] = pathway
        elif current is None:
            found[key[0]] = pathway
    if not found:
        raise PathwayDefinitionError(directory, [(None, "", "no pathway files (*.yaml) found")])
    return found
