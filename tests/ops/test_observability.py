"""Operators see JSON logs tied together by a request id, Prometheus metrics, and never PHI."""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Iterator

import orjson
import pytest
import structlog
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from service.adapters.database import create_engine
from service.observability.logs import configure_logging, phi_safe, set_pseudonym_key
from tests.conftest import FIXTURES, make_settings

SCENARIO = FIXTURES / "03-urinary-retention" / "step-1.bundle.json"
FHIR = {"content-type": "application/fhir+json"}


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    root, httpx_logger = logging.getLogger(), logging.getLogger("httpx")
    saved = (root.handlers[:], root.level, httpx_logger.level)
    buffer = io.StringIO()
    configure_logging("INFO", buffer)
    yield buffer
    root.handlers[:], root.level = saved[0], saved[1]
    httpx_logger.setLevel(saved[2])
    structlog.reset_defaults()


async def test_the_request_id_is_echoed_or_made_up(client) -> None:  # type: ignore[no-untyped-def]
    given = await client.get("/fhir/metadata", headers={"X-Request-Id": "ehr-42.a"})
    assert given.headers["x-request-id"] == "ehr-42.a"
    made = await client.get("/fhir/metadata")
    unsafe = await client.get("/fhir/metadata", headers={"X-Request-Id": "bad id\twith spaces"})
    assert len(made.headers["x-request-id"]) == 32
    assert unsafe.headers["x-request-id"] != "bad id\twith spaces"


async def test_metrics_count_requests_rule_outcomes_and_the_outbox(client) -> None:  # type: ignore[no-untyped-def]
    ingested = await client.post("/fhir", content=SCENARIO.read_bytes(), headers=FHIR)
    assert ingested.status_code == 200
    await client.get("/fhir/CarePlan/does-not-exist")
    scrape = await client.get("/metrics")
    assert scrape.status_code == 200 and scrape.headers["content-type"].startswith("text/plain")
    text = scrape.text
    assert 'carepath_http_requests_total{method="POST",route="/fhir",status="200"} 1.0' in text
    assert 'route="/fhir/{resource_type}/{resource_id}",status="404"' in text
    assert 'outcome="met",pathway="lumbar-radiculopathy|1.0.0",rule="R1"' in text
    assert 'carepath_patient_evaluations_total{urgency="stat"} 1.0' in text
    assert 'carepath_outbox_depth{kind="fhir"} 0.0' in text
    assert 'carepath_outbox_delivery_failures{kind="webhook"} 0.0' in text
    assert "lrp-03" not in text


async def test_every_app_has_its_own_metrics(client_for, sqlite_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = await client_for(make_settings(sqlite_url))
    second = await client_for(make_settings(f"sqlite+aiosqlite:///{tmp_path / 'other.db'}"))
    await first.post("/fhir", content=SCENARIO.read_bytes(), headers=FHIR)
    assert "carepath_patient_evaluations_total{" in (await first.get("/metrics")).text
    assert "carepath_patient_evaluations_total{" not in (await second.get("/metrics")).text


async def test_logs_are_json_carry_the_request_id_and_hold_no_phi(  # type: ignore[no-untyped-def]
        client, log_lines: io.StringIO) -> None:
    response = await client.post("/fhir", content=SCENARIO.read_bytes(),
                                 headers={**FHIR, "X-Request-Id": "trace-7"})
    assert response.status_code == 200
    await client.get("/fhir/Patient/lrp-03")
    lines = [orjson.loads(line) for line in log_lines.getvalue().splitlines()]
    mine = [line for line in lines if line.get("request_id") == "trace-7"]
    assert {line["event"] for line in mine} >= {"evaluated", "request"}
    [evaluated] = [line for line in mine if line["event"] == "evaluated"]
    assert evaluated["patient"] == phi_safe("lrp-03") and evaluated["urgency"] == "stat"
    raw = log_lines.getvalue()
    assert "lrp-03" not in raw and "Case03" not in raw and "1987" not in raw


def test_patient_references_in_free_text_are_hashed(log_lines: io.StringIO) -> None:
    logging.getLogger("carepath").error("could not write back Patient/lrp-99 CarePlan")
    structlog.get_logger("carepath").info("write-back", patient_id="lrp-99", value=7)
    raw = log_lines.getvalue()
    assert "lrp-99" not in raw and phi_safe("lrp-99") in raw and '"value": 7' not in raw


def test_pseudonyms_are_keyed_so_short_ids_cannot_be_hashed_back(log_lines: io.StringIO) -> None:
    set_pseudonym_key("k" * 32)
    first = phi_safe("lrp-03")
    set_pseudonym_key("another-key-0123456789")
    assert phi_safe("lrp-03") != first
    assert hashlib.sha256(b"lrp-03").hexdigest()[:12] not in first


async def test_the_pseudonym_key_is_generated_once_and_kept_in_the_database(  # type: ignore[no-untyped-def]
        client_for, sqlite_url: str, tmp_path) -> None:
    await client_for(make_settings(sqlite_url))
    first = phi_safe("lrp-03")
    await client_for(make_settings(f"sqlite+aiosqlite:///{tmp_path / 'other.db'}"))
    other_database = phi_safe("lrp-03")
    await client_for(make_settings(sqlite_url))
    assert phi_safe("lrp-03") == first != other_database
    await client_for(make_settings(sqlite_url, log_pseudonym_key="from-the-environment-0001"))
    assert phi_safe("lrp-03") not in (first, other_database)


def test_exceptions_are_logged_by_type_and_place_never_by_message(log_lines: io.StringIO) -> None:
    try:
        {"a": 1}["Patient/lrp-55 secret-value"]
    except KeyError:
        logging.getLogger("carepath").exception("lookup failed")
    line = orjson.loads(log_lines.getvalue().splitlines()[-1])
    assert line["exception"].startswith("KeyError at test_observability.py:")
    assert "lrp-55" not in log_lines.getvalue() and "secret-value" not in log_lines.getvalue()


async def test_database_errors_never_carry_statement_parameters(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    try:
        async with engine.connect() as conn:
            with pytest.raises(DBAPIError) as error:
                await conn.execute(text("SELECT * FROM no_such_table WHERE id = :id"),
                                   {"id": "lrp-77-parameter"})
    finally:
        await engine.dispose()
    assert "lrp-77-parameter" not in str(error.value)
