"""Authenticating to the EHR's FHIR server: SMART Backend Services (RS384 and ES384), bearer."""

from __future__ import annotations

import json

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.conftest import make_settings
from tests.writeback.support import assert_each_arrived_once, drain, make_outputs
from tests.writeback.test_delivery import _worker


def _pem(key) -> str:  # type: ignore[no-untyped-def]
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _public_pem(key) -> str:  # type: ignore[no-untyped-def]
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.mark.parametrize("algorithm", ["RS384", "ES384", "ES384-jwk"])
async def test_smart_backend_services_token_is_fetched_once_and_used(
    client_for, sqlite_url, fhir_peer, algorithm
):  # type: ignore[no-untyped-def]
    if algorithm.startswith("RS"):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        key = ec.generate_private_key(ec.SECP384R1())
    private = _pem(key)
    if algorithm.endswith("jwk"):
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key))
        private = json.dumps({**jwk, "kid": "k1", "alg": "ES384"})
    fhir_peer.control(requireToken=True, clientPublicKey=_public_pem(key))
    settings = make_settings(
        sqlite_url,
        fhir_server_url=fhir_peer.url,
        fhir_auth="smart",
        smart_token_url=f"{fhir_peer.url}/auth/token",
        smart_client_id="carepath",
        smart_private_key=private,
        outbox_backoff_seconds=0.01,
    )
    client = await client_for(settings)
    await make_outputs(client, 3)
    engine = client.app.state.services.engine
    await drain([_worker(client)], engine)
    state = fhir_peer.state()
    assert state["tokens"] == ["tok-1"], "the token is cached until near expiry"
    assert state["assertions"][0]["alg"] == algorithm.split("-")[0]
    if algorithm.endswith("jwk"):
        assert state["assertions"][0]["kid"] == "k1"
    await assert_each_arrived_once(state, engine)


async def test_a_wrong_key_is_refused_and_nothing_is_written(client_for, sqlite_url, fhir_peer):  # type: ignore[no-untyped-def]
    server_key = ec.generate_private_key(ec.SECP384R1())
    ours = ec.generate_private_key(ec.SECP384R1())
    fhir_peer.control(requireToken=True, clientPublicKey=_public_pem(server_key))
    settings = make_settings(
        sqlite_url,
        fhir_server_url=fhir_peer.url,
        fhir_auth="smart",
        smart_token_url=f"{fhir_peer.url}/auth/token",
        smart_client_id="carepath",
        smart_private_key=_pem(ours),
    )
    client = await client_for(settings)
    await make_outputs(client, 1)
    await _worker(client).run_once()
    items = (await client.get("/admin/outbox")).json()["items"]
    assert items and all("401" in (i["lastError"] or "") for i in items)
    assert not fhir_peer.state()["resources"]
