"""What every per-session socket server shares: the serve/stop mailbox and the accept
loop. The model proxy and the egress broker each serve one unix socket per session;
they differ only in what a connection does.

* :class:`SessionMailbox` answers ``serve`` (start a session on its socket, refusing a
  second route for one session or a second session on one socket) and ``stop`` (cancel
  it and answer once its socket is gone), and when the server stops answers every
  message still waiting (:class:`ironclaw.runtime.Mailbox`), so nobody waits forever
  on a server that is gone.
* :func:`open_session_socket` is one served session's socket lifecycle: bind it,
  register the session, and on the way out (however it ends) close it, unlink it if it
  is still ours, unregister the session and mark it done, which answers a waiting
  ``stop``.
* :func:`accept_connections` accepts until cancelled, caps a session's connections,
  and rides out the transient errors ``accept`` gives under descriptor pressure: it is
  :func:`trio.serve_listeners` over a listener that waits for a slot and a token. The
  doorbell uses it too: every per-session socket has one accept loop.

The socket's client is the sandbox, so what it can make the host do is bounded per
socket: at most ``max_connections`` open at once, and while that many are open the
loop does not call ``accept`` at all (a new connection waits in the kernel's backlog,
and once that is full the sandbox's ``connect`` fails, at no cost to the host); and
at most ``accept_rate`` accepts a second, so a connect-and-close loop cannot turn
into as many host tasks.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

import trio

from ironclaw.runtime import Mailbox, Reply
from ironclaw.runtime.ratelimit import TokenBucket

from .unix import bind_unix_socket, unlink_if_ours

__all__ = ["SessionConflict", "SessionMailbox", "accept_connections", "open_session_socket"]

# Accepts per second on one session's socket, and the burst banked: far above what an
# honest agent needs (a model call or fetch per connection, one doorbell connection).
ACCEPT_RATE = 50.0
ACCEPT_BURST = 50


class SessionConflict(ValueError):
    """A different route is already served for this session id or socket path."""


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


S = TypeVar("S", bound=ServedSession)


@contextlib.asynccontextmanager
async def open_session_socket(session: S, sessions: MutableMapping[str, S]
                              ) -> AsyncIterator[trio.SocketListener]:
    """Bind ``session.route.socket_path`` and register ``session`` in ``sessions`` under
    its session id; yield the listener. On the way out the socket is closed and
    unlinked (only if it is still the one bound here), the session leaves ``sessions``
    (only if it is still the one registered) and ``session.done`` is set. A bind that
    fails raises before anything is registered."""
    route: _Route = session.route
    sock, identity = await bind_unix_socket(route.socket_path)
    sessions[route.session_id] = session
    try:
        yield trio.SocketListener(sock)
    finally:
        sock.close()
        unlink_if_ours(route.socket_path, identity)
        if sessions.get(route.session_id) is session:
            del sessions[route.session_id]
        session.done.set()


class _Msg(Protocol):
    @property
    def reply(self) -> Reply[Any]: ...


class SessionMailbox:
    """``stop_type`` is the server's stop message class; every other message serves.
    Senders use :meth:`send` (or :attr:`sender`); the server, :meth:`serve` then
    :meth:`close`."""

    def __init__(self, size: int, *, stop_type: type, what: str) -> None:
        self._inbox: Mailbox[Any] = Mailbox(size, what=what)
        self._stop_type = stop_type
        self._what = what
        self._open: list[_Msg] = []

    @property
    def sender(self) -> trio.MemorySendChannel[Any]:
        return self._inbox.sender

    async def send(self, msg: Any) -> None:
        """Raises :class:`ironclaw.runtime.MailboxClosed` once the server stopped."""
        await self._inbox.send(msg)

    async def serve(self, nursery: trio.Nursery, sessions: Mapping[str, ServedSession],
                    start: Callable[[Any], Awaitable[object]]) -> None:
        """Handle messages until the mailbox closes. ``start(route)`` starts a session
        in ``nursery`` (returning once its socket accepts) and registers it in
        ``sessions``."""
        async for msg in self._inbox:
            self._open = [m for m in self._open if not m.reply.answered]
            self._open.append(msg)
            await self._handle(msg, nursery, sessions, start)

    def close(self) -> None:
        """Answer whatever is still waiting. Call after the sessions' nursery has
        exited: every socket is removed by then, so a pending stop has happened."""
        self._inbox.close(self._open.append)
        for msg in self._open:
            if msg.reply.answered:
                continue
            if isinstance(msg, self._stop_type):
                msg.reply.ok(None)
            else:
                msg.reply.fail(RuntimeError(f"{self._what} stopped"))

    async def _handle(self, msg: Any, nursery: trio.Nursery,
                      sessions: Mapping[str, ServedSession],
                      start: Callable[[Any], Awaitable[object]]) -> None:
        if isinstance(msg, self._stop_type):
            stop: Any = msg  # the server's own stop message: session_id and reply
            session = sessions.get(stop.session_id)
            if session is None:
                stop.reply.ok(None)
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


async def _reply_when_done(session: ServedSession, reply: Reply[None]) -> None:
    await session.done.wait()
    reply.ok(None)


class _PacedListener(trio.abc.Listener[trio.SocketStream]):
    """``accept`` first waits for a free connection slot and an accept token, so
    :func:`trio.serve_listeners` accepts no more and no faster than a session may. The
    slot is released when the connection's handler ends (or when accepting fails)."""

    def __init__(self, listener: trio.SocketListener, slots: trio.Semaphore,
                 pace: TokenBucket) -> None:
        self._listener = listener
        self._slots = slots
        self._pace = pace

    async def accept(self) -> trio.SocketStream:
        await self._slots.acquire()
        try:
            await self._pace.acquire()
            return await self._listener.accept()
        except BaseException:
            self._slots.release()
            raise

    async def aclose(self) -> None:
        await self._listener.aclose()


async def accept_connections(listener: trio.SocketListener, session: ServedSession | None,
                             *, max_connections: int, connections: trio.Nursery,
                             handle: Callable[[trio.SocketStream], Awaitable[None]],
                             accept_rate: float = ACCEPT_RATE,
                             accept_burst: int = ACCEPT_BURST) -> None:
    """Accept on ``listener`` until cancelled (then close it); each connection runs
    ``handle`` in ``connections``. With ``max_connections`` open, the next ``accept``
    waits for one to end; accepts are paced to ``accept_rate`` a second; the transient
    errors ``accept`` gives under descriptor pressure are ridden out
    (:func:`trio.serve_listeners` does that). ``session.connections`` (if given) counts
    the open ones; ``handle`` decrements it when it ends."""
    slots = trio.Semaphore(max_connections)

    async def in_slot(stream: trio.SocketStream) -> None:
        if session is not None:
            session.connections += 1
        try:
            await handle(stream)
        finally:
            slots.release()

    paced = _PacedListener(listener, slots, TokenBucket(accept_rate, accept_burst))
    await trio.serve_listeners(in_slot, [paced], handler_nursery=connections)
