"""The egress broker's configuration: limits, local services, the search backend.

Nothing here opens a host to anyone. Which hosts a session may reach is the agent
group's ``egress_hosts`` grant, written only by an approved ``egress`` change; this
configuration only *narrows* what a grant can do (caps, timeouts) or tells the broker
how to treat a few names the operator runs locally:

* ``allow_loopback_hosts``: names (``name`` or ``name:port``) that are local services.
  Such a name must still be on a group's allowlist to be reached; what the entry adds
  is that it may (and then must) resolve to a loopback address, may use plain http,
  and may use the named port (443, or 80 for http, when none is named).
* ``static_hosts``: fixed name -> address pins consulted before DNS (like curl's
  ``--resolve``). A pinned address is checked exactly like a resolved one.
* ``search_url``: a SearXNG-style JSON endpoint with one ``{query}`` placeholder. Its
  host must be on the group's allowlist too, or ``web_search`` is refused.
* ``ca_bundle``: a PEM file of extra trust anchors (a private CA); the system store
  is used when it is None.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs

from .policy import LocalService, normalize_host

__all__ = ["EgressConfig", "EgressLimits", "LocalService"]

_positive = attrs.validators.gt(0)
_positive_s = attrs.validators.gt(0.0)


@attrs.frozen
class EgressLimits:
    # Requests per second per session, sustained, and how many may come at once.
    rate: float = attrs.field(default=1.0, validator=_positive_s)
    burst: int = attrs.field(default=10, validator=_positive)
    max_connections_per_session: int = attrs.field(default=8, validator=_positive)
    # The JSON request to the broker, and the upstream request body inside it.
    max_request_bytes: int = attrs.field(default=512 * 1024, validator=_positive)
    max_body_bytes: int = attrs.field(default=256 * 1024, validator=_positive)
    # Upstream response body (after decompression) handed back; the rest is cut.
    max_response_bytes: int = attrs.field(default=256 * 1024, validator=_positive)
    max_header_bytes: int = attrs.field(default=16 * 1024, validator=_positive)
    max_redirects: int = attrs.field(default=5, validator=attrs.validators.ge(0))
    # One request, redirects and body included, ends by then (504 otherwise).
    total_timeout: float = attrs.field(default=30.0, validator=_positive_s)
    connect_timeout: float = attrs.field(default=10.0, validator=_positive_s)
    # Waiting for the next request on a connection; receiving one request body.
    idle_timeout: float = attrs.field(default=60.0, validator=_positive_s)
    body_timeout: float = attrs.field(default=30.0, validator=_positive_s)
    # 429s are free to provoke: at most this many per second (burst x2) are reported
    # one by one, the rest are counted in the next report's ``suppressed``.
    reject_reports_per_s: float = attrs.field(default=2.0, validator=_positive_s)


def _services(entries: Iterable[str | LocalService]) -> tuple[LocalService, ...]:
    if isinstance(entries, str):
        raise TypeError("allow_loopback_hosts is a sequence of names, not one string")
    merged: dict[str, set[int]] = {}
    for entry in entries:
        service = entry if isinstance(entry, LocalService) else LocalService.parse(entry)
        merged.setdefault(service.host, set()).update(service.ports)
    return tuple(LocalService(host, frozenset(ports)) for host, ports in sorted(merged.items()))


def _pins(value: Mapping[str, str] | Iterable[tuple[str, str]]
          ) -> tuple[tuple[str, str], ...]:
    pairs = value.items() if isinstance(value, Mapping) else value
    out = []
    for name, address in pairs:
        host = normalize_host(name)
        if host is None:
            raise ValueError(f"static_hosts: not a host name: {name!r:.80}")
        out.append((host, str(ipaddress.ip_address(address))))
    return tuple(sorted(out))


def _search_url(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if value.count("{query}") != 1:
        raise ValueError("search_url must contain exactly one {query} placeholder")
    parts = urlsplit(value.replace("{query}", "q"))
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("search_url must be an absolute http(s) URL")
    if parts.username or parts.password or parts.fragment:
        raise ValueError("search_url may carry no userinfo or fragment")
    if "{query}" not in value.partition("?")[2]:
        raise ValueError("the {query} placeholder belongs in search_url's query string")
    return value


@attrs.frozen
class EgressConfig:
    # False: no broker runs, and no session ever gets egress, whatever its grants say.
    enabled: bool = True
    limits: EgressLimits = attrs.Factory(EgressLimits)
    allow_loopback_hosts: tuple[LocalService, ...] = attrs.field(default=(),
                                                                converter=_services)
    static_hosts: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_pins)
    search_url: str | None = attrs.field(default=None, converter=_search_url)
    ca_bundle: Path | None = attrs.field(
        default=None, converter=attrs.converters.optional(Path))

    @classmethod
    def from_table(cls, table: object) -> EgressConfig:
        """From the config file's ``[egress]`` table (``[egress.limits]`` inside it).
        Unknown keys and wrong types are errors, never ignored."""
        top = _table(table, "egress", ("enabled", "limits", "allow_loopback_hosts",
                                       "static_hosts", "search_url", "ca_bundle"))
        values: dict[str, Any] = {}
        if "enabled" in top:
            if not isinstance(top["enabled"], bool):
                raise ValueError("egress.enabled must be true or false")
            values["enabled"] = top["enabled"]
        if "limits" in top:
            values["limits"] = _limits(top["limits"])
        if "allow_loopback_hosts" in top:
            values["allow_loopback_hosts"] = tuple(_strings(top["allow_loopback_hosts"],
                                                            "egress.allow_loopback_hosts"))
        if "static_hosts" in top:
            pins = _table(top["static_hosts"], "egress.static_hosts", None)
            values["static_hosts"] = {k: str(v) for k, v in pins.items()}
        for key in ("search_url", "ca_bundle"):
            if key in top:
                if not isinstance(top[key], str):
                    raise ValueError(f"egress.{key} must be a string")
                values[key] = top[key]
        return cls(**values)

    def local_service(self, host: str) -> LocalService | None:
        return next((s for s in self.allow_loopback_hosts if s.host == host), None)

    def pinned(self, host: str) -> str | None:
        return next((address for name, address in self.static_hosts if name == host), None)


def _table(value: object, name: str, known: Iterable[str] | None) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be a table")
    if known is not None:
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(f"{name}: unknown key(s) {', '.join(unknown)}")
    return dict(value)


def _strings(value: object, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{name} must be a list of strings")
    return value


def _limits(value: object) -> EgressLimits:
    fields = {f.name: f for f in attrs.fields(EgressLimits)}
    table = _table(value, "egress.limits", fields)
    out: dict[str, Any] = {}
    for key, item in table.items():
        wanted = fields[key].type
        if isinstance(item, bool) or not isinstance(item, int | float) or (
                wanted in (int, "int") and not isinstance(item, int)):
            raise ValueError(f"egress.limits.{key} must be a {wanted} number")
        out[key] = item
    return EgressLimits(**out)
