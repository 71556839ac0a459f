"""GET /patients/{id}/timeline: an HTML page for clinicians. Pain (NRS), ODI and MRC grades over
time as an inline SVG chart, with the pathway decisions marked at the time of their evidence;
hovering a marker shows its evidence, clicking it jumps to the full reasoning below the chart.
Self-contained (no scripts, no external assets), so it renders under a strict CSP and offline."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from html import escape
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from service.adapters.store import Store
from service.entrypoints.api_docs import errors
from service.entrypoints.deps import CallerDep, ServicesDep
from service.errors import NotFound
from service.fhir.ids import is_fhir_id
from service.fhir.models import INPUT_TYPES

router = APIRouter(tags=["Clinician"])

_PAIN, _ODI = {"72514-3", "38208-5"}, {"97909-6"}
_W, _LEFT, _RIGHT, _PANEL, _GAP, _TOP = 900, 70, 20, 120, 40, 90
_PANELS = (
    ("pain", "Pain NRS (0-10)", 10.0),
    ("odi", "ODI % (0-100)", 100.0),
    ("mrc", "MRC grade (0-5)", 5.0),
)
_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


@router.get("/patients/{patient_id}/timeline", response_class=HTMLResponse,
            responses=errors(401, 404))
async def timeline(patient_id: str, services: ServicesDep, _: CallerDep) -> HTMLResponse:
    """The patient's scores and motor grades over time, with the pathway's decisions marked."""
    if not is_fhir_id(patient_id):  # no such patient can be on file
        raise NotFound(f"no data on file for Patient/{patient_id[:64]}")
    async with services.engine.connect() as conn:
        store = Store(conn)
        inputs = await store.for_patient(patient_id, INPUT_TYPES)
        evaluations = await store.evaluations_of(patient_id)
    if not inputs:
        raise NotFound(f"no data on file for Patient/{patient_id}")
    return HTMLResponse(
        render(patient_id, series(inputs), decisions(evaluations)),
        headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
        },
    )


def series(inputs: list[dict[str, Any]]) -> dict[str, dict[str, list[tuple[datetime, float]]]]:
    """panel -> line label -> [(time, value)], from final/amended Observations only."""
    out: dict[str, dict[str, list[tuple[datetime, float]]]] = defaultdict(lambda: defaultdict(list))
    for r in inputs:
        when = _time(r.get("effectiveDateTime"))
        if (
            r.get("resourceType") != "Observation"
            or when is None
            or r.get("status") == "entered-in-error"
        ):
            continue
        codes = {c.get("code", "") for c in (r.get("code") or {}).get("coding", [])}
        quantity = r.get("valueQuantity") or {}
        if codes & _PAIN and isinstance(quantity.get("value"), int | float):
            out["pain"]["pain"].append((when, float(quantity["value"])))
        elif codes & _ODI and isinstance(quantity.get("value"), int | float):
            factor = 1 if quantity.get("unit") == "%" or quantity.get("code") == "%" else 2
            out["odi"]["ODI"].append((when, float(quantity["value"]) * factor))
        elif mrc := next((c for c in codes if c.startswith("LRP-MRC-")), None):
            if isinstance(r.get("valueInteger"), int):
                side = ((r.get("bodySite") or {}).get("coding") or [{}])[0].get("display", "")
                out["mrc"][f"{mrc[8:]} {side.split(' ')[0]}".strip()].append(
                    (when, float(r["valueInteger"]))
                )
    return {k: {label: sorted(points) for label, points in v.items()} for k, v in out.items()}


def decisions(evaluations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each rule that fired, once per evidence time, at its latest evidence (else the run time)."""
    seen, out = set(), []
    for record in evaluations:
        for result in record["summary"].get("results", []):
            if result.get("outcome") != "met":
                continue
            times = [t for ev in result.get("evidence", []) if (t := _time(ev.get("time")))]
            when = max(times) if times else _time(str(record["evaluated_at"]))
            key = (result["rule"], when)
            if when is None or key in seen:
                continue
            seen.add(key)
            out.append(
                {
                    "rule": result["rule"],
                    "time": when,
                    "reason": result.get("reason", ""),
                    "priority": result.get("priority"),
                    "evidence": result.get("evidence", []),
                }
            )
    return sorted(out, key=lambda d: d["time"])


