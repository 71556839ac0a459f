"""The composition root: everything the app needs, built from settings in one place."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from service.adapters.app_sessions import AppSessions
from service.adapters.database import create_engine
from service.config import Settings
from service.rules.registry import Pathway
from service.service_layer.clock import Clock, fixed_clock, system_clock
from service.service_layer.evaluate_patient import PatientEvaluator
from service.service_layer.fhir_api import FhirApi
from service.service_layer.group_commit import GroupCommit
from service.service_layer.ingest import Ingestor
from service.service_layer.scheduler import Scheduler
from service.service_layer.writeback import WritebackStager
from service.webhooks.events import WebhookEventStager
from service.webhooks.receiver import WebhookReceiver


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    pathways: dict[str, Pathway]
    clock: Clock
    http: httpx.AsyncClient
    evaluator: PatientEvaluator
    ingestor: Ingestor
    receiver: WebhookReceiver
    app_sessions: AppSessions
    fhir: FhirApi
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def pathway(self) -> Pathway:
        """The pathway every evaluation runs (one per service today)."""
        return next(iter(self.pathways.values()))


def build_services(settings: Settings, pathways: dict[str, Pathway], *, clock: Clock | None = None,
                   http: httpx.AsyncClient | None = None) -> Services:
    clock = clock or (fixed_clock(settings.fixed_now) if settings.fixed_now else system_clock)
    engine = create_engine(settings.database_url)
    active = list(pathways.values())
    evaluator = PatientEvaluator(engine, active, clock)
    http = http or httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=5.0),
                                     limits=httpx.Limits(max_connections=50))
    ingestor = Ingestor(engine, active, evaluator, clock)
    session_secret = settings.app_session_secret
    if session_secret is None:
        session_secret = secrets.token_urlsafe(32)
        if settings.app_client_id:
            logging.getLogger("carepath").warning(
                "no CAREPATH_APP_SESSION_SECRET: clinician sessions end when this process stops "
                "and are not shared between replicas")
    return Services(
        settings=settings, engine=engine, pathways=pathways, clock=clock, http=http,
        evaluator=evaluator, ingestor=ingestor,
        receiver=WebhookReceiver(ingestor, engine, http, clock),
        app_sessions=AppSessions(engine, session_secret, settings.app_session_seconds),
        fhir=FhirApi(ingestor, GroupCommit(ingestor)))


def stage_follow_up(services: Services) -> None:
    """Evaluation listeners that stage write-back (when configured) and outbound webhook events in
    each evaluation's transaction, whoever triggers it (API, webhook, pending sweep, scheduler)."""
    if services.settings.fhir_server_url:
        services.evaluator.listeners.append(WritebackStager(services.settings.fhir_server_url))
    services.evaluator.listeners.append(WebhookEventStager())


def build_scheduler(services: Services, name: str) -> Scheduler:
    settings = services.settings
    return Scheduler(services.evaluator, services.engine, services.clock, name=name,
                     lease_seconds=settings.scheduler_lease_seconds, batch=settings.scheduler_batch)
