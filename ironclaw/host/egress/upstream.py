"""The broker's outbound HTTP client, pinned to the addresses it checked.

DNS rebinding is defeated where the connection is made, not before it: the client's
network backend (:class:`PinnedBackend`) resolves the name itself, checks *every*
address the answer holds (public unicast, or loopback for a configured local service;
see :func:`~ironclaw.host.egress.policy.address_problem`), and connects to one of those
checked addresses. TLS is then started by httpcore with the *name* as SNI and as the
name the certificate must match, and the request carries the name as ``Host``. There
is no second lookup an attacker's DNS could answer differently.

httpx cannot be handed a network backend, so :class:`PinnedTransport` is a small httpx
transport over an httpcore connection pool that has one. It passes only the timeout
extension through (nothing else reaches httpcore, e.g. no ``sni_hostname``), maps
httpcore's errors to httpx's, and lets :class:`AddressRefused` through as itself so the
broker can tell "refused by policy" from "unreachable".

The client follows no redirects (the broker re-checks each hop itself), reads no
environment (no proxies, no netrc, no ``SSL_CERT_FILE``) and keeps no cookies.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from typing import Any

import httpcore
import httpx
import trio

from .policy import address_problem

__all__ = ["AddressRefused", "PinnedBackend", "PinnedTransport", "Resolver", "make_ssl_context",
           "open_upstream_client", "system_resolver"]

Resolver = Callable[[str, int], Awaitable[list[str]]]
# At most this many checked addresses are tried, in the resolver's order.
MAX_ATTEMPTS = 4


class AddressRefused(Exception):
    """The name resolved to an address the broker must not connect to."""

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"{host}: {reason}")
        self.host = host
        self.reason = reason


async def system_resolver(host: str, port: int) -> list[str]:
    """The host's resolver (getaddrinfo, on a worker thread), addresses deduplicated
    in the order given."""
    infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in seen:
            seen.append(address)
    return seen


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Resolve, check every address, connect to a checked one."""

    def __init__(self, *, local_hosts: Iterable[str] = (),
                 pins: Mapping[str, str] | None = None,
                 resolver: Resolver = system_resolver) -> None:
        self._local = frozenset(local_hosts)
        self._pins = dict(pins or {})
        self._resolver = resolver
        self._inner = httpcore.TrioBackend()

    async def _addresses(self, host: str, port: int) -> list[str]:
        pinned = self._pins.get(host)
        if pinned is not None:
            return [pinned]
        try:
            return await self._resolver(host, port)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {type(exc).__name__}") from None

    # The signatures are httpcore's interface, timeout parameters included.
    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,  # noqa: ASYNC109
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        name = host.lower()
        deadline = trio.current_time() + (timeout if timeout is not None else float("inf"))
        addresses: list[str] = []
        with trio.move_on_at(deadline):
            addresses = await self._addresses(name, port)
        if trio.current_time() >= deadline:
            raise httpcore.ConnectTimeout(f"resolving {name} took too long")
        if not addresses:
            raise httpcore.ConnectError(f"{name} has no address")
        local = name in self._local
        for address in addresses:
            problem = address_problem(address, local=local)
            if problem is not None:
                raise AddressRefused(name, problem)
        failure: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for address in addresses[:MAX_ATTEMPTS]:
            remaining = deadline - trio.current_time()
            if remaining <= 0:
                break
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=None if remaining == float("inf") else remaining,
                    local_address=local_address, socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure or httpcore.ConnectTimeout(f"connecting to {name} took too long")

    async def connect_unix_socket(self, path: str, timeout: float | None = None,  # noqa: ASYNC109
                                  socket_options: Iterable[Any] | None = None,
                                  ) -> httpcore.AsyncNetworkStream:
        raise AddressRefused("unix socket", "the broker never connects to unix sockets")

    async def sleep(self, seconds: float) -> None:
        await trio.sleep(seconds)


# httpcore error -> httpx error, most specific first.
_ERRORS: tuple[tuple[type[Exception], type[httpx.HTTPError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
)


@contextlib.contextmanager
def _mapped() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for source, target in _ERRORS:
            if isinstance(exc, source):
                raise target(str(exc)) from exc
        raise


class _Body(httpx.AsyncByteStream):
    """httpcore's response stream as httpx wants it. A plain iterator (not a generator)
    so that stopping early leaves nothing half-run behind in this layer."""

    def __init__(self, source: Any) -> None:
        self._source = source
        self._iterator: Any = None

    def __aiter__(self) -> _Body:
        return self

    async def __anext__(self) -> bytes:
        if self._iterator is None:
            self._iterator = self._source.__aiter__()
        with _mapped():
            chunk: bytes = await self._iterator.__anext__()
        return chunk

    async def aclose(self) -> None:
        with _mapped():
            await self._source.aclose()


class PinnedTransport(httpx.AsyncBaseTransport):
    def __init__(self, backend: PinnedBackend, ssl_context: ssl.SSLContext, *,
                 max_connections: int = 16, keepalive_expiry: float = 30.0) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context, max_connections=max_connections,
            max_keepalive_connections=max_connections, keepalive_expiry=keepalive_expiry,
            http1=True, http2=False, retries=0, network_backend=backend)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=request.url.raw_scheme, host=request.url.raw_host,
                             port=request.url.port, target=request.url.raw_path),
            headers=request.headers.raw, content=request.stream,
            extensions={"timeout": request.extensions.get("timeout", {})})
        with _mapped():
            response = await self._pool.handle_async_request(core)
        return httpx.Response(status_code=response.status, headers=response.headers,
                              stream=_Body(response.stream), extensions=response.extensions)

    async def aclose(self) -> None:
        await self._pool.aclose()


def make_ssl_context(ca_bundle: Path | None = None) -> ssl.SSLContext:
    """The public trust store (certifi, as httpx ships it), plus ``ca_bundle`` if given;
    TLS 1.2 at least, hostnames always checked. The environment is not consulted."""
    context = httpx.create_ssl_context(trust_env=False)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    if ca_bundle is not None:
        context.load_verify_locations(cafile=str(ca_bundle))
    return context


@contextlib.asynccontextmanager
async def open_upstream_client(backend: PinnedBackend, ssl_context: ssl.SSLContext, *,
                               connect_timeout: float, total_timeout: float,
                               max_connections: int) -> AsyncIterator[httpx.AsyncClient]:
    """One session's client: its own small pool (nothing is shared across sessions, so
    an upstream cannot link two agent groups by their connection), no redirects, no
    environment, a cookie jar that refuses every cookie."""
    async with httpx.AsyncClient(
        transport=PinnedTransport(backend, ssl_context, max_connections=max_connections),
        trust_env=False, follow_redirects=False,
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
        timeout=httpx.Timeout(total_timeout, connect=connect_timeout, pool=connect_timeout),
        headers={"user-agent": "ironclaw-egress"},
    ) as client:
        yield client
