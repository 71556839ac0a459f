"""`create_app(settings)`: the only place the service is assembled. Nothing happens at import."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from service import __version__
from service.adapters import service_keys, webhook_subscribers
from service.adapters.database import migrate
from service.adapters.service_keys import LOG_PSEUDONYM
from service.bootstrap import Services, build_scheduler, build_services, stage_follow_up
from service.cds.cors import CdsCors
from service.config import Settings
from service.entrypoints import api_docs
from service.entrypoints.docs import install_docs
from service.entrypoints.http import install_error_handlers
from service.entrypoints.routes import (
    admin,
    cds_hooks,
    clinician_app,
    fhir,
    health,
    timeline,
    webhooks,
)
from service.entrypoints.worker import build_worker, worker_name
from service.observability import routes as observability
from service.observability.logs import set_pseudonym_key
from service.observability.metrics import Metrics
from service.observability.middleware import RequestContext
from service.rules.loader import load_pathways
from service.service_layer.clock import Clock
from service.service_layer.pending import sweep_pending

log = logging.getLogger("carepath")


def create_app(settings: Settings | None = None, *, clock: Clock | None = None,
               http: httpx.AsyncClient | None = None) -> FastAPI:
    """Build the app. Pathway files are validated here, so a bad file fails start-up loudly."""
    settings = settings or Settings()
    pathways = load_pathways(settings.pathways_dir)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = build_services(settings, pathways, clock=clock, http=http)
        services.evaluator.listeners.append(metrics.on_evaluated)
        await migrate(services.engine)
        set_pseudonym_key(settings.log_pseudonym_key
                          or await service_keys.get_or_create(services.engine, LOG_PSEUDONYM))
        app.state.services = services
        if not settings.api_tokens:
            log.warning("no CAREPATH_API_TOKENS configured: every API call will be refused (401)")
        async with services.engine.begin() as conn:
            await webhook_subscribers.sync_configured(conn, settings.webhook_subscribers,
                                                      services.clock())
        background = [asyncio.create_task(sweep_pending(services.evaluator, services.engine))]
        stage_follow_up(services)
        if settings.run_worker:
            worker = build_worker(services.engine, settings, services.http)
            background.append(asyncio.create_task(worker.run()))
        services.extras["scheduler"] = scheduler = build_scheduler(services, worker_name())
        if settings.run_scheduler:  # its first rounds catch up on whatever fell due meanwhile
            background.append(asyncio.create_task(scheduler.run(settings.scheduler_poll_seconds)))
        try:
            yield
        finally:
            for task in background:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if http is None:
                await services.http.aclose()
            await services.engine.dispose()

    app = FastAPI(title="Carepath", version=__version__, lifespan=lifespan,
                  description="FHIR R4 care-pathway service for lumbar radiculopathy.",
                  docs_url=None, redoc_url=None)
    install_docs(app)
    install_error_handlers(app)
    api_docs.install(app)
    app.state.metrics = metrics
    app.add_middleware(RequestContext, metrics=metrics)
    if settings.cors_origins:
        app.add_middleware(CdsCors, origins=settings.cors_origins)
    app.include_router(fhir.router)
    app.include_router(cds_hooks.router)
    app.include_router(webhooks.router)
    app.include_router(admin.router)
    app.include_router(health.router)
    app.include_router(observability.router)
    app.include_router(timeline.router)
    app.include_router(clinician_app.router)
    return app


def services_of(app: FastAPI) -> Services:
    return app.state.services  # type: ignore[no-any-return]
