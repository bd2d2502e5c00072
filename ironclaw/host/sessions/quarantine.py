"""Quarantine: a session whose sandbox proved hostile is stopped and kept stopped.

Proof is something no honest agent produces: an outbound file whose schema is not
the contract's (a generated column, trigger, view, virtual table, extra or rebuilt
table), or a symlink, FIFO, device or hard link where a queue file belongs. Then the
session's actor stops (its sandbox is killed like any stopped sandbox), a
``session.quarantined`` event is published, which the audit recorder appends to the
audit log and ``/v1/events`` carries to operators, a critical log line names the
session, and the owners and the group's admins are alerted in their direct chats
(:mod:`ironclaw.host.chatops.alerts`), once per quarantine. Every other session carries
on: nothing here is shared with them.

The hold is durable: a row in host.db's ``quarantined_sessions``, written in the same
transaction that queues the owners' alerts, and loaded at start before any session
starts. A hostile agent that manages to crash or restart the control plane gains no
fresh start by it. Until the hold is lifted, a wake (a new message, the sweeper,
recovery) never starts the session; its inbound rows wait. Only an owner lifts it
(``DELETE /v1/quarantine/<session id>``, ``ironctl quarantine lift``), audited as
``session.quarantine_lifted``, after looking at (and, if it is still hostile, moving
away) the session's outbound directory; a file that is still hostile is caught again
at its first read, before any query runs on it.
"""

from __future__ import annotations

import logging
import math
from typing import Any, ClassVar, Protocol

import attrs
import trio

from ironclaw.contract.clock import now_us
from ironclaw.host.store import HostStore
from ironclaw.runtime import DiscardEvents, EventSink

logger = logging.getLogger(__name__)

Conn = Any
REASON_CHARS = 300


@attrs.frozen
class SessionQuarantined:
    """Published once per quarantine; audited (ids and a short reason, no content)."""

    type: ClassVar[str] = "session.quarantined"
    session_id: str
    agent_group_id: str
    reason: str


@attrs.frozen
class QuarantineLifted:
    """An owner let a quarantined session run again; audited with who did it."""

    type: ClassVar[str] = "session.quarantine_lifted"
    session_id: str
    agent_group_id: str
    by: str


@attrs.frozen
class Hold:
    agent_group_id: str
    reason: str
    since_us: int


class OwnerAlerts(Protocol):
    def queue(self, conn: Conn, session_id: str, agent_group_id: str, reason: str,
              since_us: int, now: int) -> int:
        """On the store's thread, in the hold's own transaction: queue the alerts."""
        ...

    def wake(self) -> None:
        """On the event loop, once they are committed: send them now."""
        ...


class Quarantine:
    """The sessions held, and why. Only the event loop touches it; ``held`` is read
    synchronously (the sessions manager asks before every start), so the holds live in
    memory too, loaded from host.db by :meth:`run` before anything starts.

    Without a store (unit tests of the session actor) the holds are memory only."""

    def __init__(self, store: HostStore | None = None, *, alerts: OwnerAlerts | None = None,
                 events: EventSink | None = None) -> None:
        self._held: dict[str, Hold] = {}
        self._store = store
        self._alerts = alerts
        self._events = events or DiscardEvents()
        # Holds waiting to be written; one per quarantined session at most, so the
        # buffer is bounded by the sessions there are, and ``hold`` never blocks.
        self._unwritten_send, self._unwritten = trio.open_memory_channel[tuple[str, Hold]](
            math.inf)
        # A lift and a write of one session never interleave.
        self._writing = trio.Lock()

    def hold(self, session_id: str, agent_group_id: str, reason: str) -> SessionQuarantined | None:
        """Hold a session; the event to publish, or None if it was already held."""
        if session_id in self._held:
            return None
        hold = Hold(agent_group_id, reason[:REASON_CHARS], now_us())
        self._held[session_id] = hold
        if self._store is not None:
            self._unwritten_send.send_nowait((session_id, hold))
        return SessionQuarantined(session_id, agent_group_id, hold.reason)

    def held(self, session_id: str) -> Hold | None:
        return self._held.get(session_id)

    def all(self) -> dict[str, Hold]:
        return dict(self._held)

    async def lift(self, session_id: str, *, by: str) -> Hold | None:
        """Let a held session run again (at its next wake); the hold lifted, or None if
        it was not held. Published (and so audited) with ``by``."""
        async with self._writing:
            hold = self._held.pop(session_id, None)
            stored = (await self._store.transaction(_forget, session_id)
                      if self._store is not None else None)
        hold = hold or stored
        if hold is None:
            return None
        logger.warning("quarantine of session %s lifted by %s", session_id, by)
        self._events.publish(QuarantineLifted(session_id, hold.agent_group_id, by))
        return hold

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Load the durable holds (before ``started``: no session may start first),
        then write each new hold and queue its alerts as it comes."""
        if self._store is not None:
            for session_id, hold in await self._store.call(_load):
                self._held.setdefault(session_id, hold)
            if self._held:
                logger.warning("%d session(s) held in quarantine: %s", len(self._held),
                               ", ".join(sorted(self._held)))
        task_status.started()
        async for session_id, hold in self._unwritten:
            await self._write(session_id, hold)

    async def _write(self, session_id: str, hold: Hold) -> None:
        assert self._store is not None
        async with self._writing:
            if self._held.get(session_id) is not hold:
                return  # lifted before it was written
            alerts = self._alerts
            queued = await self._store.transaction(_remember, session_id, hold, alerts,
                                                   now_us())
        logger.warning("quarantine of session %s (agent group %s) kept in host.db; %d "
                       "owner alert(s) queued", session_id, hold.agent_group_id, queued)
        if queued and alerts is not None:
            alerts.wake()


def _load(conn: Conn) -> list[tuple[str, Hold]]:
    return [(session_id, Hold(group, reason, since)) for session_id, group, reason, since
            in conn.execute("SELECT session_id, agent_group_id, reason, since "
                            "FROM quarantined_sessions ORDER BY since")]


def _remember(conn: Conn, session_id: str, hold: Hold, alerts: OwnerAlerts | None,
              now: int) -> int:
    """Write the hold and queue its alerts, in one transaction: both or neither."""
    new = conn.execute(
        "INSERT OR IGNORE INTO quarantined_sessions (session_id, agent_group_id, reason, "
        "since) VALUES (?, ?, ?, ?)",
        (session_id, hold.agent_group_id, hold.reason, hold.since_us)).rowcount
    if not new or alerts is None:
        return 0
    return alerts.queue(conn, session_id, hold.agent_group_id, hold.reason, hold.since_us,
                        now)


def _forget(conn: Conn, session_id: str) -> Hold | None:
    row = conn.execute("DELETE FROM quarantined_sessions WHERE session_id = ? "
                       "RETURNING agent_group_id, reason, since", (session_id,)).fetchone()
    return None if row is None else Hold(*row)
