"""The clinician's view as a SMART on FHIR app (SMART App Launch 2.x).

- `GET /app/launch?iss=...&launch=...`: EHR launch (the EHR opens this URL); without `launch` it
  is a standalone launch (`iss` defaults to the first of CAREPATH_APP_ISSUERS). Only allow-listed
  `iss` values are contacted. Redirects to the EHR's authorize endpoint with PKCE S256, a fresh
  `state` and `aud` = the FHIR base.
- `GET /app/callback`: checks `state` against this browser's pending launch, exchanges the code,
  checks the id_token, and opens a session bound to the patient in the token's context.
- `GET /app/patients/{id}`: the page, for that patient only; any other patient is refused (403).
"""

from __future__ import annotations

import hmac
import logging
import re
from dataclasses import asdict
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from service.adapters.smart_launch import (
    LaunchRefused,
    SmartServer,
    authorization,
    discover,
    exchange_code,
    verify_id_token,
)
from service.entrypoints.api_docs import pages
from service.entrypoints.deps import ServicesDep
from service.entrypoints.views import render
from service.service_layer import patient_view

router = APIRouter(prefix="/app", tags=["Clinician app (SMART on FHIR)"])
log = logging.getLogger("carepath.app")
LAUNCH_COOKIE, SESSION_COOKIE = "carepath_launch", "carepath_session"
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def _page(status: int, title: str, message: str, hint: str = "") -> HTMLResponse:
    return HTMLResponse(render.message_page(title, message, hint), status_code=status,
                        headers=render.headers())


def _base(request: Request, base_url: str | None) -> str:
    return (base_url or str(request.base_url)).rstrip("/")


def _set_cookie(response: Response, name: str, value: str, base: str, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/app", httponly=True, samesite="lax",
                        secure=base.startswith("https://"))


@router.get("/launch", response_class=HTMLResponse,
            responses={302: {"description": "to the EHR's authorization endpoint"},
                       **pages(400, 403, 404, 502)})
async def launch(request: Request, services: ServicesDep, iss: str | None = None,
                 launch: str | None = None) -> Response:
    """Start an EHR launch (`iss` and `launch`) or a standalone launch (no `launch`)."""
    settings = services.settings
    if not settings.app_client_id:
        return _page(404, "Clinician app not configured",
                     "This Carepath server has no SMART client registration.",
                     "Set CAREPATH_APP_CLIENT_ID and CAREPATH_APP_ISSUERS.")
    allowed = {i.rstrip("/") for i in settings.app_issuers}
    iss = (iss or (settings.app_issuers[0] if settings.app_issuers else "")).rstrip("/")
    if not iss:
        return _page(400, "No FHIR server named", "The launch names no iss (FHIR server).",
                     "Open Carepath from the EHR, or set CAREPATH_APP_ISSUERS.")
    if iss not in allowed:
        return _page(403, "FHIR server not allowed", f"{iss} is not a FHIR server this Carepath "
                     "trusts.", "Add it to CAREPATH_APP_ISSUERS if it should be.")
    try:
        server = await discover(services.http, iss)
    except LaunchRefused as exc:
        log.warning("SMART launch refused at discovery: %s", exc)
        return _page(502, "Cannot reach the EHR's authorization server", str(exc))
    base = _base(request, settings.base_url)
    redirect_uri = f"{base}/app/callback"
    request_ = authorization(server, client_id=settings.app_client_id, redirect_uri=redirect_uri,
                             launch=launch)
    cookie = await services.app_sessions.begin_launch(iss, {
        "server": asdict(server), "state": request_.state, "code_verifier": request_.code_verifier,
        "redirect_uri": redirect_uri}, services.clock())
    response = RedirectResponse(request_.url, status_code=302)
    _set_cookie(response, LAUNCH_COOKIE, cookie, base, 600)
    return response


@router.get("/callback", response_class=HTMLResponse,
            responses={303: {"description": "to the patient's page"}, **pages(400, 403, 502)})
