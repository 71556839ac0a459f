"""Shared fixtures: settings on a temporary SQLite file (or TEST_DATABASE_URL), the app driven
through its real lifespan, and an HTTP client authenticated with a test token."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from service.config import Settings
from service.entrypoints.app import create_app
from service.rules.loader import load_pathway
from service.rules.registry import Pathway

ROOT = Path(__file__).resolve().parent.parent
PATHWAY_FILE = ROOT / "pathways" / "lumbar-radiculopathy.v1.yaml"
FIXTURES = ROOT / "fixtures" / "fhir" / "lumbar-radiculopathy"
AS_OF = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TOKEN = "test-token"


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never read the developer's CAREPATH_*/DATABASE_URL settings."""
    for key in list(os.environ):
        if key.startswith("CAREPATH_") or key in ("DATABASE_URL", "FHIR_SERVER_URL"):
            monkeypatch.delenv(key, raising=False)


@pytest.fixture(scope="session")
def pathway() -> Pathway:
    return load_pathway(PATHWAY_FILE)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'carepath.db'}"


@asynccontextmanager
async def fresh_postgres_database() -> AsyncIterator[str]:
    """A new PostgreSQL database on TEST_DATABASE_URL's server, dropped afterwards."""
    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        if os.environ.get("CI"):
            pytest.fail("TEST_DATABASE_URL is not set in CI: PostgreSQL tests must run there")
        pytest.skip("TEST_DATABASE_URL not set")
    base = Settings(database_url=base).database_url
    name = f"carepath_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(base, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.rsplit("/", 1)[0] + f"/{name}"
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


@pytest_asyncio.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A fresh PostgreSQL database per test (TEST_DATABASE_URL must point at a server we may use)."""
    async with fresh_postgres_database() as url:
        yield url


@pytest_asyncio.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, sqlite_url: str) -> AsyncIterator[str]:
    """Each test that takes it runs twice: on a SQLite file and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield sqlite_url
        return
    async with fresh_postgres_database() as url:
        yield url


def make_settings(database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {"database_url": database_url, "api_tokens": [TOKEN], "fixed_now": AS_OF,
                                     "run_worker": False}
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest_asyncio.fixture
async def client_for() -> AsyncIterator[object]:
    """Factory: an authenticated client on an app built from the given settings."""
    stack: list[object] = []

    async def build(settings: Settings) -> httpx.AsyncClient:
        app = create_app(settings)
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://carepath.test",
                                   headers={"Authorization": f"Bearer {TOKEN}"})
        stack.append((lifespan, client))
        client.app = app  # type: ignore[attr-defined]
        return client

    yield build
    for lifespan, client in reversed(stack):  # type: ignore[misc]
        await client.aclose()
        await lifespan.__aexit__(None, None, None)


@pytest_asyncio.fixture
async def client(client_for, sqlite_url: str) -> httpx.AsyncClient:  # type: ignore[no-untyped-def]
    return await client_for(make_settings(sqlite_url))
