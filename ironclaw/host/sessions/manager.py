"""The sessions actor: one SessionActor per live session, started on wake, gone when
idle, stopped (and perhaps restarted) on request.

A failing session never takes the control plane down: its actor's errors are
caught here, published as ``session.failed``, and the next wake starts it afresh.
At start it recovers: every session with work outstanding (an accepted row still
unanswered, claimed by a dead agent or never seen by one, or outbound rows beyond the
durable cursor) is woken, however long ago it was last active, so a crash loses
nothing.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import attrs
import trio

from ironclaw.contract.queue import OutboundReader, QueueError
from ironclaw.contract.untrusted_files import run_untrusted
from ironclaw.host.sessions.session_actor import SessionActor, SessionDeps

from ..events import SessionFailed, SessionRetired, SessionStarted
from ..mailboxes import (
    SessionHealth,
    SessionsMessage,
    StopSession,
    Wake,
    open_sessions_mailbox,
)
from ..registry import NotFound

logger = logging.getLogger(__name__)


@attrs.define
class _Live:
    actor: SessionActor
    done: trio.Event


class Sessions:
    def __init__(self, deps: SessionDeps, *, mailbox: tuple[
            trio.MemorySendChannel[SessionsMessage],
            trio.MemoryReceiveChannel[SessionsMessage]] | None = None) -> None:
        self._deps = deps
        self._send, self._receive = mailbox or open_sessions_mailbox()
        self._live: dict[str, _Live] = {}
        self._nursery: trio.Nursery | None = None
        self._paused: set[str] = set()

    @property
    def mailbox(self) -> trio.MemorySendChannel[SessionsMessage]:
        return self._send

    async def wake(self, session_id: str, reason: str = "message") -> None:
        """A :class:`~ironclaw.host.inbound.WakeSink` (the plane wires a
        :class:`~ironclaw.host.inbound.Waker`: it exists before this actor does)."""
        await self._send.send(Wake(session_id, reason))

    def health(self) -> list[SessionHealth]:
        """SessionsView: for the sweeper."""
        return [live.actor.health() for live in self._live.values()]

    def live_ids(self) -> list[str]:
        return list(self._live)

    async def wait_retired(self, session_id: str) -> None:
        """Return once the session has no live actor (at once if it has none)."""
        live = self._live.get(session_id)
        if live is not None:
            await live.done.wait()

    @contextlib.asynccontextmanager
    async def paused(self, session_id: str, reason: str) -> AsyncIterator[None]:
        """Stop the session's sandbox and start none for it inside the block (a wake
        meanwhile waits on disk); then wake it, so it starts again."""
        self._paused.add(session_id)
        try:
            await self._send.send(StopSession(session_id, reason))
            await self.wait_retired(session_id)
            yield
        finally:
            self._paused.discard(session_id)
            with trio.CancelScope(shield=True):
                await self._send.send(Wake(session_id, f"after {reason}"))

    def actor(self, session_id: str) -> SessionActor | None:
        live = self._live.get(session_id)
        return live.actor if live else None

    @property
    def running(self) -> bool:
        """True while the actor serves its mailbox (for readiness checks)."""
        return self._nursery is not None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._recover)
                task_status.started()
                await self._serve()
        finally:
            self._nursery = None

    async def _serve(self) -> None:
        async for message in self._receive:
            if isinstance(message, Wake):
                await self._wake(message)
            elif isinstance(message, StopSession):
                # A stop with a restart is the sweeper putting down a stuck agent: the
                # turn it hung in counts against its message.
                await self._stop(message, blame=message.restart)
            else:
                for live in list(self._live.values()):
                    if live.actor.session.agent_group_id == message.agent_group_id:
                        await self._stop(StopSession(live.actor.session_id,
                                                     message.reason, restart=True),
                                         blame=False)

    async def _wake(self, message: Wake, *, blame: bool = False) -> None:
        live = self._live.get(message.session_id)
        if live is None:
            live = await self._start(message.session_id, blame=blame)
            if live is None:
                return
        live.actor.ring()

    async def _stop(self, message: StopSession, *, blame: bool) -> None:
        live = self._live.get(message.session_id)
        if live is not None:
            live.actor.stop(message.reason)
            await live.done.wait()
        if message.restart:
            await self._wake(Wake(message.session_id, f"restart: {message.reason}"),
                             blame=blame)

    async def _start(self, session_id: str, *, blame: bool) -> _Live | None:
        """``blame``: whether the session's previous sandbox was put down for its own
        fault (stuck); otherwise the host ended it (or died), and a turn it left
        unfinished is forgiven (``AgentConfig.previous_run_blameless``)."""
        assert self._nursery is not None
        if self._deps.quarantine.held(session_id) is not None:
            logger.warning("not starting quarantined session %s", session_id)
            return None
        if session_id in self._paused:
            return None
        try:
            session = await self._deps.registry.get_session(session_id)
        except NotFound:
            self._deps.events.publish(SessionFailed(session_id, "no such session"))
            return None
        live = _Live(SessionActor(session, self._deps, previous_run_blamed=blame),
                     trio.Event())
        self._live[session_id] = live
        try:
            await self._nursery.start(self._host, live)
        except Exception as exc:  # a broken session must not take the plane down
            logger.exception("session %s failed to start", session_id)
            self._deps.events.publish(SessionFailed(session_id, type(exc).__name__))
            return None
        self._deps.events.publish(SessionStarted(session_id, session.agent_group_id,
                                                 self._deps.isolator.name))
        return live

    async def _host(self, live: _Live, *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        sid = live.actor.session_id
        started = False

        async def run_actor(*, task_status: trio.TaskStatus[None]) -> None:
            await live.actor.run(task_status=task_status)

        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(run_actor)
                started = True
                task_status.started()
        except Exception as exc:
            if not started:
                raise
            logger.exception("session %s failed", sid)
            self._deps.events.publish(SessionFailed(sid, type(exc).__name__))
        finally:
            self._live.pop(sid, None)
            live.done.set()
            if started:
                self._deps.events.publish(
                    SessionRetired(sid, live.actor.retired_reason or "stopped"))

    async def _recover(self) -> None:
        """Wake every session with work outstanding, most recently active first. No
        session is too old: an unanswered row waits for its answer however long the
        plane was down."""
        deps = self._deps
        for session in await deps.registry.list_sessions():
            if session.id in self._live:
                continue
            try:
                if await self._has_outstanding_work(session.id):
                    await self.wake(session.id, "recovery")
            except (QueueError, OSError, trio.TooSlowError) as exc:
                logger.warning("cannot check %s for outstanding work: %s", session.id, exc)

    async def _has_outstanding_work(self, session_id: str) -> bool:
        deps = self._deps
        paths = deps.queues.paths(session_id)
        if not paths.inbound_db.exists():
            return False
        writer = await deps.queues.inbound(session_id)
        if await trio.to_thread.run_sync(writer.unfinished_count) > 0:
            return True
        if not paths.outbound_db.exists():
            return False
        keys = await trio.to_thread.run_sync(deps.queues.keys, session_id)
        cursor = await deps.progress.cursor(session_id)
        # The sandbox's file: hostile until read, on a thread of its own, with a deadline.
        poll = await run_untrusted(
            lambda: OutboundReader(paths.outbound_db, keys.outbound).poll(
                after_seq=cursor, limit=1), limiter=trio.CapacityLimiter(1))
        return bool(poll.messages or poll.rejections)
