"""Where a session's model calls may go, and what the proxy does to their headers.

A :class:`SessionRoute` binds one session (its socket) to one :class:`ProviderEndpoint`.
The endpoint fixes the destination: the sandbox's ``Host`` header is only *checked*
against ``allowed_hosts``; it never chooses where the request goes, which is always
``upstream_base_url``. So a request cannot be steered anywhere the host did not decide.

Header policy, request side: an allowlist per provider kind. Only headers the official
SDKs send and that name nothing but the request itself pass (content type, accept, user
agent, the SDK's ``x-stainless-*`` platform and retry headers, the provider's API
version and beta flags). Everything else is dropped, above all whatever names an
organisation, project, workspace, account, key or base URL (``openai-organization``,
``openai-project``, ``anthropic-workspace-id``...): the credential is the host's, and
the sandbox may not choose whom it bills. The credential is injected here, host-side,
and the framing headers are left to the HTTP client.
Response side: hop-by-hop, framing, cookie and auth headers are dropped; what remains is
redacted by the caller.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

import attrs

from ironclaw.contract.agent_config import MOCK_MODEL_HOST
from ironclaw.contract.ids import SessionId, validate_session_id

from .credentials import Credentials, Secret

__all__ = [
    "ANTHROPIC_VERSION",
    "REQUEST_HEADER_ALLOWLIST",
    "ProviderEndpoint",
    "ProviderKind",
    "SessionRoute",
    "normalize_host",
    "request_headers_for_upstream",
    "response_headers_for_sandbox",
]

ANTHROPIC_VERSION = "2023-06-01"

MESSAGES = ("POST", "/v1/messages")
CHAT_COMPLETIONS = ("POST", "/v1/chat/completions")
MODELS = ("GET", "/v1/models")


class ProviderKind(enum.StrEnum):
    ANTHROPIC = "anthropic"
    OPENAI = "openai"
    OPENROUTER = "openrouter"
    LOCAL = "local"
    MOCK = "mock"


_ROUTES: dict[ProviderKind, frozenset[tuple[str, str]]] = {
    ProviderKind.ANTHROPIC: frozenset({MESSAGES, MODELS}),
    ProviderKind.OPENAI: frozenset({CHAT_COMPLETIONS, MODELS}),
    ProviderKind.OPENROUTER: frozenset({CHAT_COMPLETIONS, MODELS}),
    ProviderKind.LOCAL: frozenset({CHAT_COMPLETIONS, MODELS}),
    ProviderKind.MOCK: frozenset({MESSAGES, CHAT_COMPLETIONS, MODELS}),
}


def normalize_host(value: str) -> str | None:
    """The bare, lowercased host of a ``Host`` header value (port dropped), or None if
    it is not a plausible host name or IP literal."""
    host = value.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        if end < 0 or (host[end + 1:] and not _is_port(host[end + 1:])):
            return None
        try:
            ipaddress.IPv6Address(host[1:end])
        except ValueError:
            return None
        return host[1:end]
    if ":" in host:
        host, _, port = host.partition(":")
        if not _is_port(":" + port):
            return None
    host = host.removesuffix(".")
    if not host or len(host) > 253:
        return None
    if not all(ch.isascii() and (ch.isalnum() or ch in "-.") for ch in host):
        return None
    return host


def _is_port(text: str) -> bool:
    return text.startswith(":") and text[1:].isdigit() and 0 < len(text) <= 6


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_base_url(kind: ProviderKind, url: str, credential: Secret | None) -> None:
    if kind is ProviderKind.MOCK:
        return
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("upstream_base_url must be an absolute http(s) URL")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError("upstream_base_url may carry no userinfo, query or fragment")
    if parts.scheme == "http" and credential is not None and not _is_loopback(parts.hostname):
        raise ValueError("a credential is never sent over plain http beyond loopback")


def _hosts(hosts: Iterable[str]) -> frozenset[str]:
    result = set()
    for host in hosts:
        norm = normalize_host(host)
        if norm is None:
            raise ValueError(f"not a host name: {host!r:.80}")
        result.add(norm)
    if not result:
        raise ValueError("allowed_hosts may not be empty")
    return frozenset(result)


def _strip_slash(url: str) -> str:
    return str(url).rstrip("/")


@attrs.frozen
class ProviderEndpoint:
    """One provider as the proxy sees it: which Host headers are accepted, where calls
    really go, and the credential to inject (None: send none)."""

    kind: ProviderKind = attrs.field(converter=ProviderKind)
    allowed_hosts: frozenset[str] = attrs.field(converter=_hosts)
    upstream_base_url: str = attrs.field(converter=_strip_slash)
    credential: Secret | None = attrs.field(default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        _check_base_url(self.kind, self.upstream_base_url, self.credential)

    @classmethod
    def anthropic(cls, credential: Secret | None, *,
                  base_url: str = "https://api.anthropic.com") -> ProviderEndpoint:
        return cls(ProviderKind.ANTHROPIC, frozenset({"api.anthropic.com"}), base_url,
                   credential)

    @classmethod
    def openai(cls, credential: Secret | None, *,
               base_url: str = "https://api.openai.com") -> ProviderEndpoint:
        return cls(ProviderKind.OPENAI, frozenset({"api.openai.com"}), base_url, credential)

    @classmethod
    def openrouter(cls, credential: Secret | None, *,
                   base_url: str = "https://openrouter.ai/api") -> ProviderEndpoint:
        return cls(ProviderKind.OPENROUTER, frozenset({"openrouter.ai"}), base_url,
                   credential)

    @classmethod
    def local(cls, url: str = "http://127.0.0.1:11434",
              credential: Secret | None = None) -> ProviderEndpoint:
        host = urlsplit(url).hostname or ""
        return cls(ProviderKind.LOCAL, frozenset({host}), url, credential)

    @classmethod
    def mock(cls) -> ProviderEndpoint:
        return cls(ProviderKind.MOCK, frozenset({MOCK_MODEL_HOST}), "mock:", None)

    @classmethod
    def from_credentials(cls, kind: ProviderKind | str,
                         credentials: Credentials) -> ProviderEndpoint:
        """The default endpoint for ``kind`` with the host's credential for it."""
        kind = ProviderKind(kind)
        if kind is ProviderKind.ANTHROPIC:
            return cls.anthropic(credentials.anthropic)
        if kind is ProviderKind.OPENAI:
            return cls.openai(credentials.openai)
        if kind is ProviderKind.OPENROUTER:
            return cls.openrouter(credentials.openrouter)
        if kind is ProviderKind.LOCAL:
            if credentials.local_url is None:
                raise ValueError("no local model URL is configured")
            return cls.local(credentials.local_url, credentials.local_key)
        return cls.mock()

    def allows_host(self, host: str) -> bool:
        return host in self.allowed_hosts

    def allows_route(self, method: str, path: str) -> bool:
        return (method, path) in _ROUTES[self.kind]

    def upstream_url(self, path: str, query: str) -> str:
        return self.upstream_base_url + path + (f"?{query}" if query else "")

    def injected_headers(self) -> list[tuple[str, str]]:
        """The auth header(s) this provider takes, built from the host's credential."""
        if self.credential is None or self.kind is ProviderKind.MOCK:
            return []
        if self.kind is ProviderKind.ANTHROPIC:
            return [("x-api-key", self.credential.reveal())]
        return [("authorization", f"Bearer {self.credential.reveal()}")]


