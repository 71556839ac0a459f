"""Receiving pushed data: validate, store durably (idempotent per source), report what happened.

Evaluation is not done here: the caller answers the sender first and evaluates afterwards (and
the pending sweep covers a crash in between), so a slow rule never makes a sender time out.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from service.adapters import subscription_streams as streams
from service.adapters.fhir_client import DeliveryError, HttpxFhirServer
from service.adapters.store import Store, Stored
from service.config import WebhookSource
from service.fhir.models import INPUT_TYPES, Issue
from service.fhir.normalize import subject_id
from service.service_layer.clock import Clock
from service.service_layer.ingest import Ignored, Ingestor
from service.webhooks.notification import CARRY_EVENTS, Notification, parse_notification

log = logging.getLogger("carepath.webhooks")


class FetchFailed(Exception):
    """An id-only resource could not be fetched from the notifying server (retry later)."""


@dataclass
class Received:
    """What one delivery did: the sender gets this back as an OperationOutcome."""

    stored: list[Stored] = field(default_factory=list)
    ignored: list[Ignored] = field(default_factory=list)
    rejected: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)  # accepted, with values the pathway cannot use
    notes: list[str] = field(default_factory=list)
    gaps: list[streams.Gap] = field(default_factory=list)
    withdrawn: list[str] = field(default_factory=list)  # patients whose data was deleted

    @property
    def patients(self) -> list[str]:
        """Patients to evaluate after this delivery."""
        return list(dict.fromkeys([*(p for s in self.stored if s.changed
                                     and (p := subject_id(s.resource))), *self.withdrawn]))

    def merge(self, other: Received) -> None:
        self.stored += other.stored
        self.ignored += other.ignored
        self.rejected += other.rejected
        self.warnings += other.warnings
        self.notes += other.notes
        self.gaps += other.gaps
        self.withdrawn += other.withdrawn


class WebhookReceiver:
    def __init__(self, ingestor: Ingestor, engine: AsyncEngine, http: httpx.AsyncClient,
                 clock: Clock) -> None:
        self.ingestor = ingestor
        self.engine = engine
        self.http = http
        self.clock = clock

    async def resources(self, source: str, resources: list[Any], *, actor: str,
                        where: str = "") -> Received:
        """Store the valid resources of a delivery; invalid ones are named, not stored; types the
        pathway does not use are acknowledged and skipped."""
        done = Received()
        usable = []
        for i, resource in enumerate(resources):
            at = where.format(i=i) if where else ""
            kind = resource.get("resourceType") if isinstance(resource, dict) else None
            if isinstance(kind, str) and kind not in INPUT_TYPES:
                done.notes.append(f"{kind}/{resource.get('id')} is not used by this pathway; "
                                  "skipped")
                continue
            issues = self.ingestor.assess(resource, at)
            problems = [i for i in issues if i.refuses]
            if problems:
                done.rejected += problems
            else:
                done.warnings += issues
                usable.append(resource)
        if usable:
            for result in await self.ingestor.receive(usable, source=source, actor=actor):
                (done.stored if isinstance(result, Stored) else done.ignored).append(result)
        return done

    async def notification(self, source: WebhookSource, note: Notification, *, actor: str
                           ) -> Received:
        """Handshake and heartbeat are acknowledged; events are ingested (id-only ones fetched
        first); event numbers are recorded, and gaps they reveal returned for recovery."""
        done = Received()
        if note.type in CARRY_EVENTS:
            fetched, gone = await self._fetch_missing(source, note)
            done.merge(await self.resources(source.name, [*note.resources, *fetched],
                                            actor=actor, where="Bundle.entry[{i}].resource."))
            for reference in [*note.deleted, *gone]:
                done.merge(await self.deleted(source.name, _relative(reference), actor=actor))
            if not (note.resources or fetched or note.deleted or gone):
                done.notes.append("no resources in this notification (payload 'empty' or none "
                                  "matched): nothing to ingest")
        elif note.type == "query-status":
            done.notes.append("query-status acknowledged")
        else:
            done.notes.append(f"{note.type} acknowledged")
        async with self.engine.begin() as conn:
            done.gaps = await streams.observe(
                conn, source.name, note.subscription, status=note.status, numbers=note.numbers,
                since_start=note.events_since_start, handshake=note.type == "handshake",
                now=self.clock())
            await Store(conn).audit(actor=actor, action=f"subscription-{note.type}",
                                    patient_id=None, now=self.clock(), detail={
                                        "source": source.name, "subscription": note.subscription,
                                        "status": note.status, "events": note.numbers,
                                        "gaps": [[x.first_missing, x.last_missing]
                                                 for x in done.gaps]})
        for gap in done.gaps:
            done.notes.append(f"events {gap.first_missing}..{gap.last_missing} of "
                              f"{note.subscription} are missing (recorded as gap {gap.id})")
        return done

    async def deleted(self, source: str, reference: str, *, actor: str) -> Received:
        """The sender deleted a resource: our copy goes, and its patient is re-evaluated."""
        patient = await self.ingestor.withdraw(reference, source=source, actor=actor)
        done = Received(notes=[f"{reference} deleted at the source: " + (
            "removed here; its patient will be re-evaluated" if patient else "not held here")])
        if patient:
            done.withdrawn.append(patient)
        return done

    def _server(self, source: WebhookSource) -> HttpxFhirServer:
        token = source.fhir_token

        async def bearer() -> str | None:
            return token

        assert source.fhir_server is not None  # noqa: S101  (checked by callers)
        return HttpxFhirServer(source.fhir_server, self.http, bearer)

    async def _fetch_missing(self, source: WebhookSource, note: Notification
                             ) -> tuple[list[Any], list[str]]:
        """id-only: read each referenced resource from the source's own FHIR server (only there:
        a notification cannot make us fetch from anywhere else). Returns what was read, and what
        the server says no longer exists (404/410: deleted since the notification)."""
        have = {f"{r.get('resourceType')}/{r.get('id')}" for r in note.resources
                if isinstance(r, dict)} | {_relative(d) for d in note.deleted}
        wanted = dict.fromkeys([*note.references, *(e.focus for e in note.events if e.focus)])
        wanted = {url: None for url in wanted if _relative(url) not in have}
        if not wanted:
            return [], []
        if not source.fhir_server:
            raise FetchRefused(f"source {source.name!r} has no fhir_server configured, so the "
                               f"id-only notification's {', '.join(wanted)} cannot be fetched")
        base = source.fhir_server.rstrip("/") + "/"
        for url in wanted:
            if url.startswith(("http://", "https://")) and not url.startswith(base):
                raise FetchRefused(f"{url} is not on {source.name}'s FHIR server ({base}); "
                                   "refusing to fetch it")
        server = self._server(source)
        fetched, gone = [], []
        for path in dict.fromkeys(_relative(url) for url in wanted):
            try:
                fetched.append((await server.get(path)).body)
            except DeliveryError as exc:
                if exc.status in (404, 410):
                    gone.append(path)
                    continue
                raise FetchFailed(f"could not fetch {path} from {base}: {exc}") from exc
        return fetched, gone

    async def recover(self, source: WebhookSource, gap: streams.Gap, *, actor: str) -> Received:
        """Ask the notifying server for the missing events (`$events`, Backport 1.1 optional
        operation) and process its answer like a notification."""
        if not source.fhir_server:
            return Received(notes=[f"gap {gap.id}: no fhir_server configured for {source.name}"])
        subscription_id = gap.subscription.rstrip("/").rsplit("Subscription/", 1)[-1]
        try:
            reply = await self._server(source).get(f"Subscription/{subscription_id}/$events", {
                "eventsSinceNumber": str(gap.first_missing),
                "eventsUntilNumber": str(gap.last_missing), "content": "full-resource"})
        except DeliveryError as exc:
            log.warning("$events for gap %s failed: %s", gap.id, exc)
            return Received(notes=[f"gap {gap.id}: $events failed: {exc}"])
        note, issues = parse_notification(reply.body)
        if note is None:
            return Received(rejected=issues)
        return await self.notification(source, note, actor=actor)


class FetchRefused(Exception):
    """An id-only notification that cannot be fetched by configuration: the sender must know."""


def _relative(url: str) -> str:
    """`https://server/fhir/Observation/1/_history/2` -> `Observation/1` (versioned reads are
    optional in FHIR servers; the current version is what we want anyway)."""
    parts = [p for p in url.split("?")[0].split("/") if p]
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    return "/".join(parts[-2:])
