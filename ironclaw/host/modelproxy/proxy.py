"""The model proxy actor: one unix socket per session, every credential host-side.

``ModelProxy.run`` owns a nursery with one listener task per served session and one
task per accepted connection, plus the host's single upstream HTTP client. Sessions
are added and removed through its mailbox (``ServeProxySession`` / ``StopProxySession``, or the
``serve_session`` / ``stop_session`` helpers that send them and wait for the reply).

The socket a request arrives on *is* the session: the listener task holds the
:class:`SessionRoute`, and nothing in the request (headers, body) is consulted to pick
a session, a provider or a destination. Per request, in order: the session's token
bucket (429 + Retry-After), exactly one ``Host`` in the provider's allowlist (403), a
known method and path (404), the body cap (413), then the mock (answered here) or the
provider's upstream with the credential injected and the sandbox's auth-ish headers
stripped. The answer streams back through the redactor. Every call, admitted or not,
is reported as a :class:`ModelCall` (metadata only) on the injected event sink.

Cancellation (``stop_session`` or the whole proxy) closes the listener and every
connection of that session, aborts its upstream calls and unlinks its socket file.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import attrs
import httpx
import trio

from ironclaw.host.sockets.http import BadRequest, BodyTooLarge, RequestHead, ServerConnection
from ironclaw.host.sockets.serving import (
    SessionMailbox,
    accept_connections,
    open_session_socket,
)
from ironclaw.runtime import DiscardEvents, EventSink
from ironclaw.runtime.ratelimit import TokenBucket

from .credentials import Credentials, Secret
from .events import ModelCall, Outcome, ProviderFailing, ProviderRecovered, SessionSocketFailed
from .health import ProviderHealth
from .mailbox import ProxyLimits, ProxyMsg, ServeProxySession, StopProxySession
from .providers import ProviderKind, SessionRoute, normalize_host
from .redact import Redactor
from .relay import Aborted, Tally, forward, new_client, send_error, serve_mock

__all__ = ["ModelProxy"]

logger = logging.getLogger(__name__)



@attrs.define(eq=False)
class _Session:
    route: SessionRoute
    bucket: TokenBucket
    reports: TokenBucket
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    done: trio.Event = attrs.field(factory=trio.Event)
    connections: int = 0
    suppressed: int = 0


class ModelProxy:
    """Start with ``nursery.start(proxy.run)``; single use."""

    def __init__(self, *, events: EventSink | None = None, limits: ProxyLimits | None = None,
                 credentials: Credentials | None = None, mailbox_size: int = 64) -> None:
        self._events: EventSink = DiscardEvents() if events is None else events
        self._limits = ProxyLimits() if limits is None else limits
        self._secrets: set[Secret] = set(credentials.secrets()) if credentials else set()
        self._redactor = Redactor(self._secrets)
        self._health = ProviderHealth()
        self._sessions: dict[str, _Session] = {}
        self._mailbox = SessionMailbox(mailbox_size, stop_type=StopProxySession,
                                       what="the model proxy")
        self._ran = False

    @property
    def mailbox(self) -> trio.MemorySendChannel[ProxyMsg]:
        return self._mailbox.sender

    @property
    def sessions(self) -> frozenset[str]:
        return frozenset(self._sessions)

    async def serve_session(self, route: SessionRoute) -> Path:
        """Serve ``route`` on its socket; returns the socket path once it accepts."""
        msg = ServeProxySession(route)
        await self._mailbox.send(msg)
        return await msg.reply.wait()

    async def stop_session(self, session_id: str) -> None:
        """Stop serving a session: its connections close and its socket is removed."""
        msg = StopProxySession(session_id)
        await self._mailbox.send(msg)
        await msg.reply.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        if self._ran:
            raise RuntimeError("ModelProxy.run is single use")
        self._ran = True
        limits = self._limits
        try:
            # The client outlives the nursery: connections using it end first.
            async with (
                new_client(connect_timeout=limits.connect_timeout,
                           read_timeout=limits.read_timeout) as client,
                trio.open_nursery() as nursery,
            ):
                task_status.started()
                await self._mailbox.serve(
                    nursery, self._sessions,
                    lambda route: nursery.start(self._serve_session, route, client))
        finally:
            self._mailbox.close()

    def _learn_secret(self, secret: Secret | None) -> None:
        if secret is not None and secret not in self._secrets:
            self._secrets.add(secret)
            self._redactor = Redactor(self._secrets)

    async def _serve_session(self, route: SessionRoute, client: httpx.AsyncClient, *,
                             task_status: trio.TaskStatus[None]) -> None:
        limits = self._limits
        self._learn_secret(route.provider.credential)
        session = _Session(route, TokenBucket(limits.rate, limits.burst),
                           TokenBucket(limits.reject_reports_per_s,
                                       max(1, int(limits.reject_reports_per_s * 2))))
        async with open_session_socket(session, self._sessions) as listener:
            try:
                with session.scope:
                    task_status.started()
                    async with trio.open_nursery() as connections:
                        await accept_connections(
                            listener, session,
                            max_connections=limits.max_connections_per_session,
                            connections=connections,
                            handle=functools.partial(self._connection, session,
                                                     client=client))
            except Exception as exc:
                # One session's failure must not take the others down.
                logger.error("model proxy: session %s stopped serving (%s)",
                             route.session_id, _error_name(exc))
                self._publish(SessionSocketFailed(route.session_id, _error_name(exc)))

    async def _connection(self, session: _Session, stream: trio.SocketStream,
                          client: httpx.AsyncClient) -> None:
        limits = self._limits
        conn = ServerConnection(stream, max_header_bytes=limits.max_header_bytes)
        try:
            while True:
                head: RequestHead | None = None
                with trio.move_on_after(limits.idle_timeout):
                    head = await conn.next_request()
                if head is None:
                    return
                if not await self._request(session, conn, head, client):
                    return
                if not conn.reusable:
                    return
                conn.next_cycle()
        except BadRequest as exc:
            await self._reject_malformed(session, conn, exc)
        except (trio.BrokenResourceError, trio.ClosedResourceError, Aborted):
            pass
        except Exception as exc:
            logger.warning("model proxy: connection for session %s failed (%s)",
                           session.route.session_id, type(exc).__name__)
        finally:
            session.connections -= 1
            await stream.aclose()

    async def _reject_malformed(self, session: _Session, conn: ServerConnection,
                                exc: BadRequest) -> None:
        tally = Tally()
        started = trio.current_time()
        try:
            with trio.move_on_after(5):
                await send_error(conn, tally, exc.status, Outcome.BAD_REQUEST, exc.detail,
                                 close=True)
        except (trio.BrokenResourceError, trio.ClosedResourceError, Aborted):
            tally.outcome = Outcome.CLIENT_GONE
        finally:
            self._report(session, None, tally, started)

    async def _request(self, session: _Session, conn: ServerConnection, head: RequestHead,
                       client: httpx.AsyncClient) -> bool:
        """Answer one request; False when the connection must close afterwards."""
        endpoint = session.route.provider
        tally = Tally()
        started = trio.current_time()
        try:
            wait = session.bucket.try_acquire()
            if wait > 0:
                await send_error(conn, tally, 429, Outcome.RATE_LIMITED,
                                 "model call rate limit reached for this session",
                                 [("retry-after", TokenBucket.retry_after_header(wait))],
                                 close=True)
                return False
            host = normalize_host(head.hosts[0]) if len(head.hosts) == 1 else None
            if host is None or not endpoint.allows_host(host):
                await send_error(conn, tally, 403, Outcome.HOST_NOT_ALLOWED,
                                 "this host is not an allowed model provider for the session",
                                 close=True)
                return False
            if not endpoint.allows_route(head.method, head.path):
                await send_error(conn, tally, 404, Outcome.ROUTE_NOT_FOUND,
                                 "the model proxy does not forward this method and path",
                                 close=True)
                return False
            body = await self._read_body(conn, head, tally)
            if body is None:
                return False
            if endpoint.kind is ProviderKind.MOCK:
                await serve_mock(head, body, conn, tally, self._redactor)
            else:
                await forward(client, endpoint, head, body, conn, tally, self._redactor)
            return True
        except BadRequest as exc:
            await send_error(conn, tally, exc.status, Outcome.BAD_REQUEST, exc.detail,
                             close=True)
            return False
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            tally.outcome = Outcome.CLIENT_GONE
            raise
        except trio.Cancelled:
            tally.outcome = Outcome.CANCELLED
            raise
        finally:
            self._report(session, head, tally, started)

    async def _read_body(self, conn: ServerConnection, head: RequestHead,
                         tally: Tally) -> bytes | None:
        cap = self._limits.max_request_bytes
        too_large = "the request body exceeds the model proxy's size cap"
        if head.content_length is not None and head.content_length > cap:
            await send_error(conn, tally, 413, Outcome.TOO_LARGE, too_large, close=True)
            return None
        body = None
        try:
            with trio.move_on_after(self._limits.body_timeout):
                body = await conn.read_body(cap)
        except BodyTooLarge:
            await send_error(conn, tally, 413, Outcome.TOO_LARGE, too_large, close=True)
            return None
        if body is None:
            await send_error(conn, tally, 408, Outcome.BAD_REQUEST,
                             "the request body arrived too slowly", close=True)
            return None
        tally.request_bytes = len(body)
        return body

    def _report(self, session: _Session, head: RequestHead | None, tally: Tally,
                started: float) -> None:
        route = session.route
        if tally.outcome in _CHEAP_REJECTIONS and session.reports.try_acquire() > 0:
            session.suppressed += 1
            return
        suppressed, session.suppressed = session.suppressed, 0
        known = head is not None and route.provider.allows_route(head.method, head.path)
        call = ModelCall(
            session_id=route.session_id,
            agent_group_id=route.agent_group_id,
            provider=route.provider.kind.value,
            host=_audit_host(head),
            method=head.method if head is not None and known else "<other>",
            path=head.path if head is not None and known else "<other>",
            status=tally.status,
            request_bytes=tally.request_bytes,
            response_bytes=tally.response_bytes,
            duration_ms=round((trio.current_time() - started) * 1000, 3),
            redactions=tally.redactions,
            outcome=tally.outcome,
            suppressed=suppressed,
            stop=tally.stop,
            failure=tally.failure,
        )
        self._publish(call)
        notice = self._health.observe(call)
        if notice is not None:
            logger.warning("model proxy: provider %s %s", notice.provider,
                           f"keeps failing ({notice.failure})"
                           if isinstance(notice, ProviderFailing) else "recovered")
            self._publish(notice)

    def _publish(self, event: ModelCall | SessionSocketFailed | ProviderFailing
                 | ProviderRecovered) -> None:
        try:
            self._events.publish(event)
        except Exception as exc:
            logger.warning("model proxy: event sink failed (%s)", type(exc).__name__)


_CHEAP_REJECTIONS = frozenset({Outcome.BAD_REQUEST, Outcome.HOST_NOT_ALLOWED,
                               Outcome.ROUTE_NOT_FOUND, Outcome.TOO_LARGE,
                               Outcome.RATE_LIMITED})


def _audit_host(head: RequestHead | None) -> str:
    if head is None or len(head.hosts) != 1:
        return "<invalid>"
    return normalize_host(head.hosts[0]) or "<invalid>"



def _error_name(exc: BaseException) -> str:
    """The type name of the first leaf exception: never its message, which could
    carry a path or a header."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return type(exc).__name__
