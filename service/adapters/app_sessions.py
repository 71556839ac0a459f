"""Server-side state of the clinician app: a pending SMART launch (state, PKCE verifier, which
server) and, once the code is exchanged, a session bound to the one patient in the token's context.

The browser holds only a random secret, signed with itsdangerous (so a forged or truncated cookie
is refused before any database read) in an HttpOnly, SameSite=Lax cookie; the table stores the
secret's SHA-256, never the secret, and never the access token.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.ext.asyncio import AsyncEngine

from service.adapters.tables import app_sessions as table

LAUNCH_TTL = timedelta(minutes=10)


@dataclass(frozen=True)
class AppSession:
    """A signed-in clinician's view: which FHIR server launched it and the patient it may see."""

    issuer: str
    patient_id: str
    fhir_user: str | None
    expires_at: datetime


@dataclass(frozen=True)
class PendingLaunch:
    issuer: str
    data: dict[str, Any]


class AppSessions:
    def __init__(self, engine: AsyncEngine, signing_secret: str, max_age_seconds: int) -> None:
        self.engine = engine
        self.max_age = max_age_seconds
        self._signer = URLSafeTimedSerializer(signing_secret, salt="carepath-app-session")

    def _secret_of(self, cookie: str | None, max_age: float) -> str | None:
        if not cookie:
            return None
        try:
            value = self._signer.loads(cookie, max_age=max_age)
        except BadSignature:
            return None
        return value if isinstance(value, str) else None

    @staticmethod
    def _key(secret: str) -> str:
        return hashlib.sha256(secret.encode()).hexdigest()

    async def _insert(self, conn: Any, *, stage: str, issuer: str, patient_id: str | None,
                      data: dict[str, Any], now: datetime, ttl: timedelta) -> str:
        secret = secrets.token_urlsafe(32)
        await conn.execute(sa.delete(table).where(table.c.expires_at < now))
        await conn.execute(sa.insert(table).values(
            id=self._key(secret), stage=stage, issuer=issuer, patient_id=patient_id,
            data=orjson.dumps(data).decode(), created_at=now, expires_at=now + ttl))
        return self._signer.dumps(secret)

    async def begin_launch(self, issuer: str, data: dict[str, Any], now: datetime) -> str:
        """Remember a launch until the EHR redirects back; returns the cookie value."""
        async with self.engine.begin() as conn:
            return await self._insert(conn, stage="launch", issuer=issuer, patient_id=None,
                                      data=data, now=now, ttl=LAUNCH_TTL)

    async def launch(self, cookie: str | None, now: datetime) -> PendingLaunch | None:
        row = await self._row(cookie, "launch", LAUNCH_TTL.total_seconds(), now)
        return PendingLaunch(row.issuer, orjson.loads(row.data)) if row else None

    async def sign_in(self, launch_cookie: str | None, *, issuer: str, patient_id: str,
                      fhir_user: str | None, now: datetime) -> str:
        """Replace the pending launch by a session (a new secret: no session fixation)."""
        secret = self._secret_of(launch_cookie, LAUNCH_TTL.total_seconds())
        async with self.engine.begin() as conn:
            if secret is not None:
                await conn.execute(sa.delete(table).where(table.c.id == self._key(secret)))
            return await self._insert(conn, stage="session", issuer=issuer, patient_id=patient_id,
                                      data={"fhirUser": fhir_user}, now=now,
                                      ttl=timedelta(seconds=self.max_age))

    async def session(self, cookie: str | None, now: datetime) -> AppSession | None:
        row = await self._row(cookie, "session", self.max_age, now)
        if row is None or row.patient_id is None:
            return None
        return AppSession(row.issuer, row.patient_id, orjson.loads(row.data).get("fhirUser"),
                          row.expires_at)

    async def _row(self, cookie: str | None, stage: str, max_age: float, now: datetime) -> Any:
        secret = self._secret_of(cookie, max_age)
        if secret is None:
            return None
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(table).where(
                table.c.id == self._key(secret), table.c.stage == stage,
                table.c.expires_at > now))).first()
        return row
