"""Code lookup: which pathway concepts a coding belongs to, matched on system + code only."""

from __future__ import annotations

from dataclasses import dataclass

from service.domain.facts import Coding, Side
from service.rules.definition import MeasureSpec, PathwayDefinition


@dataclass(frozen=True, slots=True)
class ConceptMatch:
    concept: str
    side: Side


class ConceptIndex:
    """Built once per pathway; answers `lookup(coding)` in O(1) plus prefix patterns."""

    def __init__(self, definition: PathwayDefinition) -> None:
        self._exact: dict[tuple[str, str], list[ConceptMatch]] = {}
        self._prefixes: list[tuple[str, str, ConceptMatch]] = []
        self.measures: dict[str, MeasureSpec] = {}
        for name, concept in definition.concepts.items():
            if concept.measure:
                self.measures[name] = concept.measure
            for ref in concept.codes:
                coding = definition.coding(ref)
                match = ConceptMatch(name, Side(ref.side) if ref.side else Side.UNSPECIFIED)
                if coding.code.endswith("*"):
                    self._prefixes.append((coding.system, coding.code[:-1], match))
                else:
                    self._exact.setdefault(coding.key(), []).append(match)
        # prefix patterns per system, in declaration order (most codings' systems have none)
        self._prefixes_by_system: dict[str, list[tuple[str, ConceptMatch]]] = {}
        for system, prefix, match in self._prefixes:
            self._prefixes_by_system.setdefault(system, []).append((prefix, match))
        self.present = {definition.coding(c).key() for c in definition.presence["present"]}
        self.absent = {definition.coding(c).key() for c in definition.presence["absent"]}
        self.sides = {
            definition.coding(c).key(): Side(side)
            for side, codes in definition.laterality.items() for c in codes
        }
        self.raw_flags = {
            name: definition.coding(m.raw.flag).key()
            for name, m in self.measures.items() if m.raw
        }

    def lookup(self, coding: Coding) -> list[ConceptMatch]:
        found = list(self._exact.get((coding.system, coding.code), ()))
        prefixes = self._prefixes_by_system.get(coding.system)
        if prefixes:
            found.extend(m for prefix, m in prefixes if coding.code.startswith(prefix))
        return found

    def lookup_any(self, codings: list[Coding]) -> list[ConceptMatch]:
        seen: dict[str, ConceptMatch] = {}
        for coding in codings:
            for match in self.lookup(coding):
                current = seen.get(match.concept)
                if current is None or current.side is Side.UNSPECIFIED:
                    seen[match.concept] = match
        return list(seen.values())

    def side_of(self, codings: list[Coding]) -> Side:
        for coding in codings:
            side = self.sides.get(coding.key())
            if side:
                return side
        return Side.UNSPECIFIED
