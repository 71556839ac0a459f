"""The clinician's view as a SMART on FHIR app: EHR launch and standalone launch against an
authorization server on loopback, and every refusal a clinician or an attacker could run into."""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import urlsplit

import httpx

from tests.conftest import TOKEN
from tests.support.smart_server import CLIENT_ID, SmartAuthServer


async def _launch(client: httpx.AsyncClient, server: SmartAuthServer, *,
                  iss: str | None = None, launch: str | None = None) -> httpx.Response:
    """What a browser does: the EHR opens /app/launch, follows the redirect to the authorization
    server, and is sent back to Carepath's callback. Returns the callback's answer."""
    params = {"iss": iss or server.fhir_base, **({"launch": launch} if launch else {})}
    started = await client.get("/app/launch", params=params)
    assert started.status_code == 302, started.text
    async with httpx.AsyncClient() as browser:
        approved = await browser.get(started.headers["location"])
    assert approved.status_code == 302, approved.text
    back = urlsplit(approved.headers["location"])
    assert f"{back.scheme}://{back.netloc}" == "http://carepath.test"
    return await client.get(f"{back.path}?{back.query}")


async def test_an_ehr_launch_opens_the_patient_in_context_without_a_bearer_header(
        app_client: httpx.AsyncClient, smart_server: SmartAuthServer) -> None:
    answer = await _launch(app_client, smart_server, launch=smart_server.launch_for("lrp-07"))
    assert answer.status_code == 303
    assert answer.headers["location"] == "http://carepath.test/app/patients/lrp-07"
    cookie = answer.headers["set-cookie"].lower()
    assert "carepath_session=" in cookie and "httponly" in cookie and "samesite=lax" in cookie
    assert "path=/app" in cookie

    page = await app_client.get("/app/patients/lrp-07")
    assert page.status_code == 200 and "authorization" not in page.request.headers
    assert "Case07 Scenario" in page.text and "Spinal surgical opinion" in page.text
    assert "script-src" not in page.headers["content-security-policy"]
    assert page.headers["content-security-policy"].startswith("default-src 'none'")

    [asked] = smart_server.authorize_requests
    assert asked["aud"] == smart_server.fhir_base and asked["client_id"] == CLIENT_ID
    assert asked["scope"].split() == ["launch", "openid", "fhirUser", "patient/*.rs"]
    assert asked["code_challenge_method"] == "S256" and len(asked["state"]) >= 32
    [exchanged] = smart_server.token_requests
    challenge = base64.urlsafe_b64encode(
        hashlib.sha256(exchanged["code_verifier"].encode()).digest()).rstrip(b"=").decode()
    assert challenge == asked["code_challenge"]


async def test_a_standalone_launch_asks_for_a_patient_and_opens_that_one(
        app_client: httpx.AsyncClient, smart_server: SmartAuthServer) -> None:
    smart_server.standalone_patient = "lrp-11"
    answer = await _launch(app_client, smart_server)
    assert answer.headers["location"].endswith("/app/patients/lrp-11")
    [asked] = smart_server.authorize_requests
    assert "launch" not in asked and asked["scope"].split()[0] == "launch/patient"
    page = await app_client.get("/app/patients/lrp-11")
    assert page.status_code == 200 and "Case11 Scenario" in page.text


async def test_a_session_sees_only_its_patient(app_client: httpx.AsyncClient,
                                               smart_server: SmartAuthServer) -> None:
    await _launch(app_client, smart_server, launch=smart_server.launch_for("lrp-07"))
    other = await app_client.get("/app/patients/lrp-03")
    assert other.status_code == 403 and "different patient" in other.text
    assert "Case03" not in other.text
    home = await app_client.get("/app/")
    assert home.status_code == 303 and home.headers["location"].endswith("/app/patients/lrp-07")
    app_client.cookies.clear()
    assert (await app_client.get("/app/")).status_code == 401
    assert (await app_client.get("/app/patients/lrp-07")).status_code == 401


