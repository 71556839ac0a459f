"""Structured JSON logs. Patient identifiers never leave in clear: `phi_safe` hashes them, and the
redaction processor hashes any field that names a patient or carries a clinical value."""

from __future__ import annotations

import hashlib
import logging
import re
import sys
from typing import Any

import structlog

_PHI_KEYS = frozenset({"patient", "patient_id", "subject", "value", "name", "birthDate",
                       "identifier"})


def phi_safe(identifier: str) -> str:
    """A stable, non-reversible token for a patient id, so log lines about one patient correlate."""
    return "p:" + hashlib.sha256(identifier.encode()).hexdigest()[:12]


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
                    structlog.processors.format_exc_info, structlog.processors.JSONRenderer()])
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("httpx").setLevel(logging.WARNING)  # its lines carry resource URLs
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = name != "uvicorn.access"  # our middleware logs requests
    structlog.configure(
        processors=[structlog.stdlib.add_logger_name, *SHARED,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger, cache_logger_on_first_use=False)


def logger(name: str = "carepath") -> Any:
    return structlog.stdlib.get_logger(name)
