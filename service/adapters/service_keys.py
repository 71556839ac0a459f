"""Secrets the service makes for itself on first start and keeps in its database, so that every
replica (and every restart) uses the same one."""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from service.adapters.tables import service_keys

LOG_PSEUDONYM = "log-pseudonym"


async def get_or_create(engine: AsyncEngine, name: str) -> str:
    """The stored secret `name`; the first caller generates it (32 random bytes, URL-safe)."""
    insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
    async with engine.begin() as conn:
        await conn.execute(insert(service_keys).values(
            name=name, value=secrets.token_urlsafe(32)).on_conflict_do_nothing())
        return (await conn.execute(sa.select(service_keys.c.value).where(
            service_keys.c.name == name))).scalar_one()
