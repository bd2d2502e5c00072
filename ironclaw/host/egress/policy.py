"""What the broker lets out: URLs, host names, addresses and headers. Pure functions.

The order of the checks on a URL, each a refusal the sandbox is told about:

1. it parses as an absolute http(s) URL of bounded length with no userinfo (400);
2. its host is a name, never an IP literal, and is on the group's allowlist (403);
3. https, unless the name is a configured local service (403);
4. port 443, or a port the local-service entry names (403).

The address check happens later, when a connection is opened (``upstream.py``): every
address the name resolves to must be public (or loopback, for a local service), and the
connection goes to that checked address, so DNS cannot change its answer in between.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence

import attrs
import httpx
import idna

from ironclaw.host.egress.public_suffix import wildcard_problem

from .events import Outcome

__all__ = [
    "MAX_URL_CHARS",
    "Allowlist",
    "LocalService",
    "Refused",
    "Target",
    "address_problem",
    "check_target",
    "normalize_host",
    "parse_url",
    "redirect_headers",
    "response_headers",
    "upstream_headers",
]

MAX_URL_CHARS = 8192
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_DEFAULT_PORTS = {"https": 443, "http": 80}
MAX_RESPONSE_HEADERS = 64
MAX_RESPONSE_HEADER_CHARS = 2048


class Refused(Exception):
    """The broker answers this request itself, with this status and error word."""

    def __init__(self, status: int, outcome: Outcome, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.outcome = outcome
        self.detail = detail


def normalize_host(value: str) -> str | None:
    """The lowercase ASCII form of a host name (IDNA A-labels, no trailing dot), or None
    if it is not a plausible DNS name. IP literals are not names: None."""
    host = value.strip().lower().removesuffix(".")
    if not host or len(host) > 253:
        return None
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError):
            return None
    if not all(_LABEL.fullmatch(label) for label in host.split(".")):
        return None
    if host.replace(".", "").isdigit():
        return None  # 127.0.0.1 spelled as a "name"
    return host


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


@attrs.frozen
class LocalService:
    """A name the operator runs locally (``allow_loopback_hosts``) and its open ports."""

    host: str
    ports: frozenset[int]

    @classmethod
    def parse(cls, entry: str) -> LocalService:
        name, sep, port = entry.strip().partition(":")
        host = normalize_host(name)
        if host is None:
            raise ValueError(f"allow_loopback_hosts: not a host name: {entry!r:.80}")
        if not sep:
            return cls(host, frozenset({443, 80}))
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"allow_loopback_hosts: bad port in {entry!r:.80}")
        return cls(host, frozenset({int(port)}))


@attrs.frozen
class Allowlist:
    """A group's ``egress_hosts`` grant: exact names and ``*.suffix`` wildcards.

    ``*.example.org`` matches any name *under* example.org, at any depth, and not
    ``example.org`` itself (grant that separately). A ``:443`` suffix is accepted and
    means the same as none; an entry naming another port, a wildcard over a public
    suffix (``*.co.uk``, ``*.github.io``, ``*.amazonaws.com``: see
    ``ironclaw.host.egress.public_suffix``), or anything malformed (the gateway's verifier
    refuses all three) matches nothing.
    """

    exact: frozenset[str]
    suffixes: tuple[str, ...]

    @classmethod
    def from_grant(cls, entries: Iterable[object]) -> Allowlist:
        exact: set[str] = set()
        suffixes: set[str] = set()
        for entry in entries:
            if not isinstance(entry, str):
                continue
            name, _, port = entry.partition(":")
            if port and port != "443":
                continue
            wildcard = name.startswith("*.")
            host = normalize_host(name[2:] if wildcard else name)
            if host is None:
                continue
            if wildcard:
                if wildcard_problem(host) is None:
                    suffixes.add("." + host)
            else:
                exact.add(host)
        return cls(frozenset(exact), tuple(sorted(suffixes)))

    def __bool__(self) -> bool:
        return bool(self.exact or self.suffixes)

    def allows(self, host: str) -> bool:
        return host in self.exact or any(host.endswith(s) for s in self.suffixes)


@attrs.frozen
class Target:
    """A URL that passed every check but the address one."""

    url: httpx.URL
    host: str
    port: int
    local: bool  # a configured local service: must resolve to loopback


def parse_url(text: str) -> httpx.URL:
    """An absolute http(s) URL, or :class:`Refused` (400). The fragment is dropped."""
    if len(text) > MAX_URL_CHARS:
        raise Refused(400, Outcome.BAD_REQUEST, f"the URL exceeds {MAX_URL_CHARS} characters")
    if any(ord(ch) <= 0x20 or ord(ch) == 0x7F or ch == "\\" for ch in text):
        raise Refused(400, Outcome.BAD_REQUEST,
                      "the URL contains whitespace, a control character or a backslash")
    try:
        url = httpx.URL(text)
    except (httpx.InvalidURL, ValueError, TypeError):
        raise Refused(400, Outcome.BAD_REQUEST, "the URL does not parse") from None
    return _absolute(url)


def _absolute(url: httpx.URL) -> httpx.URL:
    if url.scheme not in _DEFAULT_PORTS:
        raise Refused(400, Outcome.BAD_REQUEST, "only http(s) URLs can be fetched")
    if url.userinfo:
        raise Refused(400, Outcome.BAD_REQUEST, "credentials in the URL are refused")
    if not url.raw_host:
        raise Refused(400, Outcome.BAD_REQUEST, "the URL names no host")
    return url.copy_with(fragment=None) if url.fragment else url


def check_target(url: httpx.URL, allowlist: Allowlist,
                 services: Sequence[LocalService] = ()) -> Target:
    """Checks 2 to 4 (see the module doc); :class:`Refused` with 403 when one fails."""
    url = _absolute(url)
    raw = url.raw_host.decode("ascii", "replace")
    if _is_ip(raw):
        raise Refused(403, Outcome.HOST_NOT_ALLOWED,
                      "egress is by host name; an IP address is never on an allowlist")
    host = normalize_host(raw)
    if host is None:
        raise Refused(400, Outcome.BAD_REQUEST, "the URL's host is not a valid host name")
    if not allowlist.allows(host):
        raise Refused(403, Outcome.HOST_NOT_ALLOWED,
                      f"host {host!r:.200} is not on this agent group's egress allowlist; "
                      "a human must approve an 'egress' change naming it first")
    service = next((s for s in services if s.host == host), None)
    if url.scheme != "https" and service is None:
        raise Refused(403, Outcome.SCHEME_NOT_ALLOWED,
                      "only https is allowed to external hosts")
    port = url.port or _DEFAULT_PORTS[url.scheme]
    if port not in (service.ports if service is not None else {443}):
        raise Refused(403, Outcome.PORT_NOT_ALLOWED,
                      f"port {port} is not open for host {host!r:.200} (only 443)")
    if host != raw:
        url = url.copy_with(host=host)
    return Target(url, host, port, service is not None)


# -- addresses ------------------------------------------------------------------------

_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def _embedded(ip: ipaddress.IPv4Address | ipaddress.IPv6Address
              ) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The address and every IPv4 address it carries inside (mapped, 6to4, Teredo,
    NAT64), which is where a packet to it could really end up."""
    found: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            found.append(ip.ipv4_mapped)
        if ip.sixtofour is not None:
            found.append(ip.sixtofour)
        if ip.teredo is not None:
            found.extend(ip.teredo)
        if any(ip in net for net in _NAT64):
            found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def _public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return ip.is_global and not ip.is_multicast and not ip.is_reserved


