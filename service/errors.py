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
  + PreconditionFailed      412
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


class PreconditionFailed(CarepathError):
    status = 412
    code = "conflict"


class BadGateway(CarepathError):
    status = 502
    code = "transient"
