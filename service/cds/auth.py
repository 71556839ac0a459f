"""Verify the EHR's CDS Hooks JWT: allow-listed `iss`, keys from a configured JWKS file or an
allow-listed `jku`, `aud` = the exact URL called, `exp`/`iat`, single-use `jti`. Only asymmetric
algorithms (ES384/RS384 recommended by the spec); `none` and HMAC are refused."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
from sqlalchemy.ext.asyncio import AsyncEngine

from service.cds.jti_ledger import JtiLedger
from service.errors import Unauthorized

ALGORITHMS = frozenset({"ES384", "RS384", "ES256", "ES512", "RS256", "RS512", "PS384", "PS256", "PS512"})
_JKU_TTL = 300.0
_LEEWAY = 30
MAX_LIFETIME = 3600  # seconds; CDS Hooks asks for 5 minutes, so an hour is generous


class JwtVerifier:
    """One per app; caches JWKS documents fetched from allow-listed `jku` URLs for five minutes."""

    def __init__(self, engine: AsyncEngine, http: httpx.AsyncClient, *, issuers: list[str],
                 jwks_file: Path | None, allowed_jku: list[str]) -> None:
        self.engine = engine
        self.http = http
        self.issuers = set(issuers)
        self.jwks_file = jwks_file
        self.allowed_jku = set(allowed_jku)
        self._jku_cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self._file_cache: tuple[float, dict[str, Any]] | None = None
        self._keys: dict[tuple[str, str], tuple[dict[str, Any], Any]] = {}  # (kid, alg): (JWK, key)
        self._ledger = JtiLedger(engine)

    async def verify(self, authorization: str | None, audience: str) -> dict[str, Any]:
        """The verified claims, or Unauthorized naming what is wrong."""
        if not self.issuers:
            raise Unauthorized("no CDS Hooks issuers are configured (CAREPATH_CDS_ALLOWED_ISSUERS)")
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("missing bearer JWT (Authorization: Bearer <JWT>)")
        token = token.strip()
        try:
            unread = jwt.decode_complete(token, options={"verify_signature": False})  # one parse for both
            header, unverified = unread["header"], unread["payload"]
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"malformed JWT: {exc}") from exc
        alg = _text(header, "alg", "header")
        if alg not in ALGORITHMS:
            raise Unauthorized(f"JWT algorithm {alg!r} is not accepted (use ES384 or RS384)")
        if (_text(header, "typ", "header") or "JWT").upper() != "JWT":
            raise Unauthorized("JWT header typ must be JWT")
        kid = _text(header, "kid", "header")
        if not kid:
            raise Unauthorized("JWT header kid is required")
        issuer = _text(unverified, "iss", "claim")
        if issuer not in self.issuers:
            raise Unauthorized(f"JWT issuer {issuer!r} is not allowed")
        key = await self._key(_text(header, "jku", "header"), kid, alg)
        try:
            claims = jwt.decode(token, key, algorithms=[alg], audience=audience, issuer=issuer,
                                leeway=_LEEWAY, options={"require": ["iss", "aud", "exp", "iat", "jti"]})
        except jwt.InvalidAudienceError as exc:
            raise Unauthorized(f"JWT aud must be the URL called ({audience})") from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"JWT rejected: {exc}") from exc
        except (OverflowError, ValueError, TypeError) as exc:  # e.g. exp = 1e400 (infinity)
            raise Unauthorized("JWT rejected: a time claim is not a usable NumericDate") from exc
        exp = claims["exp"]
        if not isinstance(exp, int | float) or exp > time.time() + MAX_LIFETIME:
            raise Unauthorized(f"JWT exp must be a NumericDate at most {MAX_LIFETIME} s ahead")
        await self._single_use(issuer, str(claims["jti"]), int(claims["exp"]))
        return claims

    async def _key(self, jku: str | None, kid: str, alg: str) -> Any:
        if jku is not None:
            if jku not in self.allowed_jku:
                raise Unauthorized(f"JWT jku {jku!r} is not allowed")
            jwks = await self._fetch_jwks(jku)
        elif self.jwks_file is not None:
            jwks = self._read_jwks_file(self.jwks_file)
        else:
            raise Unauthorized("no JWKS for this issuer: configure CAREPATH_CDS_JWKS_FILE or send jku")
        for candidate in jwks.get("keys") or []:
            if isinstance(candidate, dict) and candidate.get("kid") == kid:
                return self._public_key(candidate, kid, alg)
        raise Unauthorized(f"no key {kid!r} in the issuer's JWKS")

    def _public_key(self, jwk: dict[str, Any], kid: str, alg: str) -> Any:
        """The key a JWK describes, built once for each JWKS document read (a new document, from
        a changed file or a refetched `jku`, has new entries and so gets its keys built anew)."""
        built = self._keys.get((kid, alg))
        if built is not None and built[0] is jwk:
            return built[1]
        try:
            key = jwt.PyJWK(jwk, algorithm=alg).key
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"JWKS key {kid!r} does not fit {alg}: {exc}") from exc
        self._keys[(kid, alg)] = (jwk, key)
        return key

    async def _fetch_jwks(self, url: str) -> dict[str, Any]:
        cached = self._jku_cache.get(url)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        try:
            response = await self.http.get(url, timeout=5.0)
            response.raise_for_status()
            jwks = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise Unauthorized(f"could not fetch the JWKS at {url}: {exc.__class__.__name__}") from exc
        if not isinstance(jwks, dict):
            raise Unauthorized(f"the JWKS at {url} is not a JSON object")
        self._jku_cache[url] = (time.monotonic() + _JKU_TTL, jwks)
        return jwks

    def _read_jwks_file(self, path: Path) -> dict[str, Any]:
        mtime = path.stat().st_mtime
        if self._file_cache is None or self._file_cache[0] != mtime:
            self._file_cache = (mtime, json.loads(path.read_text()))
        return self._file_cache[1]

    async def _single_use(self, issuer: str, jti: str, exp: int) -> None:
        """Record the jti; a second use within its lifetime is a replay (see `JtiLedger`)."""
        if not await self._ledger.first_use(issuer, jti, datetime.fromtimestamp(exp + _LEEWAY, UTC)):
            raise Unauthorized("JWT replayed (jti already used)")


def _text(fields: dict[str, Any], name: str, where: str) -> str | None:
    """A JOSE header parameter or claim that must be a string when present."""
    value = fields.get(name)
    if value is not None and not isinstance(value, str):
        raise Unauthorized(f"JWT {where} {name} must be a string")
    return value
