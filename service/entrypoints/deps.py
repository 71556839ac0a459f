"""Annotated dependencies so route signatures read like declarations."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.bootstrap import Services
from service.entrypoints.http import require_bearer


async def get_services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[Services, Depends(get_services)]


async def api_caller(request: Request, services: ServicesDep) -> str:
    """The authenticated API caller (bearer token), as an audit actor name.

    Both dependencies are `async def`: FastAPI would run a plain `def` in its threadpool on every
    request, a thread hop that costs more than the check itself."""
    return require_bearer(request, services.settings.api_tokens)


CallerDep = Annotated[str, Depends(api_caller)]