@attrs.frozen
class SessionRoute:
    """One session's model route. The socket at ``socket_path`` *is* the session."""

    session_id: SessionId = attrs.field(converter=validate_session_id)
    agent_group_id: str
    provider: ProviderEndpoint
    socket_path: Path = attrs.field(converter=Path)


# -- header policy -----------------------------------------------------------------

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "te", "trailer", "trailers",
    "transfer-encoding", "upgrade", "http2-settings",
})
# Proxy-chain headers say things about the host's network; never forwarded.
PROXY_CHAIN = frozenset({"forwarded", "via", "x-real-ip"})
EXACT_SENSITIVE = frozenset({
    "authorization", "proxy-authorization", "proxy-authenticate", "www-authenticate",
    "x-api-key", "api-key", "cookie", "set-cookie", "cookie2", "set-cookie2",
})
SENSITIVE_PREFIXES = ("x-ironclaw-", "x-forwarded-", "proxy-")

# What the official Python SDKs (anthropic, openai: both generated by Stainless) send
# that describes only the request and the client: content negotiation, the SDK's
# platform report, its retry and timeout bookkeeping and helper markers.
SDK_REQUEST_HEADERS = frozenset({
    "content-type", "accept", "user-agent",
    "x-stainless-lang", "x-stainless-package-version", "x-stainless-os",
    "x-stainless-arch", "x-stainless-runtime", "x-stainless-runtime-version",
    "x-stainless-async", "x-stainless-retry-count", "x-stainless-read-timeout",
    "x-stainless-timeout", "x-stainless-helper", "x-stainless-helper-method",
    "x-stainless-stream-helper", "x-stainless-poll-helper",
    "x-stainless-custom-poll-interval", "x-stainless-custom-event-handler",
})
# Per provider, on top: the API version and feature flags. Never the headers that
# pick an organisation, project or workspace (openai-organization, openai-project,
# anthropic-workspace-id, anthropic-organization-id...).
_ANTHROPIC_HEADERS = frozenset({"anthropic-version", "anthropic-beta"})
_OPENAI_HEADERS = frozenset({"openai-beta"})
REQUEST_HEADER_ALLOWLIST: dict[ProviderKind, frozenset[str]] = {
    ProviderKind.ANTHROPIC: SDK_REQUEST_HEADERS | _ANTHROPIC_HEADERS,
    ProviderKind.OPENAI: SDK_REQUEST_HEADERS | _OPENAI_HEADERS,
    ProviderKind.OPENROUTER: SDK_REQUEST_HEADERS,
    ProviderKind.LOCAL: SDK_REQUEST_HEADERS,
    ProviderKind.MOCK: SDK_REQUEST_HEADERS | _ANTHROPIC_HEADERS | _OPENAI_HEADERS,
}


