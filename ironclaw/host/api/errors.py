"""Errors as JSON ``{error, detail}`` with the right status, never a 500 for bad input.

Route code raises :class:`ApiError` (or lets a domain error through); the handlers
registered by :func:`install_error_handlers` turn everything into a JSON response.
A domain error's text is written by us and safe to show; anything unexpected becomes
a bare 500 ``internal`` whose detail names nothing.
"""

from __future__ import annotations

import logging
import math

from quart import Response, jsonify
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from ironclaw.host.audit import AuditLogCorrupt, AuditLogUnavailable
from ironclaw.host.channels import ChannelUnavailable
from ironclaw.host.gateway import (
    Conflict,
    Forbidden,
    GatewayUnavailable,
    InvalidChange,
    NoSuchChange,
    TooManyPending,
)
from ironclaw.host.questions import InvalidAnswer, QuestionConflict, QuestionNotFound
from ironclaw.host.registry import NotFound as RegistryNotFound
from ironclaw.host.registry import RegistryError

log = logging.getLogger(__name__)

MAX_DETAIL = 300

_WORDS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
          405: "method_not_allowed", 409: "conflict", 413: "too_large",
          415: "unsupported_media_type", 422: "unprocessable", 429: "rate_limited",
          500: "internal", 503: "unavailable"}


class ApiError(Exception):
    def __init__(self, status: int, detail: str, *, error: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error or _WORDS.get(status, "error")
        self.detail = detail[:MAX_DETAIL]
        self.headers = headers or {}


def unauthorized(detail: str = "a valid bearer token is required") -> ApiError:
    return ApiError(401, detail, headers={"WWW-Authenticate": 'Bearer realm="ironclaw"'})


def rate_limited(retry_after: float) -> ApiError:
    seconds = max(1, math.ceil(retry_after))
    return ApiError(429, f"too many requests; retry after {seconds} s",
                    headers={"Retry-After": str(seconds)})


def from_domain(exc: Exception) -> ApiError | None:
    """The API error a domain exception stands for, or None if it is unexpected."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, NoSuchChange | RegistryNotFound | QuestionNotFound):
        return ApiError(404, text)
    if isinstance(exc, Conflict | QuestionConflict):
        return ApiError(409, text)
    if isinstance(exc, Forbidden):
        return ApiError(403, text)
    if isinstance(exc, TooManyPending):
        return ApiError(429, text, headers={"Retry-After": "60"})
    if isinstance(exc, InvalidChange | InvalidAnswer | RegistryError):
        return ApiError(422, text)
    if isinstance(exc, GatewayUnavailable | ChannelUnavailable | AuditLogUnavailable):
        return ApiError(503, text)
    if isinstance(exc, AuditLogCorrupt):
        return ApiError(503, "the audit log failed its check near the tail; run verify",
                        error="audit_corrupt")
    return None


def handshake_refusal(error: ApiError) -> Response:
    """A websocket upgrade refused with an HTTP error; the connection is not reused."""
    response = error_response(error)
    response.headers["Connection"] = "close"
    return response


def error_response(error: ApiError) -> Response:
    response = jsonify({"error": error.error, "detail": error.detail})
    response.status_code = error.status
    for name, value in error.headers.items():
        response.headers[name] = value
    if error.status == 413:
        # The rest of the body may still be on its way: never reuse this connection.
        response.headers["Connection"] = "close"
    return response


def install_error_handlers(app: QuartTrio) -> None:
    @app.errorhandler(ApiError)
    async def _api(exc: ApiError) -> Response:
        return error_response(exc)

    @app.errorhandler(HTTPException)
    async def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        error = ApiError(status, exc.description or _WORDS.get(status, "error"))
        response = error_response(error)
        for name, value in exc.get_headers():
            if name.lower() == "allow":
                response.headers["Allow"] = value
        return response

    @app.errorhandler(Exception)
    async def _other(exc: Exception) -> Response:
        mapped = from_domain(exc)
        if mapped is not None:
            return error_response(mapped)
        log.error("unhandled %s in the API", type(exc).__name__, exc_info=exc)
        return error_response(ApiError(500, "internal error"))
