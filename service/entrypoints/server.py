"""`carepath serve`: uvicorn with one change. A request the HTTP parser itself refuses (a malformed
`Content-Length`, a broken request line or header) never reaches the app, and uvicorn answers it
with a plain-text 400; these protocol classes answer it with a FHIR OperationOutcome instead (and
still close the connection, as the framing of anything after it is unknown)."""

from __future__ import annotations

import gc
from typing import Any

import orjson
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from service.fhir.models import Issue
from service.fhir.outcome import operation_outcome


class _OutcomeFor400:
    transport: Any

    def send_400_response(self, msg: str) -> None:
        body = orjson.dumps(operation_outcome(
            f"malformed HTTP request: {msg}", [Issue("HTTP", msg, "structure")], "structure"))
        self.transport.write(
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/fhir+json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)
        self.transport.close()


class OutcomeH11Protocol(_OutcomeFor400, H11Protocol):
    """uvicorn's h11 protocol, with an OperationOutcome for requests h11 cannot parse."""


def http_protocol() -> type[Any]:
    """httptools (uvicorn's default when installed) or h11, each answering bad framing in FHIR."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # httptools is optional in uvicorn
        return OutcomeH11Protocol

    class OutcomeHttpToolsProtocol(_OutcomeFor400, HttpToolsProtocol):
        """uvicorn's httptools protocol, with an OperationOutcome for unparsable requests."""

    return OutcomeHttpToolsProtocol


def config(app: Any, host: str, port: int, log_level: str = "info") -> uvicorn.Config:
    return uvicorn.Config(app, host=host, port=port, log_level=log_level.lower(), log_config=None,
                          http=http_protocol())


def tune_garbage_collector() -> None:
    """For a long-running server: what start-up built (the app, its pathways) is moved out of the
    collector's sight, and a collection starts after 10,000 net new container objects rather than
    700. A 100 KB CDS request alone parses into some 10,000 dicts and lists, so at the default a
    few collections ran inside every call, and the full ones walked every object the app holds:
    about 2 ms of CPU per CDS call, measured. Reference cycles are still collected, only later."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, *gc.get_threshold()[1:])
