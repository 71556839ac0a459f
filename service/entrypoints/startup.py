"""What stops the service from starting, said in one line each: a setting (named by its
environment variable, with the fix, never its value), a pathway file (file:line: field), or a
database that cannot be reached (its URL with the password masked)."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import ValidationError
from pydantic_settings import SettingsError
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from service.config import Settings


class StartupError(Exception):
    """One or more lines for stderr, each complete on its own; no traceback is shown."""


def environment_variable(field: str) -> str:
    """The variable a settings field is read from (DATABASE_URL, CAREPATH_PORT, ...)."""
    info = Settings.model_fields.get(field)
    if info is None and field.isupper():
        return field  # pydantic already reports the alias it read (DATABASE_URL)
    alias = info.validation_alias if info else None
    choices = getattr(alias, "choices", None)
    if choices:
        return str(choices[0])
    return f"CAREPATH_{field.upper()}"


def _location(loc: tuple[Any, ...]) -> str:
    name = environment_variable(str(loc[0])) if loc else "settings"
    rest = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[1:])
    return name + (f" (item {rest})" if rest else "")


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, or StartupError naming each bad variable and the fix."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors(include_input=False, include_url=False):
            where = _location(tuple(err["loc"]))
            message = str(err["msg"]).removeprefix("Value error, ")
            lines.append(f"carepath: {where}: {message}; fix it, or unset it to use the default")
        raise StartupError("\n".join(lines)) from None
    except SettingsError as exc:
        field = str(exc).split('"')[1] if '"' in str(exc) else ""
        raise StartupError(f"carepath: {environment_variable(field) if field else 'a setting'}: "
                           "not valid JSON; write it as a JSON list, e.g. "
                           "'[{\"name\": \"...\", \"secrets\": [\"...\"]}]'") from None


def masked(url: str) -> str:
    """The database URL with any password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparseable URL)"


def _password(url: str) -> str | None:
    try:
        return make_url(url).password  # type: ignore[return-value]
    except ArgumentError:
        return None


def check_database(url: str, timeout: float = 5.0) -> None:
    """Connect once before serving, so an unreachable database is one clear line."""
    from service.adapters.database import create_engine

    async def probe() -> None:
        engine = create_engine(url)
        try:
            async with asyncio.timeout(timeout), engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        finally:
            await engine.dispose()

    try:
        asyncio.run(probe())
    except (OSError, TimeoutError) as exc:
        reason = ("connection refused" if isinstance(exc, ConnectionRefusedError)
                  else "timed out" if isinstance(exc, TimeoutError)
                  else exc.strerror or type(exc).__name__)
        raise StartupError(f"carepath: cannot reach the database at {masked(url)} ({reason}); "
                           "start it, or point DATABASE_URL at a running server") from None
    except Exception as exc:  # noqa: BLE001  (driver errors: authentication, unknown database...)
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]
        password = _password(url)
        if password:
            reason = reason.replace(password, "***")
        raise StartupError(f"carepath: the database at {masked(url)} refused the connection "
                           f"({type(exc).__name__}: {reason}); check DATABASE_URL") from None
