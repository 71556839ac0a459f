"""The clinician's timeline page: scores and motor grades over time with the decisions marked."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from tests.conftest import FIXTURES

SCENARIO = FIXTURES / "07-ehl-drop-confirmed"
FHIR = {"content-type": "application/fhir+json"}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


async def _timeline(client) -> str:  # type: ignore[no-untyped-def]
    for step in sorted(SCENARIO.glob("step-*.bundle.json")):
        assert (
            await client.post("/fhir", content=step.read_bytes(), headers=FHIR)
        ).status_code == 200
    page = await client.get("/patients/lrp-07/timeline")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    return page.text


async def test_the_page_charts_scores_and_grades_and_marks_each_decision(client) -> None:  # type: ignore[no-untyped-def]
    html = await _timeline(client)
    assert '<svg id="chart"' in html
    assert 'data-series="pain"' in html and 'data-series="L5-EHL Left"' in html
    assert 'data-rule="R3"' in html and 'href="#decision-0"' in html and 'id="decision-0"' in html
    marker = html[html.index('data-rule="R3"') :]
    hover = marker[marker.index("<title>") : marker.index("</title>")]
    assert "R3:" in hover and "EHL" in hover.upper()


async def test_the_page_needs_a_token_and_a_known_patient(client) -> None:  # type: ignore[no-untyped-def]
    unknown = await client.get("/patients/nobody/timeline")
    assert unknown.status_code == 404 and unknown.json()["resourceType"] == "OperationOutcome"
    anonymous = await client.get("/patients/lrp-07/timeline", headers={"Authorization": ""})
    assert anonymous.status_code == 401


def _pixels(png: bytes) -> list[tuple[int, int, int]]:
    """Decode an 8-bit RGB/RGBA, non-interlaced PNG (what Chromium writes) without Pillow."""
    pos, idat, width = 8, b"", 0
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos : pos + 8])
        body = png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, _, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and colour in (2, 6)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw, stride, out, previous = (
        zlib.decompress(idat),
        width * channels,
        [],
        bytearray(width * channels),
    )
    for row in range(len(raw) // (stride + 1)):
        kind, line = (
            raw[row * (stride + 1)],
            bytearray(raw[row * (stride + 1) + 1 : (row + 1) * (stride + 1)]),
        )
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b, c = previous[i], previous[i - channels] if i >= channels else 0
            p = a + b - c
            pred = (
                a
                if abs(p - a) <= min(abs(p - b), abs(p - c))
                else b
                if abs(p - b) <= abs(p - c)
                else c
            )
            line[i] = (line[i] + (0, a, b, (a + b) // 2, pred)[kind]) & 0xFF
        out += [tuple(line[i : i + 3]) for i in range(0, stride, channels)]
        previous = line
    return out  # type: ignore[return-value]


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
async def test_headless_chromium_renders_the_chart_and_the_markers(client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    page = tmp_path / "timeline.html"
    page.write_text(await _timeline(client))
    shot = tmp_path / "timeline.png"
    subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--screenshot={shot}",
            "--window-size=1000,800",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    pixels = _pixels(shot.read_bytes())
    counts = {
        colour: sum(1 for p in pixels if p == colour)
        for colour in ((0xB0, 0x00, 0x20), (0x1F, 0x77, 0xB4))
    }
    assert counts[(0xB0, 0x00, 0x20)] > 50, "an urgent decision marker is drawn"
    assert counts[(0x1F, 0x77, 0xB4)] > 50, "a score line is drawn"
