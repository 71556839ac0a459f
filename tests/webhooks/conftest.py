"""Fixtures: the loopback FHIR test server (id-only fetches, `$events`)."""

from tests.writeback.conftest import fhir_peer  # noqa: F401  (re-exported fixture)
