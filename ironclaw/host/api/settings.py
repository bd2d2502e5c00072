"""How the API server is bound and limited.

Loopback by default (docs/design.md, invariant 9). Any other address needs ``allow_public``,
and even then the server logs, loudly, what it exposes: a token is still required on
every route but the probes, but the traffic is plain HTTP, so it belongs behind a
tailnet or a TLS-terminating proxy.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import attrs

DEFAULT_PORT = 8787
KIB = 1024


class BindRefused(ValueError):
    """A non-loopback address without ``allow_public``."""


def _port(_instance: object, _attribute: object, value: int) -> None:
    if not isinstance(value, int) or not 0 <= value <= 65535:
        raise ValueError("port must be 0-65535 (0: any free port)")


def _host(_instance: object, _attribute: object, value: str) -> None:
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise ValueError("host must be a non-empty address")


def _positive(_instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be positive")


@attrs.frozen
class ApiSettings:
    host: str = attrs.field(default="127.0.0.1", validator=_host)
    port: int = attrs.field(default=DEFAULT_PORT, validator=_port)
    allow_public: bool = False
    # Requests: the largest body, and a token bucket per principal (probes exempt).
    max_body_bytes: int = attrs.field(default=512 * KIB, validator=_positive)
    rate_per_second: float = attrs.field(default=50.0, validator=_positive)
    rate_burst: int = attrs.field(default=200, validator=_positive)
    # Websockets: the largest message a client may send, how long a client that
    # authenticates by message has to do so, and how a slow reader is cut off.
    ws_max_message_bytes: int = attrs.field(default=64 * KIB, validator=_positive)
    ws_auth_timeout: float = attrs.field(default=5.0, validator=_positive)
    event_buffer: int = attrs.field(default=512, validator=_positive)
    event_max_missed: int = attrs.field(default=5_000, validator=_positive)
    ws_send_timeout: float = attrs.field(default=10.0, validator=_positive)
    # Chat over a websocket: a token bucket per principal (shared by all of its chat
    # connections) for the messages it posts; each one wakes an agent.
    ws_chat_rate_per_second: float = attrs.field(default=1.0, validator=_positive)
    ws_chat_burst: int = attrs.field(default=10, validator=_positive)
    # A connection whose peer takes no data for this long is aborted (TCP_USER_TIMEOUT).
    stall_timeout: float = attrs.field(default=30.0, validator=_positive)
    graceful_timeout: float = attrs.field(default=5.0, validator=_positive)

    @classmethod
    def parse_addr(cls, addr: str, **fields: object) -> ApiSettings:
        """``HOST:PORT`` (``[v6]:PORT`` for IPv6), as ``--api-addr`` and the config
        file's ``api_addr`` give it."""
        host, sep, port = addr.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"expected HOST:PORT, got {addr!r:.80}")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        return cls(host=host, port=int(port), **fields)  # type: ignore[arg-type]

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    @property
    def bind(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def check_bind(self) -> None:
        if not self.loopback and not self.allow_public:
            raise BindRefused(
                f"refusing to bind the API to {self.host!r}, which is not loopback; "
                "pass allow_public (--api-allow-public) if you mean it")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it could resolve to anything


def exposure_warning(settings: ApiSettings) -> str:
    return (
        f"THE IRONCLAW API IS BOUND TO {settings.bind}, WHICH IS NOT LOOPBACK. "
        "Anyone who can reach that address can try tokens against: change submission and "
        "decisions, the audit log, registry reads, sessions, questions, access requests, "
        "local-channel chat, the live event stream and /metrics (/healthz, /readyz "
        "and the console's static files under /ui/ need no token). It speaks plain HTTP: "
        "put it on a tailnet address or behind a TLS-terminating proxy, never on the "
        "open internet.")
