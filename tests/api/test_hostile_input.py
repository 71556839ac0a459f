"""Inputs that once gave a 500 (found by fuzzing, issue 15): each now gets a 4xx OperationOutcome
naming the problem, on SQLite and PostgreSQL alike, and the connection stays usable."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from hypothesis import given, settings
from hypothesis import strategies as st

from service.entrypoints.app import create_app
from service.entrypoints.http import nesting_depth
from service.entrypoints.server import config
from tests.api.test_fhir_api import assert_outcome, observation
from tests.cds.support import BASE, ISSUER, es384
from tests.conftest import make_settings

FHIR = {"content-type": "application/fhir+json"}


async def test_outbox_ids_beyond_the_column_range_are_400(client_for, database_url) -> None:  # type: ignore[no-untyped-def]
    client = await client_for(make_settings(database_url))
    for item_id in (2**31, 2**63, 10**30):
        assert_outcome(await client.post(f"/admin/outbox/{item_id}/retry"), 400, "item_id")
    assert_outcome(await client.post("/admin/outbox/7/retry"), 404, "does not exist")


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()
    return f"{part(header)}.{part(claims)}.c2lnbmF0dXJl"


@pytest.fixture
def cds_key_file(tmp_path: Path):  # type: ignore[no-untyped-def]
    key = es384()
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [key.jwk()]}))
    return key, path


async def test_jwts_with_mistyped_header_fields_or_claims_are_401(client_for, sqlite_url,  # type: ignore[no-untyped-def]
                                                                 cds_key_file) -> None:
    key, jwks = cds_key_file
    client = await client_for(make_settings(sqlite_url, cds_allowed_issuers=[ISSUER],
                                            cds_jwks_file=jwks, base_url=BASE))
    url = f"{BASE}/cds-services/carepath-patient-view"
    good_header = {"alg": "ES384", "typ": "JWT", "kid": key.kid}
    claims = {"iss": ISSUER, "aud": url, "exp": int(time.time()) + 60, "jti": "j"}
    forged = {
        "typ 1": _unsigned({**good_header, "typ": 1}, claims),
        "alg list": _unsigned({**good_header, "alg": ["ES384"]}, claims),
        "jku list": _unsigned({**good_header, "jku": ["x"]}, claims),
        "iss list": _unsigned(good_header, {**claims, "iss": [ISSUER]}),
        "iss object": _unsigned(good_header, {**claims, "iss": {"a": ISSUER}}),
        "signed, exp 10^400": key.token(url, exp_in=10**400),
        "signed, exp days ahead": key.token(url, exp_in=3 * 86400),
    }
    for name, token in forged.items():
        response = await client.post(url, json={}, headers={"Authorization": f"Bearer {token}"})
        assert_outcome(response, 401), name
    assert (await client.post(url, json={}, headers={
        "Authorization": f"Bearer {key.token(url)}"})).status_code == 400  # valid JWT, empty body


def _nested(levels: int) -> dict[str, Any]:
    extension: dict[str, Any] = {"url": "http://example.org/x", "valueString": "leaf"}
    for _ in range(levels):
        extension = {"url": "http://example.org/x", "extension": [extension]}
    return extension


async def test_deeply_nested_json_is_refused_before_validation(client_for, database_url) -> None:  # type: ignore[no-untyped-def]
    client = await client_for(make_settings(database_url))
    deep = {**observation("72514-3", valueInteger=5), "extension": [_nested(150)]}
    assert_outcome(await client.post("/fhir/Observation", json=deep, headers=FHIR), 400, "nested")
    bundle = {"resourceType": "Bundle", "type": "batch",
              "entry": [{"resource": deep, "request": {"method": "POST", "url": "Observation"}}]}
    assert_outcome(await client.post("/fhir", json=bundle, headers=FHIR), 400, "nested")
    shallow = {**observation("72514-3", valueInteger=5), "extension": [_nested(5)]}
    assert (await client.post("/fhir/Observation", json=shallow, headers=FHIR)).status_code == 201


def _depth(value: Any) -> int:
    """The nesting of a parsed JSON value, by its definition (recursive: fine for a test)."""
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


# Strings full of what a byte-level reading could mistake for structure: brackets, quotes,
# backslashes in every escaped and unescaped combination, non-ASCII.
_TRICKY_TEXT = st.text(alphabet='[]{}"\\/:,é\n aé', max_size=8)
_JSON = st.recursive(st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | _TRICKY_TEXT,
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TRICKY_TEXT, inner, max_size=4),
                     max_leaves=40)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(_JSON, st.booleans())
def test_the_nesting_read_from_the_bytes_is_the_nesting_of_the_document(value: Any, indented: bool) -> None:
    body = json.dumps(value, indent=1, ensure_ascii=False).encode() if indented else orjson.dumps(value)
    assert nesting_depth(body) == _depth(value)


async def test_the_nesting_limit_counts_objects_and_arrays_not_brackets_in_strings(client_for, database_url) -> None:  # type: ignore[no-untyped-def]
    client = await client_for(make_settings(database_url))
    within = {**observation("72514-3", valueInteger=5), "extension": [_nested(30)]}
    assert _depth(within) == 63
    assert (await client.post("/fhir/Observation", json=within, headers=FHIR)).status_code == 201
    beyond = {**observation("72514-3", valueInteger=5), "extension": [_nested(31)]}
    assert _depth(beyond) == 65
    assert_outcome(await client.post("/fhir/Observation", json=beyond, headers=FHIR), 400, "nested")
    worded = {**observation("72514-3", valueInteger=5),
              "note": [{"text": '[[[[{{{{ \\" [[[[ ' * 40 + '\\'}]}  # brackets, escaped quote, final backslash
    assert (await client.post("/fhir/Observation", json=worded, headers=FHIR)).status_code == 201


@pytest.mark.parametrize("parameter", [["x"], {"name": "subject"}, [{"name": "subject"}],
                                       [{"name": "subject", "valueReference": "Patient/p1"}], 7])
async def test_apply_with_mistyped_parameters_is_400(client, parameter) -> None:  # type: ignore[no-untyped-def]
    body = {"resourceType": "Parameters", "parameter": parameter}
    response = await client.post("/fhir/PlanDefinition/lumbar-radiculopathy/$apply", json=body,
                                 headers=FHIR)
    assert_outcome(response, 400, "Parameters.parameter")


async def test_ids_and_references_that_are_not_fhir_ids_are_refused(  # type: ignore[no-untyped-def]
        client_for, database_url) -> None:
    client = await client_for(make_settings(database_url))
    long_id = {**observation("72514-3", valueInteger=5), "id": "a" * 65}
    assert_outcome(await client.post("/fhir/Observation", json=long_id, headers=FHIR), 422, "id")
    huge_subject = {**observation("72514-3", valueInteger=5),
                    "subject": {"reference": "Patient/" + "x" * 10_000}}
    assert_outcome(await client.post("/fhir/Observation", json=huge_subject, headers=FHIR), 422,
                   "subject.reference")
    long_version = {**observation("72514-3", valueInteger=5), "meta": {"versionId": "9" * 65}}
    assert_outcome(await client.post("/fhir/Observation", json=long_version, headers=FHIR), 422,
                   "meta.versionId")
    assert_outcome(await client.get("/fhir/CarePlan", params={"subject": "Patient/lrp-03\x00"}),
                   400, "subject")
    assert_outcome(await client.get("/fhir/Observation/obs%001"), 400, "id")
    assert_outcome(await client.get("/fhir/Obs%00ervation/obs-1"), 404)
    assert_outcome(await client.post("/fhir/PlanDefinition/lumbar-radiculopathy/$apply",
                                     params={"subject": "Patient/" + "y" * 100}), 400, "subject")
    assert_outcome(await client.get("/patients/a%00b/timeline"), 404)
    ok = {**observation("72514-3", valueInteger=5), "id": "a" * 64}
    assert (await client.post("/fhir/Observation", json=ok, headers=FHIR)).status_code == 201


async def test_concurrent_posts_of_one_new_resource_are_one_create_and_re_posts(  # type: ignore[no-untyped-def]
        client_for, database_url) -> None:
    client = await client_for(make_settings(database_url))
    resource = {**observation("72514-3", valueInteger=6), "id": "race-1"}
    responses = await asyncio.gather(*(client.post("/fhir/Observation", json=resource, headers=FHIR)
                                       for _ in range(20)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 19 + [201], statuses
    assert {r.headers["etag"] for r in responses} == {'W/"1"'}


async def test_an_unexpected_error_is_an_outcome_500_that_closes_the_connection(  # type: ignore[no-untyped-def]
        client, monkeypatch) -> None:
    from service.adapters.store import Store

    async def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("secret-value-lrp-77 must not leak")

    monkeypatch.setattr(Store, "select", broken)
    response = await client.get("/fhir/CarePlan", params={"subject": "Patient/p1"})
    body = assert_outcome(response, 500, "internal error")
    assert response.headers["connection"] == "close"
    assert "lrp-77" not in json.dumps(body)


@contextmanager
def _serving(app: Any) -> Iterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(config(app, "127.0.0.1", port, "warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def _exchange(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_a_malformed_content_length_gets_an_outcome_400_from_the_server(sqlite_url) -> None:  # type: ignore[no-untyped-def]
    app = create_app(make_settings(sqlite_url))
    with _serving(app) as port:
        answer = _exchange(port, b"POST /fhir/Observation HTTP/1.1\r\nHost: x\r\n"
                                 b"Content-Length: 12abc\r\n\r\n{}")
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400")
        assert b"application/fhir+json" in head.lower() and b"connection: close" in head.lower()
        assert orjson.loads(body)["resourceType"] == "OperationOutcome"
        # keep-alive survives every ordinary error: three refused requests on one connection
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            for _ in range(3):
                refused = http.post("/fhir/Observation", content=b"{", headers=FHIR)
                assert refused.status_code in (400, 401)
                assert refused.headers.get("connection") != "close"
