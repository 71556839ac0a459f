"""Fixtures for the clinician app: a SMART authorization server on loopback, and Carepath with the
scenarios loaded and the app registered with that server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from tests.conftest import FIXTURES, make_settings
from tests.fhirserver.serve import serving
from tests.support.smart_server import CLIENT_ID, SmartAuthServer

SCENARIOS = ("03-urinary-retention", "07-ehl-drop-confirmed", "11-r7-failed-conservative")
SCREENSHOTS = pytest.StashKey[Path]()


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:  # type: ignore[no-untyped-def]
    """Say where the browser test left its screenshots, so a person can look at them."""
    folder = config.stash.get(SCREENSHOTS, None)
    if folder is not None:
        saved = ", ".join(sorted(p.name for p in folder.glob("*.png")))
        terminalreporter.write_line(f"screenshots of the clinician view in {folder}: {saved}")


@pytest.fixture
def smart_server() -> Iterator[SmartAuthServer]:
    server = SmartAuthServer()
    with serving(server.app()) as base:
        server.base = base
        yield server


async def load_scenarios(client: httpx.AsyncClient, token: str) -> None:
    for case in SCENARIOS:
        for step in sorted((FIXTURES / case).glob("step-*.bundle.json")):
            posted = await client.post("/fhir", content=step.read_bytes(), headers={
                "content-type": "application/fhir+json", "authorization": f"Bearer {token}"})
            assert posted.status_code == 200, posted.text


@pytest_asyncio.fixture
async def app_client(client_for, sqlite_url: str, smart_server: SmartAuthServer  # type: ignore[no-untyped-def]
                     ) -> httpx.AsyncClient:
    """Carepath as a browser sees it: no Authorization header, cookies kept."""
    smart_server.redirect_uris.add("http://carepath.test/app/callback")
    client = await client_for(make_settings(
        sqlite_url, app_client_id=CLIENT_ID,
        app_issuers=[smart_server.fhir_base, f"{smart_server.base}/elsewhere/fhir"]))
    token = client.headers.pop("Authorization").split(" ", 1)[1]
    await load_scenarios(client, token)
    return client
