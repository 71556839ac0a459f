"""JWT ids recorded together (calls that arrive while a write is under way) are each judged on
their own: a new one is accepted, one used before or twice in the same batch is a replay."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from service.adapters.database import create_engine, migrate
from service.cds.jti_ledger import JtiLedger


async def test_a_batch_mixing_new_and_used_jtis_answers_each_caller(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await migrate(engine)
        ledger = JtiLedger(engine)
        expires = datetime.now(UTC) + timedelta(minutes=5)
        assert await ledger.first_use("https://ehr.example.org", "used", expires)
        jtis = ["new-1", "used", "new-2", "new-1", "new-3", "used"]
        answers = await asyncio.gather(*(ledger.first_use("https://ehr.example.org", j, expires) for j in jtis))
        assert answers == [True, False, True, False, True, False]
        assert await asyncio.gather(ledger.first_use("https://ehr.example.org", "new-2", expires),
                                    ledger.first_use("https://other.example.org", "new-2", expires)) == [False, True]
    finally:
        await engine.dispose()
