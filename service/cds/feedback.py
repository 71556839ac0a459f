"""CDS Hooks feedback: accepted/overridden outcomes, stored once (duplicates are ignored)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from service.adapters.tables import cds_feedback
from service.cds.models import FeedbackIn


async def record_feedback(engine: AsyncEngine, service_id: str, body: FeedbackIn, now: datetime) -> int:
    """Store each item once; returns how many were new."""
    insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
    new = 0
    async with engine.begin() as conn:
        for item in body.feedback:
            row = {"service_id": service_id, "card_uuid": item.card, "outcome": item.outcome,
                   "outcome_timestamp": item.outcomeTimestamp,
                   "accepted_suggestions": json.dumps([s.id for s in item.acceptedSuggestions or []]),
                   "override_reason": (item.overrideReason.model_dump_json(exclude_none=True)
                                       if item.overrideReason else None),
                   "received_at": now}
            result = await conn.execute(insert(cds_feedback).values(**row).on_conflict_do_nothing())
            new += result.rowcount or 0
    return new


async def list_feedback(engine: AsyncEngine, service_id: str) -> list[dict[str, Any]]:
    """Every feedback item recorded for a service, oldest first."""
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(cds_feedback).where(cds_feedback.c.service_id == service_id)
                                   .order_by(cds_feedback.c.id))).mappings().all()
    return [{"card": r["card_uuid"], "outcome": r["outcome"], "outcomeTimestamp": r["outcome_timestamp"],
             "acceptedSuggestions": [{"id": s} for s in json.loads(r["accepted_suggestions"] or "[]")],
             **({"overrideReason": json.loads(r["override_reason"])} if r["override_reason"] else {})}
            for r in rows]