def _connection_tokens(headers: Iterable[tuple[str, str]]) -> set[str]:
    named: set[str] = set()
    for name, value in headers:
        if name == "connection":
            named.update(token.strip().lower() for token in value.split(","))
    return named


def request_headers_for_upstream(
    headers: Iterable[tuple[str, str]], endpoint: ProviderEndpoint
) -> list[tuple[str, str]]:
    """The sandbox's headers (lowercase names) that the provider's allowlist names, plus
    the host's credential and the provider's required defaults. A header named in
    ``Connection`` is hop-by-hop whatever its name, so it is dropped too."""
    headers = list(headers)
    named = _connection_tokens(headers)
    allowed = REQUEST_HEADER_ALLOWLIST[endpoint.kind]
    kept = [(name, value) for name, value in headers
            if name in allowed and name not in named]
    if endpoint.kind is ProviderKind.ANTHROPIC and not any(
        name == "anthropic-version" for name, _ in kept
    ):
        kept.append(("anthropic-version", ANTHROPIC_VERSION))
    kept.append(("accept-encoding", "identity"))
    kept.extend(endpoint.injected_headers())
    return kept


def response_headers_for_sandbox(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Upstream response headers safe to pass on (values still to be redacted)."""
    headers = list(headers)
    named = _connection_tokens(headers)
    return [
        (name, value) for name, value in headers
        if name not in HOP_BY_HOP and name not in named and name not in PROXY_CHAIN
        and name not in ("content-length", "content-encoding", "alt-svc")
        and name not in EXACT_SENSITIVE and not name.startswith(SENSITIVE_PREFIXES)
        and "cookie" not in name
    ]
