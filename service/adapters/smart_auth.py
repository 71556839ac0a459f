"""Access tokens for the EHR's FHIR server: none, a static bearer token, or SMART Backend Services.

SMART Backend Services: a client_credentials grant authenticated by a JWT assertion signed with our
private key (RS384 or ES384, from a PEM or a private JWK), the token cached until 60 s before it
expires. See https://hl7.org/fhir/smart-app-launch/backend-services.html.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import jwt

from service.config import Settings

TokenSource = Callable[[], Awaitable[str | None]]
_EARLY = 60.0
_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def load_private_key(text: str) -> tuple[Any, str, str | None]:
    """(key, algorithm, kid) from a PEM, a JWK (JSON) or a path to either."""
    if not text.lstrip().startswith(("{", "-----")) and Path(text).is_file():
        text = Path(text).read_text()
    if text.lstrip().startswith("{"):
        jwk = json.loads(text)
        key = jwt.PyJWK(jwk).key
        alg = jwk.get("alg") or ("ES384" if jwk.get("kty") == "EC" else "RS384")
        return key, alg, jwk.get("kid")
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key(text.encode(), password=None)
    return key, "ES384" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS384", None


class SmartBackendTokens:
    def __init__(
        self,
        http: httpx.AsyncClient,
        token_url: str,
        client_id: str,
        private_key: str,
        scope: str,
        kid: str | None = None,
    ) -> None:
        self.http = http
        self.token_url = token_url
        self.client_id = client_id
        self.key, self.alg, jwk_kid = load_private_key(private_key)
        self.kid = kid or jwk_kid
        self.scope = scope
        self._token: str | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    def assertion(self) -> str:
        now = int(time.time())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.token_url,
            "exp": now + 300,
            "iat": now,
            "jti": uuid.uuid4().hex,
        }
        headers = {"typ": "JWT", **({"kid": self.kid} if self.kid else {})}
        return jwt.encode(claims, self.key, algorithm=self.alg, headers=headers)

    async def __call__(self) -> str | None:
        async with self._lock:
            if self._token and time.monotonic() < self._expires - _EARLY:
                return self._token
            response = await self.http.post(
                self.token_url,
                data={
                    "grant_type": "client_credentials",
                    "scope": self.scope,
                    "client_assertion_type": _ASSERTION_TYPE,
                    "client_assertion": self.assertion(),
                },
                headers={"Accept": "application/json"},
            )
            response.raise_for_status()
            body = response.json()
            self._token = str(body["access_token"])
            self._expires = time.monotonic() + float(body.get("expires_in", 300))
            return self._token


def token_source(settings: Settings, http: httpx.AsyncClient) -> TokenSource:
    if settings.fhir_auth == "bearer":
        token = settings.fhir_bearer_token

        async def static() -> str | None:
            return token

        return static
    if settings.fhir_auth == "smart":
        if not (
            settings.smart_token_url and settings.smart_client_id and settings.smart_private_key
        ):
            raise ValueError(
                "SMART auth needs smart_token_url, smart_client_id and smart_private_key"
            )
        return SmartBackendTokens(
            http,
            settings.smart_token_url,
            settings.smart_client_id,
            settings.smart_private_key,
            settings.smart_scope,
            settings.smart_key_id,
        )

    async def none() -> str | None:
        return None

    return none
