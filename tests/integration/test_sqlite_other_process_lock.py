"""Another process holding SQLite's write lock delays writes but freezes nothing: reads are answered
meanwhile, and the write goes through once the lock is released."""

from __future__ import annotations

import asyncio
import sqlite3

from tests.api.test_fhir_api import condition
from tests.conftest import make_settings


async def test_a_write_waits_for_another_process_lock_while_reads_are_answered(client_for, sqlite_url) -> None:  # type: ignore[no-untyped-def]
    client = await client_for(make_settings(sqlite_url))
    assert (await client.get("/fhir/Observation")).status_code == 200  # schema in place
    other = sqlite3.connect(sqlite_url.split(":///", 1)[1], isolation_level=None)  # "another process"
    try:
        other.execute("BEGIN IMMEDIATE")
        write = asyncio.ensure_future(client.put("/fhir/Condition/dx-1", json=condition()))
        await asyncio.sleep(0.3)
        assert not write.done()  # waiting for the lock ...
        read = await asyncio.wait_for(client.get("/fhir/Observation"), timeout=5)
        assert read.status_code == 200  # ... without holding up the event loop
        other.execute("COMMIT")
        assert (await asyncio.wait_for(write, timeout=10)).status_code == 201
    finally:
        other.close()
    assert (await client.get("/fhir/Condition/dx-1")).status_code == 200
