"""Annotated dependencies so route signatures read like declarations."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.bootstrap import Services
from service.entrypoints.http import require_bearer


async def get_services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[Services, Depends(get_services)]


_BEARER = HTTPBearer(auto_error=False, scheme_name="bearer",
                     description="an API token from CAREPATH_API_TOKENS")


async def api_caller(request: Request, services: ServicesDep,
               _: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]) -> str:
    """The authenticated API caller (bearer token), as an audit actor name. (`_BEARER` only
    declares the scheme in the OpenAPI document, so /docs offers Authorize.) `async def`: FastAPI
    would run a plain `def` in its threadpool on every request, a thread hop that costs more than
    the check itself."""
    return require_bearer(request, services.settings.api_tokens)


CallerDep = Annotated[str, Depends(api_caller)]
