"""Carepath's exception tree. Routes never build error responses themselves: one handler maps
these to HTTP status codes with a FHIR OperationOutcome body.

* CarepathError
  + RequestError            4xx: the caller sent something we will not accept
    - MalformedBody         400: not JSON / not an object
    - BodyTooLarge          413
    - UnsupportedMediaType  415
    - InvalidResource       422 (or 400): FHIR or value validation failed, with located issues
  + Unauthorized            401: missing or bad credentials
  + Forbidden               403
  + NotFound                404
    - Gone                  410: deleted
  + PreconditionFailed      412
  + NotAcceptable           406: the client asked for a format we do not serve (XML, ...)
  + MethodNotAllowed        405: with the Allow header
  + BadGateway              502: a server we had to ask (e.g. for an id-only resource) failed
"""

from __future__ import annotations

from service.fhir.models import Issue


class CarepathError(Exception):
    status = 500
    code = "exception"

    def __init__(self, message: str, issues: list[Issue] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.issues = issues or []


class RequestError(CarepathError):
    status = 400
    code = "invalid"


class MalformedBody(RequestError):
    status = 400
    code = "structure"


class BodyTooLarge(RequestError):
    status = 413
    code = "too-costly"


class UnsupportedMediaType(RequestError):
    status = 415
    code = "not-supported"


class InvalidResource(RequestError):
    status = 422
    code = "invalid"

    def __init__(self, message: str, issues: list[Issue] | None = None, status: int = 422) -> None:
        super().__init__(message, issues)
        self.status = status


class Unauthorized(CarepathError):
    status = 401
    code = "login"


class Forbidden(CarepathError):
    status = 403
    code = "forbidden"


class NotFound(CarepathError):
    status = 404
    code = "not-found"


class Gone(NotFound):
    """410: the resource (or that version) was deleted."""

    status = 410
    code = "deleted"


class PreconditionFailed(CarepathError):
    status = 412
    code = "conflict"


class NotAcceptable(CarepathError):
    status = 406
    code = "not-supported"


class MethodNotAllowed(CarepathError):
    status = 405
    code = "not-supported"

    def __init__(self, message: str, allow: list[str]) -> None:
        super().__init__(message)
        self.allow = allow


class BadGateway(CarepathError):
    status = 502
    code = "transient"
