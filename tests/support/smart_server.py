"""A small SMART App Launch 2.x authorization server for tests, run on loopback.

It serves `{fhir}/.well-known/smart-configuration`, an authorize endpoint that approves at once
(the EHR's user already signed in), a token endpoint that checks the PKCE verifier, and a JWKS for
its RS256 id_tokens. It refuses what a real server refuses (unknown client, wrong redirect_uri,
no S256 challenge, `aud` other than its FHIR base); the knobs let a test make it misbehave the way
a hostile or broken server would (tampered `state`, a token for another patient, an id_token for
another client)."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse

CLIENT_ID = "carepath-clinician-app"


@dataclass
class SmartAuthServer:
    base: str = ""  # set once serving: http://127.0.0.1:PORT
    launches: dict[str, str] = field(default_factory=dict)  # launch token -> patient id
    standalone_patient: str = ""
    redirect_uris: set[str] = field(default_factory=set)
    # misbehaviour, for refusal tests
    tamper_state: bool = False
    token_patient: str | None = None
    id_token_audience: str | None = None
    # what it saw, for assertions
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    _codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    _key: Any = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))

    @property
    def fhir_base(self) -> str:
        return f"{self.base}/fhir"

    def launch_for(self, patient_id: str) -> str:
        token = secrets.token_urlsafe(8)
        self.launches[token] = patient_id
        return token

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/{fhir:path}/.well-known/smart-configuration")
        async def configuration(fhir: str) -> dict[str, Any]:
            return {"issuer": self.base, "authorization_endpoint": f"{self.base}/auth/authorize",
                    "token_endpoint": f"{self.base}/auth/token",
                    "jwks_uri": f"{self.base}/auth/jwks",
                    "grant_types_supported": ["authorization_code"],
                    "code_challenge_methods_supported": ["S256"],
                    "capabilities": ["launch-ehr", "launch-standalone", "client-public",
                                     "context-ehr-patient", "context-standalone-patient",
                                     "sso-openid-connect", "permission-v2"]}

        @app.get("/auth/jwks")
        async def jwks() -> dict[str, Any]:
            public = jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
            return {"keys": [{**public, "kid": "test-key", "alg": "RS256", "use": "sig"}]}

        @app.get("/auth/authorize")
        async def authorize(request: Request) -> Any:
            q = dict(request.query_params)
            self.authorize_requests.append(q)
            if q.get("client_id") != CLIENT_ID or q.get("redirect_uri") not in self.redirect_uris:
                return JSONResponse({"error": "invalid_client"}, 400)

            def back(**params: str) -> RedirectResponse:
                return RedirectResponse(f"{q['redirect_uri']}?{urlencode(params)}", 302)

            state = q.get("state", "")
            if q.get("response_type") != "code" or q.get("code_challenge_method") != "S256" \
                    or not q.get("code_challenge") or not state:
                return back(error="invalid_request", state=state)
            if q.get("aud") != self.fhir_base:
                return back(error="invalid_request",
                            error_description="aud is not this server's FHIR base", state=state)
            scopes = set(q.get("scope", "").split())
            if "launch" in scopes and q.get("launch") in self.launches:
                patient = self.launches[q["launch"]]
            elif "launch/patient" in scopes and self.standalone_patient:
                patient = self.standalone_patient
            else:
                return back(error="invalid_scope", state=state)
            code = secrets.token_urlsafe(16)
            self._codes[code] = {"challenge": q["code_challenge"],
                                 "redirect_uri": q["redirect_uri"], "patient": patient,
                                 "scope": q["scope"]}
            return back(code=code, state="tampered" if self.tamper_state else state)

        @app.post("/auth/token")
        async def token(request: Request) -> Any:
            form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
            self.token_requests.append(form)
            grant_type, code, redirect_uri, client_id, code_verifier = (
                form.get(k, "") for k in ("grant_type", "code", "redirect_uri", "client_id",
                                          "code_verifier"))
            issued = self._codes.pop(code, None)
            digest = base64.urlsafe_b64encode(hashlib.sha256(code_verifier.encode()).digest())
            if (grant_type != "authorization_code" or issued is None or client_id != CLIENT_ID
                    or redirect_uri != issued["redirect_uri"]
                    or digest.rstrip(b"=").decode() != issued["challenge"]):
                return JSONResponse({"error": "invalid_grant"}, 400)
            now = int(time.time())
            claims = {"iss": self.base, "sub": "dr-1", "aud": self.id_token_audience or CLIENT_ID,
                      "iat": now, "exp": now + 300,
                      "fhirUser": f"{self.fhir_base}/Practitioner/dr-1"}
            id_token = jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": "test-key"})
            return {"access_token": secrets.token_urlsafe(24), "token_type": "Bearer",
                    "expires_in": 3600, "scope": issued["scope"], "id_token": id_token,
                    "patient": self.token_patient or issued["patient"]}

        return app


def main() -> None:
    """Play the EHR's authorization server on loopback, to try the clinician app by hand."""
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m tests.support.smart_server")
    parser.add_argument("--port", type=int, default=9001)
    parser.add_argument("--carepath", default="http://127.0.0.1:8080", help="Carepath's base URL")
    parser.add_argument("--patient", default="lrp-03", help="the patient in the EHR's context")
    args = parser.parse_args()
    server = SmartAuthServer(base=f"http://127.0.0.1:{args.port}", standalone_patient=args.patient,
                             redirect_uris={f"{args.carepath}/app/callback"})
    launch = server.launch_for(args.patient)
    print(f"Carepath needs: CAREPATH_APP_CLIENT_ID={CLIENT_ID} "
          f"CAREPATH_APP_ISSUERS={server.fhir_base}\n"
          f"EHR launch, open: {args.carepath}/app/launch?iss={server.fhir_base}&launch={launch}",
          flush=True)
    uvicorn.run(server.app(), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
