"""The model proxy's mailbox messages and its limits.

Messages are frozen; each carries its own :class:`ironclaw.runtime.Reply`, which the
proxy answers exactly once, also when it stops.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from ironclaw.runtime import Reply

from .providers import SessionRoute

__all__ = ["ProxyLimits", "ProxyMsg", "ServeProxySession", "StopProxySession"]


_positive = attrs.validators.gt(0)
_positive_s = attrs.validators.gt(0.0)


@attrs.frozen
class ProxyLimits:
    max_request_bytes: int = attrs.field(default=4 * 1024 * 1024, validator=_positive)
    max_header_bytes: int = attrs.field(default=64 * 1024, validator=_positive)
    # Requests per second per session, sustained, and how many may come at once.
    rate: float = attrs.field(default=5.0, validator=_positive_s)
    burst: int = attrs.field(default=20, validator=_positive)
    max_connections_per_session: int = attrs.field(default=32, validator=_positive)
    # Waiting for (the head of) the next request; receiving one request body.
    idle_timeout: float = attrs.field(default=120.0, validator=_positive_s)
    body_timeout: float = attrs.field(default=60.0, validator=_positive_s)
    connect_timeout: float = attrs.field(default=10.0, validator=_positive_s)
    # The longest upstream silence, mid-stream included.
    read_timeout: float = attrs.field(default=300.0, validator=_positive_s)
    # Rejections the proxy produces itself are cheap to provoke; at most this many per
    # second (burst x2) are reported one by one, the rest are counted in `suppressed`.
    reject_reports_per_s: float = attrs.field(default=2.0, validator=_positive_s)


@attrs.frozen
class ServeProxySession:
    route: SessionRoute
    reply: Reply[Path] = attrs.field(factory=Reply, eq=False)


@attrs.frozen
class StopProxySession:
    session_id: str
    reply: Reply[None] = attrs.field(factory=Reply, eq=False)


ProxyMsg = ServeProxySession | StopProxySession
