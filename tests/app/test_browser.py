"""A real browser through the real launch: headless Chromium (Debian's, driven by Playwright) opens
Carepath's launch URL as an EHR would, follows the authorization server on loopback back to the
page, and the test reads the page's DOM. Screenshots of the three scenario kinds are saved under
build/screenshots/ (the folder is printed) for a person to look at."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from service.entrypoints.app import create_app
from tests.app.conftest import SCENARIOS, SCREENSHOTS
from tests.conftest import FIXTURES, ROOT, TOKEN, make_settings
from tests.fhirserver.serve import free_port, serving
from tests.support.smart_server import CLIENT_ID, SmartAuthServer

CHROMIUM = os.environ.get("CAREPATH_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOTS = ROOT / "build" / "screenshots"

pytestmark = pytest.mark.browser


@dataclass
class Stack:
    carepath: str
    smart: SmartAuthServer


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Carepath (with its lifespan) and the authorization server, both on loopback ports."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing in CI: `make peers` installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    smart = SmartAuthServer()
    with serving(smart.app()) as smart_base:
        smart.base = smart_base
        port = free_port()
        carepath = f"http://127.0.0.1:{port}"
        smart.redirect_uris.add(f"{carepath}/app/callback")
        database = tmp_path_factory.mktemp("browser") / "carepath.db"
        settings = make_settings(f"sqlite+aiosqlite:///{database}", base_url=carepath,
                                 app_client_id=CLIENT_ID, app_issuers=[smart.fhir_base])
        server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                               log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        try:
            with httpx.Client(base_url=carepath, timeout=60,
                              headers={"Authorization": f"Bearer {TOKEN}"}) as api:
                for case in SCENARIOS:
                    for step in sorted((FIXTURES / case).glob("step-*.bundle.json")):
                        posted = api.post("/fhir", content=step.read_bytes(),
                                          headers={"content-type": "application/fhir+json"})
                        assert posted.status_code == 200, posted.text
            yield Stack(carepath, smart)
        finally:
            server.should_exit = True
            thread.join(10)


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def shots(request: pytest.FixtureRequest) -> Iterator[Path]:
    """The folder, announced in pytest's closing summary (tests/app/conftest.py)."""
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    request.config.stash[SCREENSHOTS] = SHOTS
    yield SHOTS


def _open_from_the_ehr(browser, stack: Stack, patient: str):  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport={"width": 1000, "height": 1200})
    launch = stack.smart.launch_for(patient)
    page.goto(f"{stack.carepath}/app/launch?iss={stack.smart.fhir_base}&launch={launch}")
    assert page.url == f"{stack.carepath}/app/patients/{patient}", page.content()[:500]
    return page


def _axis_labels(page, concept: str) -> list[str]:  # type: ignore[no-untyped-def]
    return page.locator(f'figure[data-concept="{concept}"] .y-label').all_text_contents()


@pytest.mark.parametrize(("case", "patient", "first"), [
    ("03-cauda-equina", "lrp-03", "Emergency referral, suspected cauda equina syndrome"),
    ("07-progressive-deficit", "lrp-07", "MRI lumbar spine without contrast"),
    ("11-failed-conservative-care", "lrp-11", "MRI lumbar spine without contrast"),
])
def test_a_clinician_launched_from_the_ehr_sees_the_chart(
        browser, stack: Stack, shots: Path, case: str, patient: str, first: str) -> None:  # type: ignore[no-untyped-def]
    page = _open_from_the_ehr(browser, stack, patient)
    try:
        assert page.locator("#patient h1").inner_text() == f"Case{patient[-2:]} Scenario"
        proposals = page.locator("#proposals tr.proposal")
        assert proposals.count() >= 1
        assert first in proposals.first.inner_text()
        assert _axis_labels(page, "mrc.L5-EHL") == ["0", "1", "2", "3", "4", "5"]
        assert _axis_labels(page, "pain_nrs") == ["0", "2", "4", "6", "8", "10"]
        assert page.locator('figure[data-concept="pain_nrs"] .x-label').count() >= 3
        ehl = page.locator('figure[data-concept="mrc.L5-EHL"]')
        for side in ("left", "right"):
            drawn = ehl.locator(f'g.series[data-side="{side}"] .dot')
            assert drawn.count() >= 1 and drawn.first.is_visible()
        assert page.locator("#decisions li.decision").count() >= 1
        page.screenshot(path=str(shots / f"{case}.png"), full_page=True)
    finally:
        page.close()


def test_the_browser_is_refused_another_patients_page(browser, stack: Stack) -> None:  # type: ignore[no-untyped-def]
    page = _open_from_the_ehr(browser, stack, "lrp-07")
    try:
        refused = page.goto(f"{stack.carepath}/app/patients/lrp-03")
        assert refused is not None and refused.status == 403
        assert "different patient" in page.locator("#message").inner_text()
    finally:
        page.close()
