"""openapi.yaml is generated from the app; this fails when someone forgets to regenerate it."""

from __future__ import annotations

from pathlib import Path

from service.entrypoints.openapi import openapi_yaml

COMMITTED = Path(__file__).resolve().parents[2] / "openapi.yaml"


def test_committed_openapi_matches_the_app() -> None:
    assert COMMITTED.read_text() == openapi_yaml(), "run `make openapi` and commit openapi.yaml"
