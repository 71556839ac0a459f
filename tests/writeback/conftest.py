"""Fixtures: the FHIR test server on loopback, and an app writing back to it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fhirserver.app import create_fhir_test_server
from tests.fhirserver.serve import serving
from tests.writeback.medplum import Medplum, medplum_server


class FhirPeer:
    def __init__(self, url: str) -> None:
        self.url = url

    def control(self, **settings: Any) -> None:
        httpx.post(f"{self.url}/_control", json=settings).raise_for_status()

    def state(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/_control/state").json()  # type: ignore[no-any-return]


@pytest.fixture
def fhir_peer() -> Iterator[FhirPeer]:
    with serving(create_fhir_test_server()) as url:
        yield FhirPeer(url)


@pytest.fixture(scope="session")
def medplum_process() -> Iterator[Medplum]:
    """Medplum's FHIR router on loopback (Node), started once: loading its definitions is slow."""
    with medplum_server() as server:
        yield server


@pytest.fixture
def medplum(medplum_process: Medplum) -> Medplum:
    """The Medplum server, emptied and without faults, for one test."""
    medplum_process.reset()
    return medplum_process
