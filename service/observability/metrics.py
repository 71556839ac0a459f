"""Prometheus metrics, on a registry created per app (never at import time)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncEngine

from service.adapters import outbox, schedule, tables
from service.adapters.store import Store
from service.observability.logs import logger, phi_safe
from service.service_layer.evaluate_patient import PatientEvaluated


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("carepath_http_requests", "HTTP requests by route and status",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("carepath_http_request_seconds", "HTTP request latency", ["route"],
                                 registry=self.registry)
        self.evaluations = Counter("carepath_rule_evaluations", "Rule results by outcome",
                                   ["pathway", "rule", "outcome"], registry=self.registry)
        self.patients = Counter("carepath_patient_evaluations", "Patient evaluations by urgency",
                                ["urgency"], registry=self.registry)
        self._rule_counters: dict[tuple[str, str, str], Any] = {}
        self.outbox = OutboxCollector()
        self.registry.register(self.outbox)
        self.schedule = ScheduleCollector()
        self.registry.register(self.schedule)

    async def on_evaluated(self, _: Store, event: PatientEvaluated, now: datetime) -> None:
        """PatientEvaluator listener: count outcomes and log the decision without PHI."""
        log = logger()
        logging_info = logging.getLogger("carepath").isEnabledFor(logging.INFO)
        for decision in event.decisions:
            e = decision.evaluation
            pathway = f"{e.pathway_id}|{e.pathway_version}"
            for result in e.results:
                self._rule_counter(pathway, result.rule_id, result.outcome.value).inc()
            urgency = e.plan.urgency.priority if e.plan.urgency else "none"
            self.patients.labels(urgency).inc()
            if logging_info:  # phi_safe (an HMAC) and the line's fields only when it is written
                log.info("evaluated", patient=phi_safe(event.patient_id), pathway=pathway,
                         urgency=urgency, met=[r.rule_id for r in e.results if r.met],
                         changes=len(event.changes))

    def _rule_counter(self, pathway: str, rule: str, outcome: str) -> Any:
        """The counter of one (pathway, rule, outcome), looked up once (`labels` takes a lock and
        validates the labels on every call; an evaluation counts ten results)."""
        key = (pathway, rule, outcome)
        counter = self._rule_counters.get(key)
        if counter is None:
            counter = self._rule_counters[key] = self.evaluations.labels(pathway, rule, outcome)
        return counter

    async def refresh(self, engine: AsyncEngine, now: datetime | None = None) -> None:
        """Read the outbox counts, its oldest undelivered age and the schedule backlog just before
        a scrape (prometheus collectors cannot await)."""
        o = tables.outbox
        query = sa.select(o.c.kind, o.c.status, sa.func.count()).group_by(o.c.kind, o.c.status)
        async with engine.connect() as conn:
            self.outbox.counts = {(row[0], row[1]): row[2] for row in await conn.execute(query)}
            # outbox rows are stamped with the wall clock, not the evaluation clock
            self.outbox.oldest = await outbox.oldest_pending(conn, datetime.now(UTC))
            if now is not None:
                due, oldest = await schedule.backlog(conn, now)
                self.schedule.due = due
                self.schedule.oldest_age = (now - oldest).total_seconds() if oldest else 0.0


class OutboxCollector(Collector):
    """Outbox backlog and failures per kind (`fhir` write-back, `webhook` events)."""

    KINDS = ("fhir", "webhook")

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}
        self.oldest: dict[str, float] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, doc, status in (
                ("carepath_outbox_depth", "Outbox messages not yet delivered", "pending"),
                ("carepath_outbox_delivery_failures",
                 "Outbox messages that exhausted their delivery attempts", "failed")):
            family = GaugeMetricFamily(name, doc, labels=["kind"])
            kinds = dict.fromkeys([*self.KINDS, *(k for k, _ in self.counts)])
            for kind in kinds:
                family.add_metric([kind], self.counts.get((kind, status), 0))
            yield family
        family = GaugeMetricFamily(
            "carepath_outbox_oldest_pending_seconds",
            "Age of the oldest undelivered outbox message (0 when none is waiting)",
            labels=["kind"])
        for kind in dict.fromkeys([*self.KINDS, *self.oldest]):
            family.add_metric([kind], self.oldest.get(kind, 0.0))
        yield family


class ScheduleCollector(Collector):
    """Time-driven re-evaluation backlog: a stuck scheduler shows as a growing oldest age."""

    def __init__(self) -> None:
        self.due = 0
        self.oldest_age = 0.0

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("carepath_schedule_due_patients",
                                "Patients whose time-driven re-evaluation is due now",
                                value=self.due)
        yield GaugeMetricFamily("carepath_schedule_oldest_due_age_seconds",
                                "Age of the oldest due re-evaluation (0 when none is due)",
                                value=max(0.0, self.oldest_age))