async def callback(request: Request, services: ServicesDep, code: str | None = None,
                   state: str | None = None, error: str | None = None) -> Response:
    """The EHR's redirect back: `state` checked, code exchanged, session opened for one patient."""
    settings = services.settings
    now = services.clock()
    launch_cookie = request.cookies.get(LAUNCH_COOKIE)
    pending = await services.app_sessions.launch(launch_cookie, now)
    if pending is None:
        return _page(400, "Launch expired", "This sign-in was not started in this browser, or it "
                     "took longer than 10 minutes.", "Open Carepath from the EHR again.")
    if error:
        return _page(403, "Access not granted", f"The EHR's authorization server answered {error}.")
    if not state or not hmac.compare_digest(state.encode(), str(pending.data["state"]).encode()):
        log.warning("SMART callback refused: state does not match the launch")
        return _page(400, "Launch refused", "The state returned by the EHR does not match this "
                     "launch.", "Open Carepath from the EHR again.")
    if not code or not settings.app_client_id:
        return _page(400, "Launch refused", "The EHR returned no authorization code.")
    server = SmartServer(**pending.data["server"])
    try:
        token = await exchange_code(services.http, server, client_id=settings.app_client_id,
                                    client_secret=settings.app_client_secret,
                                    redirect_uri=pending.data["redirect_uri"], code=code,
                                    code_verifier=pending.data["code_verifier"])
        patient = token.get("patient")
        if not isinstance(patient, str) or not _FHIR_ID.fullmatch(patient):
            raise LaunchRefused("the EHR granted no patient context (launch/patient)")
        claims = (await verify_id_token(services.http, server, token["id_token"],
                                        settings.app_client_id)
                  if token.get("id_token") else {})
    except LaunchRefused as exc:
        log.warning("SMART launch refused: %s", exc)
        return _page(403, "Launch refused", str(exc))
    cookie = await services.app_sessions.sign_in(
        launch_cookie, issuer=pending.issuer, patient_id=patient,
        fhir_user=claims.get("fhirUser"), now=now)
    base = _base(request, settings.base_url)
    response = RedirectResponse(f"{base}/app/patients/{quote(patient, safe='')}", status_code=303)
    _set_cookie(response, SESSION_COOKIE, cookie, base, settings.app_session_seconds)
    response.delete_cookie(LAUNCH_COOKIE, path="/app")
    log.info("SMART launch completed")
    return response


@router.get("/patients/{patient_id}", response_class=HTMLResponse,
            responses=pages(400, 401, 403, 404))
async def patient_page(patient_id: str, request: Request, services: ServicesDep) -> Response:
    """The page for the patient in the session's context; no other patient."""
    now = services.clock()
    session = await services.app_sessions.session(request.cookies.get(SESSION_COOKIE), now)
    if session is None:
        return _page(401, "Not signed in", "Open Carepath from the patient's chart in the EHR.")
    if patient_id != session.patient_id:
        return _page(403, "Another patient", "This session was opened for a different patient.",
                     "Open Carepath from this patient's chart in the EHR.")
    view = await patient_view.load(services.engine, services.pathway, patient_id, now)
    if view is None:
        return _page(404, "Nothing on file", "Carepath has no data for this patient yet.")
    return HTMLResponse(render.patient_page(view), headers=render.headers())


@router.get("/", response_class=HTMLResponse,
            responses={303: {"description": "to the signed-in patient's page"}, **pages(401)})
async def home(request: Request, services: ServicesDep) -> Response:
    """The signed-in patient's page (a bookmark to the app lands here)."""
    session = await services.app_sessions.session(request.cookies.get(SESSION_COOKIE),
                                                  services.clock())
    if session is None:
        return _page(401, "Not signed in", "Open Carepath from the patient's chart in the EHR.")
    base = _base(request, services.settings.base_url)
    return RedirectResponse(f"{base}/app/patients/{quote(session.patient_id, safe='')}", 303)
