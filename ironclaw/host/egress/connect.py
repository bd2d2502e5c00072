"""The broker's CONNECT mode: an HTTPS tunnel for one MCP server, on its own socket.

An MCP server such as mcp-server-fetch is an ordinary HTTP client: it cannot speak the
broker's JSON protocol, but it can use a proxy. So each server instance with egress
gets a unix socket of its own (:class:`ConnectRoute`), reached from inside its sandbox
through the loopback relay (``isolation.server_boot``), where the broker speaks
HTTP/1.1 ``CONNECT host:443`` (h11 parses it) and nothing else. Per tunnel, in order:

1. the route's token bucket (429), and a ``CONNECT`` request (anything else, a plain
   ``GET http://...`` included, is refused: HTTPS only, 403);
2. the target is a host name, never an IP literal, and is on the allowlist, read fresh
   for every tunnel: the hosts of the server's catalogue entry *that the agent group
   has been granted* (its ``egress_hosts``), so a revocation bites on the next tunnel;
3. port 443, or a port of a configured local service (403);
4. the name is resolved by the broker, every address checked, and the connection made
   to a checked one (``upstream.PinnedBackend``, as for fetches: 403 otherwise);
5. ``200``, then the first bytes from the server must open a TLS handshake (the
   tunnel is closed otherwise), and bytes flow both ways under a byte cap per
   direction, an idle timeout and a total deadline.

The broker never sees inside the tunnel: TLS runs end to end between the server and
the upstream, which the server verifies itself. Every tunnel, allowed or not, is
reported as an ``egress.request`` event with ``operation`` "connect" (metadata only).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import h11
import httpcore
import trio

from ironclaw.host.sockets.serving import accept_connections
from ironclaw.host.sockets.unix import bind_unix_socket, unlink_if_ours
from ironclaw.runtime import DiscardEvents, EventSink
from ironclaw.runtime.ratelimit import TokenBucket

from .broker import EgressGrants
from .config import EgressConfig
from .events import EgressRequest, Operation, Outcome
from .fetch import Tally
from .policy import Allowlist, Refused, normalize_host
from .upstream import AddressRefused, PinnedBackend, Resolver

__all__ = ["ConnectProxy", "ConnectRoute", "TunnelLimits"]

logger = logging.getLogger(__name__)

TLS_HANDSHAKE = 0x16
CHUNK = 64 * 1024


@attrs.frozen
class ConnectRoute:
    """One server instance's CONNECT socket and whose it is."""

    session_id: str
    agent_group_id: str
    server: str
    socket_path: Path
    hosts: tuple[str, ...]  # the catalogue entry's egress hosts


@attrs.frozen
class TunnelLimits:
    max_bytes_each_way: int = 32 * 1024 * 1024
    idle_timeout: float = 60.0
    total_timeout: float = 300.0


