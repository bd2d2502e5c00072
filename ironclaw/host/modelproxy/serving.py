"""What every per-session socket server shares: the serve/stop mailbox and the accept
loop. The model proxy and the egress broker each serve one unix socket per session;
they differ only in what a connection does.

* :class:`SessionMailbox` answers ``serve`` (start a session on its socket, refusing a
  second route for one session or a second session on one socket) and ``stop`` (cancel
  it and answer once its socket is gone), and when the server stops answers every
  message still waiting, so nobody waits forever on a server that is gone.
* :func:`accept_connections` accepts until cancelled, caps a session's connections,
  and rides out the transient errors ``accept`` gives under descriptor pressure.
"""

from __future__ import annotations

import errno
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import trio

from .mailbox import Reply, SessionConflict

__all__ = ["SessionMailbox", "accept_connections"]

# accept() errors that mean "try again shortly", not "the listener is broken".
ACCEPT_BACKOFF_ERRNOS = frozenset({errno.ENFILE, errno.EMFILE, errno.ENOMEM, errno.ENOBUFS})


class _Route(Protocol):
    @property
    def session_id(self) -> str: ...

    @property
    def socket_path(self) -> Path: ...


class ServedSession(Protocol):
    route: Any
    scope: trio.CancelScope
    done: trio.Event
    connections: int


class _Msg(Protocol):
    @property
    def reply(self) -> Reply: ...


class SessionMailbox:
    """``stop_type`` is the server's stop message class; every other message serves."""

    def __init__(self, receive: trio.MemoryReceiveChannel[Any], *, stop_type: type,
                 what: str) -> None:
        self._receive = receive
        self._stop_type = stop_type
        self._what = what
        self._open: list[_Msg] = []

    async def serve(self, nursery: trio.Nursery, sessions: Mapping[str, ServedSession],
                    start: Callable[[Any], Awaitable[object]]) -> None:
        """Handle messages until the mailbox closes. ``start(route)`` starts a session
        in ``nursery`` (returning once its socket accepts) and registers it in
        ``sessions``."""
        async for msg in self._receive:
            self._open = [m for m in self._open if not m.reply.done.is_set()]
            self._open.append(msg)
            await self._handle(msg, nursery, sessions, start)

    def close(self) -> None:
        """Answer whatever is still waiting. Call after the sessions' nursery has
        exited: every socket is removed by then, so a pending stop has happened."""
        while True:
            try:
                self._open.append(self._receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
        self._receive.close()
        for msg in self._open:
            if msg.reply.done.is_set():
                continue
            if isinstance(msg, self._stop_type):
                msg.reply.ok()
            else:
                msg.reply.fail(RuntimeError(f"{self._what} stopped"))

    async def _handle(self, msg: Any, nursery: trio.Nursery,
                      sessions: Mapping[str, ServedSession],
                      start: Callable[[Any], Awaitable[object]]) -> None:
        if isinstance(msg, self._stop_type):
            stop: Any = msg  # the server's own stop message: session_id and reply
            session = sessions.get(stop.session_id)
            if session is None:
                stop.reply.ok()
                return
            session.scope.cancel()
            nursery.start_soon(_reply_when_done, session, stop.reply)
            return
        route: _Route = msg.route
        current = sessions.get(route.session_id)
        if current is not None:
            if current.route == route:
                msg.reply.ok(route.socket_path)
            else:
                msg.reply.fail(SessionConflict(f"session {route.session_id} is served "
                                               "with another route"))
            return
        if any(s.route.socket_path == route.socket_path for s in sessions.values()):
            msg.reply.fail(SessionConflict("another session is served on that socket"))
            return
        try:
            await start(route)
        except Exception as exc:
            msg.reply.fail(exc)
        else:
            msg.reply.ok(route.socket_path)


async def _reply_when_done(session: ServedSession, reply: Reply) -> None:
    await session.done.wait()
    reply.ok()


async def accept_connections(listener: trio.SocketListener, session: ServedSession, *,
                             max_connections: int, connections: trio.Nursery,
                             handle: Callable[[trio.SocketStream], Awaitable[None]]
                             ) -> None:
    """Accept on ``listener`` until cancelled; each connection runs ``handle`` in
    ``connections``. Beyond ``max_connections`` open ones, a new one is closed."""
    while True:
        try:
            stream = await listener.accept()
        except OSError as exc:
            if exc.errno not in ACCEPT_BACKOFF_ERRNOS:
                raise
            await trio.sleep(0.1)
            continue
        if session.connections >= max_connections:
            await stream.aclose()
            continue
        session.connections += 1
        connections.start_soon(handle, stream)
