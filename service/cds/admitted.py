"""What a CDS call made of a prefetch, remembered by the prefetch's content.

An EHR prefetches a patient's whole record each time the chart is opened, so the same prefetch
arrives again and again. Which of its resources the pathway can use, which are refused (and why),
and the facts the pathway reads from the admitted ones are all pure functions of that content and
the patient: a prefetch seen before is answered from here, with one digest of the whole prefetch
instead of a digest, a relevance check and an acceptance lookup per resource and a fresh reading
of every Observation. Nothing about the moment of the call is remembered (evaluation always runs
at the call's own time), and the resources used are always the ones this request sent.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson

from service.domain.facts import PatientFacts

Position = tuple[str, int]  # (prefetch key, index of the resource in it)


@dataclass
class Admitted:
    """The verdicts on one prefetch's contents for one patient."""

    kept: tuple[Position, ...]  # the resources the pathway reads, in prefetch order
    skipped: tuple[str, ...]  # why each refused resource was left out, in prefetch order
    facts: PatientFacts | None = None  # what the service's pathway reads from the kept ones


class AdmittedPrefetches:
    """A bounded memory of recent prefetches (least recently used out)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._seen: OrderedDict[bytes, Admitted] = OrderedDict()

    @staticmethod
    def digest(patient_id: str, contents: list[Any]) -> bytes | None:
        """One digest for the patient and every prefetched value (None when a value is not plain
        JSON, e.g. an integer over 64 bits from a fetched page: such a prefetch is not remembered)."""
        try:
            return hashlib.sha256(patient_id.encode() + b"\0" + orjson.dumps(contents)).digest()
        except TypeError:  # orjson.JSONEncodeError
            return None

    def get(self, digest: bytes) -> Admitted | None:
        found = self._seen.get(digest)
        if found is not None:
            self._seen.move_to_end(digest)
        return found

    def add(self, digest: bytes, admitted: Admitted) -> None:
        self._seen[digest] = admitted
        if len(self._seen) > self.size:
            self._seen.popitem(last=False)
