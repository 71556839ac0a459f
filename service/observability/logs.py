"""Structured JSON logs. Patient identifiers never leave in clear: `phi_safe` pseudonymises them
(keyed HMAC), exceptions are logged without their messages, and the
redaction processor pseudonymises any field that names a patient or carries a clinical value."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import sys
import traceback
from pathlib import Path
from typing import Any

import structlog

_PHI_KEYS = frozenset({"patient", "patient_id", "subject", "value", "name", "birthDate",
                       "identifier"})


_pseudonym_key: bytes = secrets.token_bytes(32)  # until the service's own key is installed


def set_pseudonym_key(key: str) -> None:
    """Install the key of patient pseudonyms (CAREPATH_LOG_PSEUDONYM_KEY, else the one the service
    generated on first start and keeps in its database)."""
    global _pseudonym_key
    _pseudonym_key = key.encode()


def phi_safe(identifier: str) -> str:
    """A stable pseudonym for a patient id, so log lines about one patient correlate: a keyed
    HMAC-SHA256, so that short record numbers cannot be recovered by hashing candidates."""
    return "p:" + hmac.new(_pseudonym_key, identifier.encode(), hashlib.sha256).hexdigest()[:16]


def scrub_exception(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """Render an exception as its type and the frames it passed through, never its message
    (database errors carry statement parameters, validators echo input values)."""
    exc_info = event.pop("exc_info", None)
    if exc_info is True:
        exc_info = sys.exc_info()
    elif isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    if isinstance(exc_info, tuple) and exc_info[0] is not None:
        frames = traceback.extract_tb(exc_info[2])[-8:]
        event["exception"] = f"{exc_info[0].__name__} at " + " <- ".join(
            f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(frames))
    return event


_PATIENT_REF = re.compile(r"Patient/([A-Za-z0-9.\-]{1,64})")


def redact(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    message = event.get("event")
    if isinstance(message, str):
        event["event"] = _PATIENT_REF.sub(lambda m: f"Patient/{phi_safe(m.group(1))}", message)
    for key in _PHI_KEYS & event.keys():
        value = event[key]
        if isinstance(value, str) and not value.startswith("p:"):
            event[key] = phi_safe(value)
        elif not isinstance(value, str):
            event[key] = "[redacted]"
    return event


SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    redact,
]


def configure_logging(level: str = "INFO", stream: Any = None) -> None:
    """JSON lines on stdout for structlog and the standard library alike (uvicorn, carepath)."""
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *SHARED],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    scrub_exception, structlog.processors.JSONRenderer()])
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("httpx").setLevel(logging.WARNING)  # its lines carry resource URLs
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = name != "uvicorn.access"  # our middleware logs requests
    structlog.configure(  # filter_by_level first: a line below the level costs a level check only
        processors=[structlog.stdlib.filter_by_level, structlog.stdlib.add_logger_name, *SHARED,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger, cache_logger_on_first_use=False)


def logger(name: str = "carepath") -> Any:
    return structlog.stdlib.get_logger(name)
