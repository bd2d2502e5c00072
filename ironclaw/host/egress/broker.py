"""The egress broker actor: one unix socket per session, deny-by-default.

``EgressBroker.run`` owns a nursery with one listener task per served session and one
task per accepted connection. Each session has its own outbound HTTP client (its own
connection pool), token bucket and report budget. Sessions are added and removed
through the mailbox (``ServeEgress`` / ``StopEgress``, or the ``serve_session`` /
``stop_session`` helpers), exactly like the model proxy's.

The socket a request arrives on *is* the session: the listener task holds the
:class:`EgressRoute`, and nothing in the request picks a session or a group. Per
request, in order: the session's token bucket (429 + Retry-After), a known path (404)
and method (405), the body cap (413), the JSON shape (400), then the group's allowlist,
read fresh from its grant for every request (no cache: an approved change that shrinks
the list bites on the very next request), and the target checks in ``policy.py``
(403), the pinned connection (``upstream.py``, 403 for a forbidden address), the
upstream exchange under one total deadline (502/504), and a bounded JSON answer. Every
request, allowed or not, is reported as an :class:`EgressRequest` (metadata only).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Protocol

import attrs
import httpx
import trio

from ironclaw.host.sockets.http import (
    BadRequest,
    BodyTooLarge,
    RequestHead,
    ServerConnection,
    serve_requests,
)
from ironclaw.host.sockets.serving import (
    SessionMailbox,
    accept_connections,
    open_session_socket,
)
from ironclaw.runtime import DiscardEvents, EventSink
from ironclaw.runtime.ratelimit import TokenBucket

from .config import EgressConfig
from .events import EgressRequest, EgressSessionFailed, Operation, Outcome
from .fetch import Policy, Tally, fetch, search
from .mailbox import EgressMsg, EgressRoute, ServeEgress, StopEgress
from .policy import Allowlist, Refused
from .upstream import PinnedBackend, Resolver, make_ssl_context, open_upstream_client
from .wire import error_body, parse_fetch, parse_search, render_fetch, render_search

__all__ = ["EgressBroker", "EgressGrants"]

logger = logging.getLogger(__name__)

_PATHS = {"/v1/fetch": Operation.FETCH, "/v1/search": Operation.SEARCH}
_JSON = ("content-type", "application/json")


class EgressGrants(Protocol):
    """Where a group's allowlist is read (the gateway's ``Grants`` in production)."""

    async def egress_hosts(self, agent_group_id: str) -> tuple[str, ...]: ...


@attrs.define(eq=False)
class _Session:
    route: EgressRoute
    bucket: TokenBucket
    reports: TokenBucket
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    done: trio.Event = attrs.field(factory=trio.Event)
    connections: int = 0
    suppressed: int = 0


class EgressBroker:
    """Start with ``nursery.start(broker.run)``; single use."""

    def __init__(self, grants: EgressGrants, *, config: EgressConfig | None = None,
                 events: EventSink | None = None, resolver: Resolver | None = None,
                 mailbox_size: int = 64) -> None:
        self._grants = grants
        self._config = EgressConfig() if config is None else config
        self._events: EventSink = DiscardEvents() if events is None else events
        self._ssl = make_ssl_context(self._config.ca_bundle)
        pins = dict(self._config.static_hosts)
        local = [s.host for s in self._config.allow_loopback_hosts]
        self._backend = (PinnedBackend(local_hosts=local, pins=pins, resolver=resolver)
                         if resolver is not None else
                         PinnedBackend(local_hosts=local, pins=pins))
        self._sessions: dict[str, _Session] = {}
        self._mailbox = SessionMailbox(mailbox_size, stop_type=StopEgress,
                                       what="the egress broker")
        self._ran = False

    @property
    def mailbox(self) -> trio.MemorySendChannel[EgressMsg]:
        return self._mailbox.sender

    @property
    def sessions(self) -> frozenset[str]:
        return frozenset(self._sessions)

    async def granted(self, agent_group_id: str) -> bool:
        """Whether the group's allowlist names anything (a session gets a socket, and
        its agent the web tools, only then)."""
        return bool(Allowlist.from_grant(await self._grants.egress_hosts(agent_group_id)))

    async def serve_session(self, route: EgressRoute) -> Path:
        """Serve ``route`` on its socket; returns the socket path once it accepts."""
        msg = ServeEgress(route)
        await self._mailbox.send(msg)
        return await msg.reply.wait()

    async def stop_session(self, session_id: str) -> None:
        """Stop serving a session: its connections close and its socket is removed."""
        msg = StopEgress(session_id)
        await self._mailbox.send(msg)
        await msg.reply.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        if self._ran:
            raise RuntimeError("EgressBroker.run is single use")
        self._ran = True
        try:
            async with trio.open_nursery() as nursery:
                task_status.started()
                await self._mailbox.serve(
                    nursery, self._sessions,
                    lambda route: nursery.start(self._serve_session, route))
        finally:
            self._mailbox.close()

    async def _serve_session(self, route: EgressRoute, *,
                             task_status: trio.TaskStatus[None]) -> None:
        limits = self._config.limits
        session = _Session(route, TokenBucket(limits.rate, limits.burst),
                           TokenBucket(limits.reject_reports_per_s,
                                       max(1, int(limits.reject_reports_per_s * 2))))
        started = False
        async with open_session_socket(session, self._sessions) as listener:
            try:
                with session.scope:
                    async with open_upstream_client(
                            self._backend, self._ssl, connect_timeout=limits.connect_timeout,
                            total_timeout=limits.total_timeout,
                            max_connections=limits.max_connections_per_session) as client:
                        task_status.started()
                        started = True
                        async with trio.open_nursery() as connections:
                            await accept_connections(
                                listener, session,
                                max_connections=limits.max_connections_per_session,
                                connections=connections,
                                handle=functools.partial(self._connection, session,
                                                         client=client))
            except Exception as exc:
                if not started:
                    raise
                # One session's failure must not take the others down.
                logger.error("egress broker: session %s stopped serving (%s)",
                             route.session_id, _error_name(exc))
                self._publish(EgressSessionFailed(route.session_id, _error_name(exc)))
            finally:
                # Reported before the socket goes, so a stop that returns has seen it.
                if session.suppressed:
                    tally = Tally(outcome=Outcome.SUPPRESSED)
                    self._report(session, Operation.OTHER, tally, trio.current_time(),
                                 cheap=False)

    async def _connection(self, session: _Session, stream: trio.SocketStream,
                          client: httpx.AsyncClient) -> None:
        limits = self._config.limits
        try:
            await serve_requests(
                stream, max_header_bytes=limits.max_header_bytes,
                idle_timeout=limits.idle_timeout,
                respond=functools.partial(self._request, session, client=client),
                malformed=functools.partial(self._reject_malformed, session))
        except Exception as exc:
            logger.warning("egress broker: connection for session %s failed (%s)",
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
                await self._send_error(conn, tally, Refused(exc.status, Outcome.BAD_REQUEST,
                                                            exc.detail), close=True)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            tally.outcome = Outcome.CLIENT_GONE
        finally:
            self._report(session, Operation.OTHER, tally, started, cheap=True)

    async def _request(self, session: _Session, conn: ServerConnection, head: RequestHead,
                       client: httpx.AsyncClient) -> bool:
        """Answer one request; False when the connection must close afterwards."""
        limits = self._config.limits
        tally = Tally()
        started = trio.current_time()
        operation = Operation.OTHER
        body_read = False
        try:
            wait = session.bucket.try_acquire()
            if wait > 0:
                await self._send_error(
                    conn, tally, Refused(429, Outcome.RATE_LIMITED,
                                         "egress rate limit reached for this session"),
                    [("retry-after", TokenBucket.retry_after_header(wait))], close=True)
                return False
            operation = _PATHS.get(head.path, Operation.OTHER)
            if operation is Operation.OTHER:
                raise Refused(404, Outcome.NOT_FOUND, "the broker serves POST /v1/fetch "
                              "and POST /v1/search")
            if head.method != "POST":
                raise Refused(405, Outcome.METHOD_NOT_ALLOWED, f"{head.path} takes POST")
            body = await self._read_body(conn, head)
            body_read = True
            with trio.move_on_after(limits.total_timeout) as deadline:
                answer = await self._answer(session, operation, body, client, tally)
            if deadline.cancelled_caught:
                raise Refused(504, Outcome.UPSTREAM_TIMEOUT,
                              f"the request did not finish within {limits.total_timeout:g}s")
            tally.outcome = Outcome.OK
            with trio.move_on_after(limits.body_timeout) as sending:
                await conn.respond(200, [_JSON], answer)
            if sending.cancelled_caught:
                tally.outcome = Outcome.CLIENT_GONE
                return False
            return True
        except Refused as exc:
            await self._send_error(conn, tally, exc, _allow(exc), close=not body_read)
            return body_read
        except BadRequest as exc:
            await self._send_error(conn, tally, Refused(exc.status, Outcome.BAD_REQUEST,
                                                        exc.detail), close=True)
            return False
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            tally.outcome = Outcome.CLIENT_GONE
            raise
        except trio.Cancelled:
            tally.outcome = Outcome.CANCELLED
            raise
        finally:
            self._report(session, operation, tally, started,
                         cheap=tally.outcome is Outcome.RATE_LIMITED)

    async def _read_body(self, conn: ServerConnection, head: RequestHead) -> bytes:
        limits = self._config.limits
        too_large = Refused(413, Outcome.TOO_LARGE,
                            f"the request exceeds the broker's {limits.max_request_bytes}-byte "
                            "cap")
        if head.content_length is not None and head.content_length > limits.max_request_bytes:
            raise too_large
        body = None
        try:
            with trio.move_on_after(limits.body_timeout):
                body = await conn.read_body(limits.max_request_bytes)
        except BodyTooLarge:
            raise too_large from None
        if body is None:
            raise BadRequest(408, "the request body arrived too slowly")
        return body

    async def _policy(self, agent_group_id: str) -> Policy:
        try:
            hosts = await self._grants.egress_hosts(agent_group_id)
        except Exception as exc:
            logger.error("egress broker: cannot read the allowlist of %s (%s)",
                         agent_group_id, type(exc).__name__)
            raise Refused(503, Outcome.UNAVAILABLE,
                          "the allowlist could not be read; nothing was sent") from None
        limits = self._config.limits
        return Policy(Allowlist.from_grant(hosts), self._config.allow_loopback_hosts,
                      max_redirects=limits.max_redirects,
                      max_response_bytes=limits.max_response_bytes)

    async def _answer(self, session: _Session, operation: Operation, body: bytes,
                      client: httpx.AsyncClient, tally: Tally) -> bytes:
        limits = self._config.limits
        group = session.route.agent_group_id
        if operation is Operation.FETCH:
            request = parse_fetch(body, max_request_bytes=limits.max_request_bytes,
                                  max_body_bytes=limits.max_body_bytes)
            tally.method = request.method
            fetched = await fetch(client, request, await self._policy(group), tally)
            return render_fetch(status=fetched.status, headers=fetched.headers,
                                body=fetched.body, truncated=fetched.truncated,
                                url=fetched.url)
        query = parse_search(body, max_request_bytes=limits.max_request_bytes)
        tally.method = "GET"
        results = await search(client, query, self._config.search_url,
                               await self._policy(group), tally)
        return render_search(results)

    @staticmethod
    async def _send_error(conn: ServerConnection, tally: Tally, refusal: Refused,
                          headers: list[tuple[str, str]] | None = None, *,
                          close: bool) -> None:
        tally.status, tally.outcome = refusal.status, refusal.outcome
        if not conn.can_respond:
            raise trio.BrokenResourceError("the response had already started")
        await conn.respond(refusal.status, [_JSON, *(headers or [])],
                           error_body(refusal.outcome, refusal.detail), close=close)

    def _report(self, session: _Session, operation: Operation, tally: Tally, started: float,
                *, cheap: bool) -> None:
        if cheap and session.reports.try_acquire() > 0:
            session.suppressed += 1
            return
        suppressed, session.suppressed = session.suppressed, 0
        route = session.route
        self._publish(EgressRequest(
            session_id=route.session_id, agent_group_id=route.agent_group_id,
            operation=operation.value, host=tally.host, final_host=tally.final_host,
            method=tally.method, status=tally.status, outcome=tally.outcome.value,
            upstream=tally.upstream, request_bytes=tally.request_bytes,
            response_bytes=tally.response_bytes,
            duration_ms=round((trio.current_time() - started) * 1000, 3),
            redirects=tally.redirects, suppressed=suppressed))

    def _publish(self, event: EgressRequest | EgressSessionFailed) -> None:
        try:
            self._events.publish(event)
        except Exception as exc:
            logger.warning("egress broker: event sink failed (%s)", type(exc).__name__)


def _allow(refusal: Refused) -> list[tuple[str, str]]:
    return [("allow", "POST")] if refusal.status == 405 else []


def _error_name(exc: BaseException) -> str:
    """The type name of the first leaf exception, never its message."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return type(exc).__name__
