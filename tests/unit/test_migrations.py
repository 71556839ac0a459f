"""The alembic migrations build exactly the schema the code's tables describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from service.adapters import tables
from service.adapters.database import create_engine, migrate


async def test_migrations_match_the_table_definitions(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    try:
        await migrate(engine)
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), tables.metadata))
    finally:
        await engine.dispose()
    assert diff == []
