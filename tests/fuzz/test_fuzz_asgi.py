"""Schemathesis over the app's own OpenAPI document, in process (ASGI), on SQLite and PostgreSQL:
every operation the app has, authenticated (API token, signed CDS JWTs, signed webhooks), with a
fixed seed and a bounded budget. It fails on any 5xx, any answer that does not match the
documented schema or content type, and any status the document does not list."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis

from service.entrypoints.app import create_app
from tests.fuzz.support import (
    CountingApp,
    database,
    fuzz_config,
    fuzz_settings,
    report,
    stop_asgi_lifespans,
    webhook_kwargs,
    with_credentials,
    write_jwks,
)

BASE = "http://testserver"  # the Host Schemathesis's ASGI client sends


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def asgi_schema(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    with database(request.param, tmp_path) as url:
        app = CountingApp(create_app(fuzz_settings(url, write_jwks(tmp_path), BASE)))
        try:
            schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=fuzz_config())
            yield with_credentials(schema, BASE)
        finally:
            stop_asgi_lifespans()
        line = report(f"asgi-{request.param}", app.statuses, app.by_route)
        print(line)
        assert sum(app.statuses.values()) > 0, "the fuzz run sent nothing"


schema = schemathesis.pytest.from_fixture("asgi_schema")


@schema.parametrize()
def test_every_operation_answers_only_what_it_documents(case: Any) -> None:
    case.call_and_validate(**webhook_kwargs(case))
