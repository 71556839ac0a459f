"""The clinician app's side of SMART App Launch 2.x (EHR launch and standalone launch):
discovery at `{iss}/.well-known/smart-configuration`, the authorization request (PKCE S256,
`state`, `aud` = the FHIR base), the code exchange at the token endpoint, and the id_token check.

Authlib's framework-neutral OAuth 2.0 pieces build the authorize URL (RFC 6749 4.1.1), the S256
code challenge (RFC 7636) and the token request body, so those details are a maintained library's;
the requests themselves go through the service's shared httpx client (Authlib's own httpx client
is deprecated in favour of another HTTP library). A confidential client authenticates with HTTP
Basic (client_secret_basic), a public one by PKCE alone. The id_token is checked with PyJWT
(already used for CDS Hooks) against the server's `jwks_uri`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request
from authlib.oauth2.rfc7636 import create_s256_code_challenge

EHR_SCOPE = "launch openid fhirUser patient/*.rs"
STANDALONE_SCOPE = "launch/patient openid fhirUser patient/*.rs"
_ID_TOKEN_ALGORITHMS = ["RS256", "RS384", "ES256", "ES384", "PS256", "PS384"]
_LEEWAY = 30


class LaunchRefused(Exception):
    """The launch cannot go on; `str()` says why in words a clinician's IT desk can act on."""


@dataclass(frozen=True)
class SmartServer:
    """What discovery told us about the EHR's authorization server for one FHIR base."""

    fhir_base: str
    authorization_endpoint: str
    token_endpoint: str
    issuer: str | None = None
    jwks_uri: str | None = None


@dataclass(frozen=True)
class Authorization:
    """A PKCE authorization request in flight: where to send the browser, and what to remember."""

    url: str
    state: str
    code_verifier: str


async def _json_object(http: httpx.AsyncClient, url: str) -> dict[str, Any]:
    """GET a JSON object from the EHR's authorization server; anything else refuses the launch."""
    try:
        response = await http.get(url, headers={"Accept": "application/json"}, timeout=10.0)
        response.raise_for_status()
        found = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise LaunchRefused(f"cannot read {url}: {type(exc).__name__}") from exc
    if not isinstance(found, dict):
        raise LaunchRefused(f"{url} is not a JSON object")
    return found


async def discover(http: httpx.AsyncClient, iss: str) -> SmartServer:
    """Read `{iss}/.well-known/smart-configuration`; refuse a server that does not offer S256."""
    where = f"{iss.rstrip('/')}/.well-known/smart-configuration"
    config = await _json_object(http, where)
    missing = [k for k in ("authorization_endpoint", "token_endpoint")
               if not isinstance(config.get(k), str)]
    if missing:
        raise LaunchRefused(f"{where} names no {' or '.join(missing)}")
    if "S256" not in (config.get("code_challenge_methods_supported") or []):
        raise LaunchRefused(f"{where} does not offer PKCE S256 (code_challenge_methods_supported)")
    return SmartServer(fhir_base=iss, authorization_endpoint=config["authorization_endpoint"],
                       token_endpoint=config["token_endpoint"], issuer=config.get("issuer"),
                       jwks_uri=config.get("jwks_uri"))


def authorization(server: SmartServer, *, client_id: str, redirect_uri: str,
                  launch: str | None) -> Authorization:
    """The authorize URL: EHR launch when the EHR gave a `launch`, standalone otherwise."""
    state, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(64)
    extra = {"launch": launch} if launch else {}
    url = prepare_grant_uri(server.authorization_endpoint, client_id, "code",
                            redirect_uri=redirect_uri,
                            scope=EHR_SCOPE if launch else STANDALONE_SCOPE, state=state,
                            aud=server.fhir_base,
                            code_challenge=create_s256_code_challenge(verifier),
                            code_challenge_method="S256", **extra)
    return Authorization(url=url, state=state, code_verifier=verifier)


async def exchange_code(http: httpx.AsyncClient, server: SmartServer, *, client_id: str,
                        client_secret: str | None, redirect_uri: str, code: str,
                        code_verifier: str) -> dict[str, Any]:
    """The token response for an authorization code (with the PKCE verifier)."""
    body = prepare_token_request("authorization_code", redirect_uri=redirect_uri, code=code,
                                 code_verifier=code_verifier,
                                 **({} if client_secret else {"client_id": client_id}))
    try:
        response = await http.post(
            server.token_endpoint, content=body, timeout=10.0,
            auth=(client_id, client_secret) if client_secret else None,
            headers={"Content-Type": "application/x-www-form-urlencoded",
                     "Accept": "application/json"})
        token = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise LaunchRefused(f"cannot reach the token endpoint: {type(exc).__name__}") from exc
    if not isinstance(token, dict):
        raise LaunchRefused("the token endpoint answered something other than a JSON object")
    if response.status_code != 200 or "error" in token:
        problem = token.get("error", response.status_code)
        raise LaunchRefused(f"the token endpoint refused the code: {problem}")
    if token.get("token_type", "").lower() != "bearer" or not token.get("access_token"):
        raise LaunchRefused("the token endpoint issued no bearer access token")
    return token


async def verify_id_token(http: httpx.AsyncClient, server: SmartServer, id_token: str,
                          client_id: str) -> dict[str, Any]:
    """The id_token's claims: signed by a key from `jwks_uri`, `aud` = our client_id, issued by
    the server discovery named, not expired. Anything else refuses the launch."""
    if not server.jwks_uri:
        raise LaunchRefused("an id_token was issued but smart-configuration names no jwks_uri")
    jwks = await _json_object(http, server.jwks_uri)
    try:
        header = jwt.get_unverified_header(id_token)
        keys = jwt.PyJWKSet.from_dict(jwks)
        key = next((k for k in keys.keys if k.key_id == header.get("kid")), None)
    except (ValueError, jwt.PyJWTError) as exc:
        raise LaunchRefused(f"cannot check the id_token: {type(exc).__name__}") from exc
    if key is None:
        raise LaunchRefused("the id_token is signed with a key the server's jwks_uri does not list")
    try:
        return jwt.decode(id_token, key, algorithms=_ID_TOKEN_ALGORITHMS, audience=client_id,
                          issuer=server.issuer or server.fhir_base, leeway=_LEEWAY,
                          options={"require": ["iss", "sub", "aud", "exp", "iat"]})
    except jwt.InvalidAudienceError as exc:
        raise LaunchRefused("the id_token was issued to another client (aud is not ours)") from exc
    except jwt.PyJWTError as exc:
        raise LaunchRefused(f"the id_token is not valid: {exc}") from exc