async def test_a_token_for_another_patient_opens_that_patient_and_no_other(
        app_client: httpx.AsyncClient, smart_server: SmartAuthServer) -> None:
    smart_server.token_patient = "lrp-03"
    answer = await _launch(app_client, smart_server, launch=smart_server.launch_for("lrp-07"))
    assert answer.headers["location"].endswith("/app/patients/lrp-03")
    refused = await app_client.get("/app/patients/lrp-07")
    assert refused.status_code == 403 and "Case07" not in refused.text


async def test_a_wrong_state_is_refused_and_opens_no_session(
        app_client: httpx.AsyncClient, smart_server: SmartAuthServer) -> None:
    smart_server.tamper_state = True
    answer = await _launch(app_client, smart_server, launch=smart_server.launch_for("lrp-07"))
    assert answer.status_code == 400 and "state" in answer.text
    assert "carepath_session" not in answer.headers.get("set-cookie", "")
    assert smart_server.token_requests == []
    assert (await app_client.get("/app/patients/lrp-07")).status_code == 401


async def test_an_aud_that_is_not_the_servers_fhir_base_is_refused(
        app_client: httpx.AsyncClient, smart_server: SmartAuthServer) -> None:
    """Carepath sends aud = the iss it was launched with; a server whose FHIR base that is not
    refuses, and Carepath opens nothing."""
    answer = await _launch(app_client, smart_server, iss=f"{smart_server.base}/elsewhere/fhir",
                           launch=smart_server.launch_for("lrp-07"))
    [asked] = smart_server.authorize_requests
    assert asked["aud"] == f"{smart_server.base}/elsewhere/fhir"
    assert answer.status_code == 403 and "invalid_request" in answer.text
    assert (await app_client.get("/app/patients/lrp-07")).status_code == 401


async def test_an_id_token_for_another_client_is_refused(
        app_client: httpx.AsyncClient, smart_server: SmartAuthServer) -> None:
    smart_server.id_token_audience = "some-other-app"
    answer = await _launch(app_client, smart_server, launch=smart_server.launch_for("lrp-07"))
    assert answer.status_code == 403 and "another client" in answer.text
    assert (await app_client.get("/app/patients/lrp-07")).status_code == 401


async def test_an_issuer_not_allowed_is_never_contacted(
        app_client: httpx.AsyncClient, smart_server: SmartAuthServer) -> None:
    refused = await app_client.get("/app/launch", params={"iss": "https://evil.example/fhir",
                                                          "launch": "x"})
    assert refused.status_code == 403 and "CAREPATH_APP_ISSUERS" in refused.text
    assert smart_server.authorize_requests == []


async def test_a_callback_without_a_launch_in_this_browser_is_refused(
        app_client: httpx.AsyncClient) -> None:
    answer = await app_client.get("/app/callback", params={"code": "c", "state": "s"})
    assert answer.status_code == 400 and "Open Carepath from the EHR" in answer.text


async def test_a_forged_session_cookie_is_refused(app_client: httpx.AsyncClient,
                                                  smart_server: SmartAuthServer) -> None:
    await _launch(app_client, smart_server, launch=smart_server.launch_for("lrp-07"))
    genuine = app_client.cookies["carepath_session"]
    app_client.cookies.clear()
    app_client.cookies.set("carepath_session", genuine[:-2] + "xx", domain="carepath.test",
                           path="/app")
    assert (await app_client.get("/app/patients/lrp-07")).status_code == 401


async def test_api_callers_keep_the_bearer_timeline(app_client: httpx.AsyncClient) -> None:
    assert (await app_client.get("/patients/lrp-07/timeline")).status_code == 401
    page = await app_client.get("/patients/lrp-07/timeline",
                                headers={"Authorization": f"Bearer {TOKEN}"})
    assert page.status_code == 200 and "Case07 Scenario" in page.text


async def test_unconfigured_the_app_says_which_settings_to_set(client: httpx.AsyncClient) -> None:
    page = await client.get("/app/launch", params={"iss": "https://ehr.example/fhir"})
    assert page.status_code == 404 and "CAREPATH_APP_CLIENT_ID" in page.text
