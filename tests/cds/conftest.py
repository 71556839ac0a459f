"""Shared CDS fixtures: the EHR's signing keys and JWKS, and an app that trusts them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cds.support import ISSUER, SigningKey, es384, rs384
from tests.conftest import make_settings


@pytest.fixture(scope="module")
def keys() -> dict[str, SigningKey]:
    return {"es": es384(), "rs": rs384()}


@pytest.fixture
def key(keys: dict[str, SigningKey]) -> SigningKey:
    """The EHR's ES384 key (the app built by `cds` trusts it)."""
    return keys["es"]


@pytest.fixture
def jwks_file(tmp_path: Path, keys: dict[str, SigningKey]) -> Path:
    path = tmp_path / "ehr-jwks.json"
    path.write_text(json.dumps({"keys": [k.jwk() for k in keys.values()]}))
    return path


@pytest.fixture
async def cds(client_for, sqlite_url: str, jwks_file: Path):  # type: ignore[no-untyped-def]
    return await client_for(make_settings(sqlite_url, cds_allowed_issuers=[ISSUER], cds_jwks_file=jwks_file,
                                          cors_origins=["https://ehr.example.org"]))