class ConnectProxy:
    """Serves CONNECT routes; :meth:`open_route` for each server instance."""

    def __init__(self, grants: EgressGrants, *, config: EgressConfig | None = None,
                 events: EventSink | None = None, resolver: Resolver | None = None,
                 tunnel: TunnelLimits | None = None) -> None:
        self._grants = grants
        self._config = EgressConfig() if config is None else config
        self._events: EventSink = DiscardEvents() if events is None else events
        self._tunnel = tunnel or TunnelLimits()
        local = [s.host for s in self._config.allow_loopback_hosts]
        pins = dict(self._config.static_hosts)
        self._backend = (PinnedBackend(local_hosts=local, pins=pins, resolver=resolver)
                         if resolver is not None else
                         PinnedBackend(local_hosts=local, pins=pins))

    @contextlib.asynccontextmanager
    async def open_route(self, route: ConnectRoute) -> AsyncIterator[Path]:
        """Serve ``route`` for the duration of the block; yields its socket path. The
        socket is unlinked and every tunnel closed on the way out."""
        limits = self._config.limits
        bucket = TokenBucket(limits.rate, limits.burst)
        sock, identity = await bind_unix_socket(route.socket_path)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._accept, route, trio.SocketListener(sock), bucket)
                yield route.socket_path
                nursery.cancel_scope.cancel()
        finally:
            sock.close()
            unlink_if_ours(route.socket_path, identity)

    def open_tunnel(self, *, session_id: str, group: str, server: str, socket_path: Path,
                    hosts: tuple[str, ...]) -> contextlib.AbstractAsyncContextManager[Path]:
        """:meth:`open_route`, for a launcher that knows nothing of egress types."""
        return self.open_route(ConnectRoute(session_id, group, server, socket_path, hosts))

    async def _accept(self, route: ConnectRoute, listener: trio.SocketListener,
                      bucket: TokenBucket) -> None:
        async with trio.open_nursery() as connections:
            await accept_connections(
                listener, None,
                max_connections=self._config.limits.max_connections_per_session,
                connections=connections,
                handle=lambda stream: self._connection(route, stream, bucket))

    async def _connection(self, route: ConnectRoute, stream: trio.SocketStream,
                          bucket: TokenBucket) -> None:
        tally = Tally(method="CONNECT", outcome=Outcome.BAD_REQUEST)
        started = trio.current_time()
        try:
            with trio.move_on_after(self._tunnel.total_timeout):
                await self._tunnel_one(route, stream, bucket, tally)
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError,
                httpcore.NetworkError):
            if tally.outcome is Outcome.OK and not tally.response_bytes:
                tally.outcome = Outcome.CLIENT_GONE
        except Exception as exc:
            # One tunnel's failure never ends the route's other tunnels.
            logger.warning("egress CONNECT: a tunnel of %s/%s failed (%s)",
                           route.session_id, route.server, type(exc).__name__)
            tally.outcome = Outcome.UPSTREAM_ERROR
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()
            self._report(route, tally, started)

    async def _tunnel_one(self, route: ConnectRoute, stream: trio.SocketStream,
                          bucket: TokenBucket, tally: Tally) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=
                              self._config.limits.max_header_bytes)
        request = await _read_request(conn, stream, self._config.limits.idle_timeout)
        if request is None:
            return
        try:
            if bucket.try_acquire() > 0:
                raise Refused(429, Outcome.RATE_LIMITED, "egress rate limit reached")
            host, port = await self._check(route, request, tally)
            upstream = await self._connect(host, port, tally)
        except Refused as refusal:
            tally.status, tally.outcome = refusal.status, refusal.outcome
            await stream.send_all(_refusal(conn, refusal))
            return
        try:
            tally.status, tally.outcome, tally.upstream = 200, Outcome.OK, True
            await stream.send_all(conn.send(h11.Response(status_code=200, headers=[]))
                                  or b"")
            first = conn.trailing_data[0] or await _receive(stream, self._tunnel.idle_timeout)
            if not first or first[0] != TLS_HANDSHAKE:
                tally.outcome = Outcome.SCHEME_NOT_ALLOWED
                return
            await self._splice(stream, upstream, bytes(first), tally)
        finally:
            with trio.CancelScope(shield=True):
                await upstream.aclose()

    async def _check(self, route: ConnectRoute, request: h11.Request,
                     tally: Tally) -> tuple[str, int]:
        if request.method != b"CONNECT":
            raise Refused(403, Outcome.SCHEME_NOT_ALLOWED,
                          "only https, through CONNECT, leaves a server's sandbox")
        name, _, port_text = request.target.decode("ascii", "replace").rpartition(":")
        host = normalize_host(name)
        if host is None or not port_text.isdigit():
            raise Refused(403, Outcome.HOST_NOT_ALLOWED,
                          "egress is by host name; an IP address is never allowed")
        tally.host = host
        try:
            granted = await self._grants.egress_hosts(route.agent_group_id)
        except Exception:
            raise Refused(503, Outcome.UNAVAILABLE, "the allowlist could not be read") \
                from None
        if not (Allowlist.from_grant(route.hosts).allows(host)
                and Allowlist.from_grant(granted).allows(host)):
            raise Refused(403, Outcome.HOST_NOT_ALLOWED,
                          "the host is not among this server's granted egress hosts")
        port = int(port_text)
        service = self._config.local_service(host)
        if port not in (service.ports if service is not None else {443}):
            raise Refused(403, Outcome.PORT_NOT_ALLOWED, f"port {port} is not open")
        return host, port

    async def _connect(self, host: str, port: int,
                       tally: Tally) -> httpcore.AsyncNetworkStream:
        limits = self._config.limits
        try:
            return await self._backend.connect_tcp(host, port,
                                                   timeout=limits.connect_timeout)
        except AddressRefused:
            raise Refused(403, Outcome.ADDRESS_NOT_ALLOWED,
                          "the name resolves to an address egress may not reach") from None
        except httpcore.ConnectTimeout:
            raise Refused(504, Outcome.UPSTREAM_TIMEOUT, "connecting timed out") from None
        except (httpcore.ConnectError, OSError):
            raise Refused(502, Outcome.UPSTREAM_UNREACHABLE, "upstream unreachable") \
                from None

    async def _splice(self, client: trio.SocketStream,
                      upstream: httpcore.AsyncNetworkStream, first: bytes,
                      tally: Tally) -> None:
        cap, idle = self._tunnel.max_bytes_each_way, self._tunnel.idle_timeout

        async def outward() -> None:
            data = first
            while data and tally.request_bytes + len(data) <= cap:
                tally.request_bytes += len(data)
                await upstream.write(data, timeout=idle)
                data = await _receive(client, idle)
            nursery.cancel_scope.cancel()

        async def inward() -> None:
            while True:
                data = await upstream.read(CHUNK, timeout=idle)
                if not data or tally.response_bytes + len(data) > cap:
                    break
                tally.response_bytes += len(data)
                await client.send_all(data)
            nursery.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(outward)
            nursery.start_soon(inward)

    def _report(self, route: ConnectRoute, tally: Tally, started: float) -> None:
        # An event sink's failure never takes a tunnel down.
        with contextlib.suppress(Exception):
            self._events.publish(EgressRequest(
                session_id=route.session_id, agent_group_id=route.agent_group_id,
                operation=Operation.CONNECT.value, host=tally.host, final_host=tally.host,
                method=tally.method, status=tally.status, outcome=tally.outcome.value,
                upstream=tally.upstream, request_bytes=tally.request_bytes,
                response_bytes=tally.response_bytes,
                duration_ms=round((trio.current_time() - started) * 1000, 3)))


def _refusal(conn: h11.Connection, refusal: Refused) -> bytes:
    head = conn.send(h11.Response(status_code=refusal.status,
                                  headers=[("content-length", "0"), ("connection", "close")],
                                  reason=refusal.outcome.value.encode())) or b""
    return head + (conn.send(h11.EndOfMessage()) or b"")


async def _receive(stream: trio.SocketStream, idle: float) -> bytes:
    with trio.move_on_after(idle):
        return await stream.receive_some(CHUNK)
    return b""


async def _read_request(conn: h11.Connection, stream: trio.SocketStream,
                        idle: float) -> h11.Request | None:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await _receive(stream, idle)
            conn.receive_data(data)
            if not data:
                return None
            continue
        if isinstance(event, h11.Request):
            # A CONNECT has no body: its end is already buffered. Reading it lets a
            # 2xx answer switch the connection to the tunnel (h11's protocol switch).
            end = conn.next_event()
            return event if isinstance(end, h11.EndOfMessage) else None
        return None
