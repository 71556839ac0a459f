"""GroupCommit: writes that arrive together are stored, evaluated and committed together.

A write (one POST, PUT or DELETE, or a Bundle's unconditional entries) joins the queue and waits.
A committer takes everything queued, applies each write, evaluates every patient they touched
once, and commits once; then each caller gets its answer. So the input and the decision it
prompted are durable together before the response says so, in one transaction instead of an
ingest commit, a pending row and an evaluation commit; and twenty writers for one patient cost one
evaluation per commit, not twenty.

The committer takes the queue as it finds it and never waits for more, so a write that arrives
alone is committed at once. Each write of a group runs in its own savepoint: one refused write
(a failed `If-Match`, a pathway output) answers its own error and leaves the others be. If the
group fails as a whole (an evaluation raises, the database drops the connection, a deadlock on
PostgreSQL), nothing of it was committed and each write is redone on its own by the two-step path
(`Ingestor.write`, then `evaluate_changed`): its input is committed with a pending mark and an
evaluation failure stays recorded for the sweep, as before.

SQLite has one writer, so one committer; on PostgreSQL several committers run side by side, each
with its own queue, and a write goes to the queue of its (first) patient: writes for one patient
are grouped by one committer instead of spread over several that would then wait for each other's
advisory lock on that patient and evaluate it once each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from service.adapters.database import is_sqlite, lock_keys
from service.adapters.store import Store, Stored
from service.fhir.normalize import subject_id
from service.service_layer.ingest import Ingestor, Removed, Write, touched_patients

log = logging.getLogger("carepath.group_commit")

Results = list[Stored | Removed]


@dataclass
class _Job:
    operations: Sequence[Write]
    actor: str
    future: asyncio.Future[Results]
    results: Results | None = None
    error: BaseException | None = None
    done: bool = False


class _GroupFailed(Exception):
    """Raised inside the group's transaction to roll all of it back."""


class GroupCommit:
    def __init__(self, ingestor: Ingestor, *, committers: int | None = None, max_group: int = 100) -> None:
        self.ingestor = ingestor
        self.evaluator = ingestor.evaluator
        self.engine = ingestor.engine
        self.max_group = max_group
        lanes = committers or (1 if is_sqlite(self.engine) else 4)
        self._queues: list[list[_Job]] = [[] for _ in range(lanes)]
        self._running: list[asyncio.Task[None] | None] = [None] * lanes

    async def write(self, operations: Sequence[Write], *, actor: str) -> Results:
        """Apply the writes and evaluate the patients they changed; return once both are committed.
        A caller that goes away does not take its write out of a group already under way."""
        job = _Job(operations, actor, asyncio.get_running_loop().create_future())
        lane = _lane(operations, len(self._queues))
        self._queues[lane].append(job)
        running = self._running[lane]
        if running is None or running.done():
            self._running[lane] = asyncio.ensure_future(self._commit_queued(self._queues[lane]))
        return await asyncio.shield(job.future)

    async def _commit_queued(self, queue: list[_Job]) -> None:
        while queue:
            group = queue[:self.max_group]
            del queue[:len(group)]
            try:
                try:
                    await self._commit(group)
                except Exception:  # noqa: BLE001  (redone one by one; each caller gets its own answer)
                    log.warning("a group of %d writes failed as a whole; redoing each on its own",
                                len(group), exc_info=True)
                    await self._one_by_one([job for job in group if not job.done])
            except BaseException:  # cancelled (shutdown): whoever waits is told, not left hanging
                for job in group:
                    job.future.cancel()
                raise
            for job in group:
                _answer(job)

    async def _commit(self, group: list[_Job]) -> None:
        now = self.ingestor.clock()
        try:
            async with self.engine.begin() as conn:
                store = Store(conn, batch_audit=True)
                for job in group:
                    await self._apply(store, job, savepoint=len(group) > 1, now=now)
                applied = [job for job in group if job.results is not None]
                patients = touched_patients(r for job in applied for r in job.results or ())
                await lock_keys(conn, patients)  # in one sorted statement: no deadlock between groups
                actor = applied[0].actor if applied else "carepath"
                for patient in patients:
                    await self.evaluator.evaluate_in(store, patient, actor=actor, now=now, locked=True)
                if not applied:
                    raise _GroupFailed  # nothing to commit: every write was refused
                await store.flush_audit()
        except _GroupFailed:
            pass
        for job in group:
            job.done = True

    async def _apply(self, store: Store, job: _Job, *, savepoint: bool, now: datetime) -> None:
        """One write of the group; a refusal is that write's answer (its changes undone)."""
        try:
            async with store.conn.begin_nested() if savepoint else contextlib.nullcontext():
                job.results = await self.ingestor.write_in(store, job.operations, actor=job.actor, now=now)
        except Exception as error:  # noqa: BLE001  (the caller's own error: 412, 405, ...)
            if not savepoint:
                job.error, job.done = error, True
                raise _GroupFailed from error
            job.error, job.results = error, None

    async def _one_by_one(self, jobs: list[_Job]) -> None:
        for job in jobs:
            job.results, job.error = None, None
            try:
                job.results = await self.ingestor.write(job.operations, actor=job.actor)
                await self.ingestor.evaluate_changed(job.results, actor=job.actor)
            except Exception as error:  # noqa: BLE001  (answered to its caller)
                job.error = error
            job.done = True


def _lane(operations: Sequence[Write], lanes: int) -> int:
    """The committer for these writes: by the first patient they name (a delete names none before
    it is applied: by its resource)."""
    if lanes == 1 or not operations:
        return 0
    first = operations[0]
    key = (subject_id(first.resource) if first.resource is not None else None) or first.resource_id
    return zlib.crc32(key.encode()) % lanes


def _answer(job: _Job) -> None:
    if job.future.done():
        return
    if job.error is not None:
        job.future.set_exception(job.error)
    else:
        job.future.set_result(job.results or [])