def address_problem(address: str, *, local: bool) -> str | None:
    """Why the broker must not connect to ``address`` (None when it may).

    For a configured local service only loopback addresses pass; for every other name
    only public unicast ones (not private, loopback, link-local, shared, multicast,
    reserved or unspecified, nor an IPv6 form wrapping one of those)."""
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return "not an IP address"
    if local:
        return None if ip.is_loopback else "a local service must resolve to loopback"
    if all(_public(inner) for inner in _embedded(ip)):
        return None
    return "the name resolves to a private, loopback, link-local or reserved address"


# -- headers --------------------------------------------------------------------------

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "te", "trailer", "trailers",
    "transfer-encoding", "upgrade", "http2-settings",
})
# The broker frames the request and names the host itself; it asks for identity
# encoding so that the size cap counts real bytes.
FRAMING = frozenset({"host", "content-length", "expect", "accept-encoding"})
# Say things about the host's network, or address a proxy: never forwarded.
NETWORK = frozenset({"forwarded", "via", "x-real-ip", "x-client-ip", "true-client-ip"})
NETWORK_PREFIXES = ("proxy-", "x-forwarded-", "x-ironclaw-")
# The sandbox's own credentials: forwarded to the host it named, never across origins.
CREDENTIALS = frozenset({"authorization", "cookie", "cookie2"})


def _connection_tokens(headers: Iterable[tuple[str, str]]) -> set[str]:
    return {token.strip().lower() for name, value in headers if name == "connection"
            for token in value.split(",")}


def upstream_headers(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    """The sandbox's headers (already validated) minus hop-by-hop, framing and
    network-describing ones; plus ``accept-encoding: identity``."""
    items = [(name.lower(), value) for name, value in headers.items()]
    named = _connection_tokens(items)
    kept = [(name, value) for name, value in items
            if name not in HOP_BY_HOP and name not in FRAMING and name not in NETWORK
            and name not in named and not name.startswith(NETWORK_PREFIXES)]
    kept.append(("accept-encoding", "identity"))
    return kept


def redirect_headers(headers: list[tuple[str, str]], *, same_origin: bool,
                     keep_body: bool) -> list[tuple[str, str]]:
    """Headers for the next hop of a redirect: credentials stay with their origin,
    body headers go with the body."""
    return [(name, value) for name, value in headers
            if (same_origin or name not in CREDENTIALS)
            and (keep_body or not name.startswith("content-"))]


def response_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Upstream response headers for the sandbox: names lowercased, repeats joined
    with ``, ``, hop-by-hop and framing dropped, count and lengths bounded."""
    items = [(name.decode("latin-1").lower(), value.decode("latin-1")) for name, value in raw]
    named = _connection_tokens(items)
    out: dict[str, str] = {}
    for name, value in items:
        if (name in HOP_BY_HOP or name in named
                or name in ("content-length", "content-encoding", "alt-svc")):
            continue
        if name not in out and len(out) >= MAX_RESPONSE_HEADERS:
            continue
        joined = f"{out[name]}, {value}" if name in out else value
        out[name] = joined[:MAX_RESPONSE_HEADER_CHARS]
    return out
