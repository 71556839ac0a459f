"""The clinician's page (what API callers get from `GET /patients/{id}/timeline`, and clinicians
through the SMART app): proposals and Tasks first, one chart per measure the pathway uses, sides
kept apart by code, human labels, and every decision explained."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import httpx

from tests.conftest import FIXTURES, PATHWAY_FILE, make_settings

FHIR = {"content-type": "application/fhir+json"}
LRP = "http://example.org/CodeSystem/lrp-exam"
SNOMED = "http://snomed.info/sct"


async def _post_scenario(client: httpx.AsyncClient, case: str) -> None:
    for step in sorted((FIXTURES / case).glob("step-*.bundle.json")):
        posted = await client.post("/fhir", content=step.read_bytes(), headers=FHIR)
        assert posted.status_code == 200


def _chart(html: str, concept: str) -> str:
    start = html.index(f'data-concept="{concept}"')
    return html[start:html.index("</figure>", start)]


def _ys(chart: str, side: str) -> list[float]:
    series = chart[chart.index(f'data-side="{side}"'):]
    points = re.search(r'points="([^"]+)"', series).group(1)  # type: ignore[union-attr]
    return [float(p.split(",")[1]) for p in points.split()]


async def test_the_page_leads_with_proposals_and_tasks_then_charts_then_reasons(
        client: httpx.AsyncClient) -> None:
    await _post_scenario(client, "07-ehl-drop-confirmed")
    page = await client.get("/patients/lrp-07/timeline")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    order = [html.index(f'id="{part}"') for part in ("patient", "proposals", "tasks", "charts",
                                                      "decisions")]
    assert order == sorted(order)
    assert "Case07 Scenario" in html and "born 1 Dec 1986" in html
    proposals = html[html.index('id="proposals"'):html.index('id="tasks"')]
    assert proposals.count('class="proposal"') == 2 and "Spinal surgical opinion" in proposals
    assert "asap" in proposals and "draft" in proposals and "Severe motor deficit" in proposals
    assert "Re-examine motor strength" in html[html.index('id="tasks"'):]


async def test_each_measure_the_pathway_uses_gets_a_chart_with_real_axes(
        client: httpx.AsyncClient) -> None:
    await _post_scenario(client, "07-ehl-drop-confirmed")
    html = (await client.get("/patients/lrp-07/timeline")).text
    charted = re.findall(r'<figure class="chart" id="chart-([^"]+)"', html)
    assert charted[0] == "mrc.L5-EHL", "the measure behind the decisions comes first"
    assert {"mrc.L2-HIPFLEX", "mrc.S1-PF", "pain_nrs"} <= set(charted)
    ehl = _chart(html, "mrc.L5-EHL")
    assert "MRC grade, L5 great-toe extension" in ehl
    labels = re.findall(r'class="y-label">([^<]+)<', ehl)
    assert labels == ["0", "1", "2", "3", "4", "5"]
    assert len(re.findall(r'class="x-label">', ehl)) >= 4
    frame = re.search(r'<rect x="\d+" y="(\d+)"[^>]*class="frame"', ehl)
    assert frame is not None
    frame_top = float(frame.group(1))
    assert min(_ys(ehl, "right")) > frame_top + 5, "grade 5 is drawn inside the frame"
    assert _ys(ehl, "left")[-1] > _ys(ehl, "right")[-1], "left (grade 3) sits below right (5)"
    assert "mrc.L5-EHL" not in re.sub(r'(data-concept|id)="[^"]*"', "", html)
    assert "Not recorded for this patient" in html and "Oswestry Disability Index" in html


async def test_a_decision_is_marked_with_its_evidence_and_explained_below(
        client: httpx.AsyncClient) -> None:
    await _post_scenario(client, "07-ehl-drop-confirmed")
    html = (await client.get("/patients/lrp-07/timeline")).text
    badge = html[html.index('class="badge-link" data-rule="R3"'):]
    hover = badge[badge.index("<title>") + 7:badge.index("</title>")]
    assert hover.startswith("R3 Severe motor deficit / foot drop (asap)")
    assert "MRC grade, L5 great-toe extension, left: 3" in hover
    ehl = _chart(html, "mrc.L5-EHL")
    assert 'class="flag" data-rule="R4"' in ehl and ehl.count('class="ring urgent"') >= 3
    explained = html[html.index('id="decision-0"'):]
    assert "Severe motor deficit" in explained and "Source: GIRFT" in explained


async def test_date_only_times_and_sides_without_display_are_drawn(
        client: httpx.AsyncClient) -> None:
    def grade(oid: str, side_code: str, value: int, day: str) -> dict[str, object]:
        return {"resourceType": "Observation", "id": oid, "status": "final",
                "code": {"coding": [{"system": LRP, "code": "LRP-MRC-L4-ANKLEDF"}]},
                "subject": {"reference": "Patient/sides"}, "effectiveDateTime": day,
                "bodySite": {"coding": [{"system": SNOMED, "code": side_code}]},
                "valueInteger": value}

    resources = [grade("l1", "7771000", 4, "2026-02-20"), grade("r1", "24028007", 5, "2026-02-20"),
                 grade("l2", "7771000", 3, "2026-02-27"), grade("r2", "24028007", 5, "2026-02-27"),
                 {"resourceType": "Observation", "id": "nrs", "status": "final",
                  "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3"}]},
                  "subject": {"reference": "Patient/sides"}, "effectiveDateTime": "2026-02-25",
                  "valueQuantity": {"value": 6, "system": "http://unitsofmeasure.org",
                                    "code": "{score}"}}]
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"Observation/{r['id']}"}}
        for r in resources]}
    assert (await client.post("/fhir", json=bundle, headers=FHIR)).status_code == 200
    html = (await client.get("/patients/sides/timeline")).text
    ankle = _chart(html, "mrc.L4-ANKLEDF")
    assert len(_ys(ankle, "left")) == 2 and len(_ys(ankle, "right")) == 2
    assert _ys(ankle, "left")[1] > _ys(ankle, "right")[1]
    assert "MRC grade, L4 ankle dorsiflexion, left: 3 on 27 Feb 2026" in ankle
    pain = _chart(html, "pain_nrs")
    assert "Pain severity 0-10 numeric rating: 6 on 25 Feb 2026" in pain


async def test_a_sites_local_code_added_in_the_pathway_is_charted(
        client_for, sqlite_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pathways = tmp_path / "pathways"
    pathways.mkdir()
    text = PATHWAY_FILE.read_text().replace(
        "  pain_nrs:\n    description: Pain severity 0-10 numeric rating\n"
        "    codes: [loinc#72514-3, loinc#38208-5]",
        "  pain_nrs:\n    description: Pain severity 0-10 numeric rating\n"
        "    codes: [loinc#72514-3, loinc#38208-5, lrp#SITE-PAIN-7]")
    assert "SITE-PAIN-7" in text
    (pathways / PATHWAY_FILE.name).write_text(text)
    client = await client_for(make_settings(sqlite_url, pathways_dir=pathways))
    local = {"resourceType": "Observation", "id": "site-pain", "status": "final",
             "code": {"coding": [{"system": LRP, "code": "SITE-PAIN-7"}]},
             "subject": {"reference": "Patient/site"}, "effectiveDateTime": "2026-02-28T10:00:00Z",
             "valueInteger": 8}
    assert (await client.post("/fhir/Observation", json=local, headers=FHIR)).status_code == 201
    html = (await client.get("/patients/site/timeline")).text
    assert "Pain severity 0-10 numeric rating: 8 on 28 Feb 2026" in _chart(html, "pain_nrs")
    shutil.rmtree(pathways)


async def test_the_page_needs_a_token_and_a_known_patient(client: httpx.AsyncClient) -> None:
    unknown = await client.get("/patients/nobody/timeline")
    assert unknown.status_code == 404 and unknown.json()["resourceType"] == "OperationOutcome"
    anonymous = await client.get("/patients/lrp-07/timeline", headers={"Authorization": ""})
    assert anonymous.status_code == 401


async def test_the_ehrs_own_orders_are_not_listed_as_the_pathways_proposals(
        client: httpx.AsyncClient) -> None:
    await _post_scenario(client, "02-clinician-mri-blocked")
    html = (await client.get("/patients/lrp-02/timeline")).text
    proposals = html[html.index('id="proposals"'):html.index('id="tasks"')]
    assert "Referral to physiotherapy" in proposals
    assert "MR Lumbar spine" not in proposals, "the clinician's own MRI draft is not ours"
    assert "Imaging not indicated yet" in html[html.index('id="tasks"'):html.index('id="charts"')]


async def test_red_flag_evidence_reads_in_the_records_own_words(client: httpx.AsyncClient) -> None:
    await _post_scenario(client, "03-urinary-retention")
    html = (await client.get("/patients/lrp-03/timeline")).text
    explained = html[html.index('id="decisions"'):]
    assert "Retention of urine, unspecified (R33.9): confirmed" in explained
    assert "(a-bladder)" not in html and "(bladder)" in explained


def test_an_overdue_task_is_listed_first_and_says_since_when(pathway) -> None:  # type: ignore[no-untyped-def]
    from service.entrypoints.views.render import patient_page
    from service.service_layer.patient_view import build
    from tests.conftest import AS_OF

    def task(tid: str, text: str, due: str | None) -> dict[str, object]:
        return {"resourceType": "Task", "id": tid, "status": "requested", "intent": "proposal",
                "priority": "routine", "description": text, "for": {"reference": "Patient/p"},
                "identifier": [{"value": f"urn:lrp:p:e:task:{tid}"}],
                "note": [{"text": "Raised by R0"}],
                **({"restriction": {"period": {"end": due}}} if due else {})}

    patient = {"resourceType": "Patient", "id": "p", "birthDate": "1970-05-01"}
    view = build(pathway, "p", [patient],
                 [task("a", "Collect pain NRS and ODI", None),
                  task("b", "Red-flag screen due", "2026-02-20T09:00:00Z"),
                  task("c", "Someone else's task", None) | {"identifier": []}], [], AS_OF)
    assert [t.description for t in view.tasks] == ["Red-flag screen due",
                                                   "Collect pain NRS and ODI"]
    assert view.tasks[0].overdue and view.tasks[0].raised_by == "R0"
    html = patient_page(view)
    assert 'class="task overdue"' in html and "overdue</strong> since 20 Feb 2026 09:00" in html
    assert view.header.age == 55 and "No pathway rule has fired" in html
