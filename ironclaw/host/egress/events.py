"""What the broker reports about each request: metadata only.

``EgressRequest`` carries ids, host names, the method, a status and counts. Never a URL
path or query (they carry tokens as often as not), a header, a body or a search query:
it goes to the audit log and the event stream, which operators read and export.
"""

from __future__ import annotations

import enum
from typing import ClassVar

import attrs

__all__ = ["EgressRequest", "EgressSessionFailed", "Operation", "Outcome"]


class Outcome(enum.StrEnum):
    """How a request ended (a fixed vocabulary, never free text). Also the ``error``
    word of the broker's JSON error bodies."""

    OK = "ok"
    BAD_REQUEST = "bad_request"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    TOO_LARGE = "too_large"
    RATE_LIMITED = "rate_limited"
    HOST_NOT_ALLOWED = "host_not_allowed"
    SCHEME_NOT_ALLOWED = "scheme_not_allowed"
    PORT_NOT_ALLOWED = "port_not_allowed"
    ADDRESS_NOT_ALLOWED = "address_not_allowed"
    REDIRECT_NOT_ALLOWED = "redirect_not_allowed"
    TOO_MANY_REDIRECTS = "too_many_redirects"
    NO_SEARCH_BACKEND = "no_search_backend"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    UPSTREAM_UNREACHABLE = "upstream_unreachable"
    UPSTREAM_ERROR = "upstream_error"
    UNAVAILABLE = "unavailable"  # the broker could not read the allowlist
    CLIENT_GONE = "client_gone"
    CANCELLED = "cancelled"
    # Not a request: the count of cheap rejections (429s, malformed HTTP) still held
    # back when a session stops, reported in ``suppressed`` so that none goes missing.
    SUPPRESSED = "suppressed"


class Operation(enum.StrEnum):
    FETCH = "fetch"
    SEARCH = "search"
    CONNECT = "connect"  # an HTTPS tunnel for an MCP server (connect.py)
    OTHER = "other"  # a path the broker does not serve, or a request it could not parse


@attrs.frozen
class EgressRequest:
    type: ClassVar[str] = "egress.request"

    session_id: str
    agent_group_id: str
    operation: str
    # The host the request named (normalised), "" when there was none to name.
    host: str
    # Where the last hop went (differs from ``host`` after a redirect).
    final_host: str
    method: str
    # The status the broker answered the sandbox with (the upstream's, for a fetch that
    # reached it).
    status: int
    outcome: str
    # Whether a connection to an upstream was attempted at all (false for every policy
    # refusal, the address check included).
    upstream: bool
    request_bytes: int
    response_bytes: int
    duration_ms: float
    redirects: int = 0
    # Rate-limit refusals are reported at a bounded rate; this counts those left out
    # since the last report, so the total is still exact.
    suppressed: int = 0


@attrs.frozen
class EgressSessionFailed:
    """A session's socket stopped serving on its own (not through ``stop_session``)."""

    type: ClassVar[str] = "egress.session_failed"

    session_id: str
    error: str  # the exception's type name only
