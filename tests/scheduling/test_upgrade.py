"""Upgrading a database evaluated before time-driven re-evaluation existed schedules its patients,
so the first scheduler pass re-evaluates each of them once and works out its real next instant."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from service.adapters import tables
from service.adapters.database import MIGRATIONS, create_engine, migrate
from tests.scheduling.support import T0


def _upgrade_to(revision: str):  # type: ignore[no-untyped-def]
    def run(connection: sa.engine.Connection) -> None:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    return run


async def test_patients_evaluated_before_the_upgrade_are_due_at_their_last_evaluation(
        sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade_to("0002"))
            for n, at in enumerate((T0 - timedelta(days=3), T0 - timedelta(days=1))):
                await conn.execute(sa.insert(tables.evaluations).values(
                    patient_id="old", episode_id=None, pathway_id="lumbar-radiculopathy",
                    pathway_version="1.0.0", evaluated_at=at, urgency=None, summary="{}",
                    changed=n == 0))
        await migrate(engine)
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.select(tables.patient_schedule))).all()
        assert [(r.patient_id, r.due_at) for r in rows] == [("old", T0 - timedelta(days=1))]
    finally:
        await engine.dispose()
