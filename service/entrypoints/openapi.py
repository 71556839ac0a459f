"""The OpenAPI document of the app, as committed in openapi.yaml (a test keeps them equal)."""

from __future__ import annotations

import yaml

from service.config import Settings
from service.entrypoints.app import create_app


def openapi_yaml() -> str:
    app = create_app(Settings(api_tokens=[], database_url="sqlite+aiosqlite:///:memory:"))
    return yaml.safe_dump(app.openapi(), sort_keys=False, allow_unicode=True, width=100)