def render(
    patient_id: str,
    lines: dict[str, dict[str, list[tuple[datetime, float]]]],
    fired: list[dict[str, Any]],
) -> str:
    times = [t for panel in lines.values() for pts in panel.values() for t, _ in pts] + [
        d["time"] for d in fired
    ]
    start, end = (min(times), max(times)) if times else (datetime.now(), datetime.now())
    span = max((end - start).total_seconds(), 1.0)
    height = _TOP + len(_PANELS) * (_PANEL + _GAP)

    def x(t: datetime) -> float:
        return _LEFT + (_W - _LEFT - _RIGHT) * (t - start).total_seconds() / span

    svg = [
        f'<svg id="chart" xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{height}" '
        f'viewBox="0 0 {_W} {height}" role="img" aria-label="timeline chart">'
    ]
    for i, (key, title, top_value) in enumerate(_PANELS):
        y0 = _TOP + i * (_PANEL + _GAP)
        svg.append(
            f'<text x="{_LEFT}" y="{y0 - 8}" class="panel-title">{title}</text>'
            f'<rect x="{_LEFT}" y="{y0}" width="{_W - _LEFT - _RIGHT}" height="{_PANEL}" '
            'fill="#fafafa" stroke="#ccc"/>'
        )
        for j, (label, points) in enumerate(sorted(lines.get(key, {}).items())):
            colour = _COLOURS[j % len(_COLOURS)]
            coords = [(x(t), y0 + _PANEL * (1 - min(v, top_value) / top_value)) for t, v in points]
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in coords)
            svg.append(
                f'<polyline class="series" data-series="{escape(label)}" fill="none" '
                f'stroke="{colour}" stroke-width="2" points="{path}"/>'
            )
            svg += [
                f'<circle class="point" cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{colour}">'
                f"<title>{escape(label)}: {v:g} at {t:%Y-%m-%d %H:%M}</title></circle>"
                for (px, py), (t, v) in zip(coords, points, strict=True)
            ]
    stacked: dict[int, int] = defaultdict(int)
    for n, d in enumerate(fired):
        px = x(d["time"])
        lift = 20 * stacked[round(px / 10)]
        stacked[round(px / 10)] += 1
        colour = "#b00020" if d["priority"] in ("stat", "asap", "urgent") else "#555"
        hover = escape(
            f"{d['rule']}: {d['reason']}\n"
            + "\n".join(
                f"- {ev.get('what')}: {ev.get('value')} ({ev.get('time') or 'no time'})"
                for ev in d["evidence"]
            )
        )
        svg.append(
            f'<a href="#decision-{n}" class="marker" data-rule="{escape(d["rule"])}">'
            f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{_TOP - 20}" y2="{height - _GAP}" '
            f'stroke="{colour}" '
            f'stroke-dasharray="4 3"/><circle cx="{px:.1f}" cy="{_TOP - 24 - lift}" r="9" '
            f'fill="{colour}">'
            f'<title>{hover}</title></circle><text x="{px:.1f}" y="{_TOP - 20 - lift}" fill="#fff" '
            f'font-size="9" text-anchor="middle">{escape(d["rule"])}</text></a>'
        )
    svg.append(
        f'<text x="{_LEFT}" y="{height - 12}">{start:%Y-%m-%d}</text>'
        f'<text x="{_W - _RIGHT}" y="{height - 12}" text-anchor="end">{end:%Y-%m-%d}</text></svg>'
    )
    items = (
        "".join(
            f'<li id="decision-{n}"><b>{escape(d["rule"])}</b> {d["time"]:%Y-%m-%d %H:%M} '
            f"{escape(d['priority'] or '')}: {escape(d['reason'])}<ul>"
            + "".join(
                f"<li>{escape(str(ev.get('what')))}: {escape(str(ev.get('value')))} "
                f"<code>{escape(str(ev.get('ref')))}</code></li>"
                for ev in d["evidence"]
            )
            + "</ul></li>"
            for n, d in enumerate(fired)
        )
        or "<li>No pathway rule has fired for this patient.</li>"
    )
    legend = " ".join(
        f'<span class="legend" style="color:{_COLOURS[j % len(_COLOURS)]}">{escape(label)}</span>'
        for key, _title, _top in _PANELS
        for j, label in enumerate(sorted(lines.get(key, {})))
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Pathway timeline: '
        f"Patient/{escape(patient_id)}</title><style>body{{font-family:sans-serif;margin:1.5em}}"
        ".panel-title{font-size:12px;font-weight:bold}.legend{margin-right:1em;font-size:12px}"
        ":target{background:#fff3cd}</style></head><body>"
        f"<h1>Pathway timeline: Patient/{escape(patient_id)}</h1>{''.join(svg)}"
        f'<p>{legend}</p><h2>Decisions</h2><ol id="decisions">{items}</ol></body></html>'
    )


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None
