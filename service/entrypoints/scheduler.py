"""The time-driven re-evaluation loop on its own: `python -m service.entrypoints.scheduler`.

Same settings as the service (from the environment). It catches up on everything due first, then
polls every `CAREPATH_SCHEDULER_POLL_SECONDS`; any number may run beside the service's own loop
(`CAREPATH_RUN_SCHEDULER=false` turns that one off) on one PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging

from service.adapters.database import migrate
from service.bootstrap import build_scheduler, build_services, stage_follow_up
from service.config import Settings
from service.entrypoints.worker import worker_name
from service.rules.loader import load_pathways


async def _main() -> None:
    settings = Settings()
    services = build_services(settings, load_pathways(settings.pathways_dir))
    try:
        await migrate(services.engine)
        stage_follow_up(services)
        await build_scheduler(services, worker_name()).run(settings.scheduler_poll_seconds)
    finally:
        await services.http.aclose()
        await services.engine.dispose()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(_main())
