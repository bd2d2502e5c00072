"""What the proxy reports about each model call: metadata only.

``ModelCall`` carries ids, the (validated) host and route, and counts. Never a prompt,
a completion, a header value or a credential: it goes to the audit log and the event
stream, both of which operators read and export.
"""

from __future__ import annotations

import enum
from typing import ClassVar

import attrs

__all__ = ["ModelCall", "Outcome", "ProviderFailing", "ProviderRecovered",
           "SessionSocketFailed"]


class Outcome(enum.StrEnum):
    """Why a call ended the way it did (a fixed vocabulary, never free text)."""

    OK = "ok"
    BAD_REQUEST = "bad_request"
    HOST_NOT_ALLOWED = "host_not_allowed"
    ROUTE_NOT_FOUND = "route_not_found"
    TOO_LARGE = "too_large"
    RATE_LIMITED = "rate_limited"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    UPSTREAM_UNREACHABLE = "upstream_unreachable"
    UPSTREAM_ABORTED = "upstream_aborted"
    CLIENT_GONE = "client_gone"
    CANCELLED = "cancelled"


@attrs.frozen
class ModelCall:
    type: ClassVar[str] = "model.call"

    session_id: str
    agent_group_id: str
    provider: str
    # The Host the sandbox named, normalized; "<invalid>" when it was not a host name.
    host: str
    # The method and path when they are a route the proxy knows, else "<other>".
    method: str
    path: str
    status: int
    request_bytes: int
    response_bytes: int
    duration_ms: float
    redactions: int
    outcome: str = Outcome.OK
    # Cheap rejections (4xx the proxy answers itself) are reported at a bounded rate so a
    # flood cannot flood the audit log; this counts those left out since the last report.
    suppressed: int = 0
    # Why the model stopped (a StopKind word; "" when the answer was no completion) and
    # what an upstream error said (a FailureKind word; "" when there was none).
    stop: str = ""
    failure: str = ""


@attrs.frozen
class SessionSocketFailed:
    """A session's socket stopped serving on its own (not through ``stop_session``);
    the session's owner should serve it again or retire the session."""

    type: ClassVar[str] = "modelproxy.session_failed"

    session_id: str
    error: str  # the exception's type name only


@attrs.frozen
class ProviderFailing:
    """A provider answered with the same kind of failure (overloaded, quota, auth, ...)
    several calls in a row: something for the operator to look at, not a blip."""

    type: ClassVar[str] = "model.provider_failing"

    provider: str
    failure: str  # a FailureKind word
    consecutive: int


@attrs.frozen
class ProviderRecovered:
    """A provider reported failing answered a call successfully again."""

    type: ClassVar[str] = "model.provider_recovered"

    provider: str
    failed_calls: int
