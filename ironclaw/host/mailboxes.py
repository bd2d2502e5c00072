"""Messages between the control plane's actors, and the small protocols they share.

Subsystems talk through these, not through each other's internals: the router and
the sweeper send ``Wake`` to the sessions actor; a session's outbound tail sends
``TailBatch`` to delivery; delivery reports progress back through
``OutboundProgress``. All messages are frozen attrs values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import attrs
import trio

from ironclaw.contract.actions import ScheduleTask, TaskControl
from ironclaw.contract.rows import OutboundMessage, RowRejection


@attrs.frozen
class Wake:
    """This session has new engaging rows (or a due task): run it and ring its bell."""

    session_id: str
    reason: str = "message"


@attrs.frozen
class StopSession:
    """Stop the session's sandbox. ``restart``: start it again at once (a stuck agent);
    otherwise it stays stopped until the next wake (idle retirement, shutdown)."""

    session_id: str
    reason: str
    restart: bool = False


@attrs.frozen
class RespawnGroup:
    """Restart every live sandbox of an agent group, so they pick up an applied change
    (persona, tools, mounts, egress). Idle sessions pick it up on their next wake."""

    agent_group_id: str
    reason: str


SessionsMessage = Wake | StopSession | RespawnGroup


@attrs.frozen
class TailBatch:
    """Rows a session's tail read from its outbound file, in seq order.

    ``cursor`` is the highest seq examined (valid or rejected). Delivery reports it
    handled, through ``OutboundProgress``, once every row up to it is durably dealt
    with: delivered, dead-lettered, or acted on."""

    session_id: str
    agent_group_id: str
    messages: tuple[OutboundMessage, ...]
    rejections: tuple[RowRejection, ...]
    cursor: int


class OutboundProgress(Protocol):
    """Implemented by the sessions side: persist the cursor in host.db and tell the
    sandbox (through inbound ``host_progress``) that it may prune up to it."""

    async def handled_through(self, session_id: str, seq: int) -> None: ...


@attrs.frozen
class SessionHealth:
    """What the sweeper needs to tell a busy agent from a stuck one."""

    session_id: str
    agent_group_id: str
    running: bool
    heartbeat_at: int | None  # last heartbeat file write, microseconds
    current_tool: str | None
    tool_started_at: int | None
    tool_declared_timeout_ms: int | None
    oldest_claim_at: int | None  # oldest inbound row acked "processing", not finished
    last_activity: int
    # When the running sandbox was launched: a sandbox is judged from its own start, never
    # by a predecessor's last heartbeat or claim.
    launched_at: int | None = None


class SessionsView(Protocol):
    """Implemented by the sessions actor."""

    def health(self) -> list[SessionHealth]: ...


class CapabilityGate(Protocol):
    """Where a sandbox's request to change what its agent is or may do goes. The
    gateway implements it; until then a holding gate records it pending and never
    applies it. Returns the change id."""

    async def submit_from_sandbox(self, *, session_id: str, agent_group_id: str,
                                  kind: str, payload: str, reason: str | None,
                                  outbound_id: str) -> str: ...


class Identified(Protocol):
    @property
    def id(self) -> str: ...


class TaskScheduler(Protocol):
    """Where delivery hands a sandbox's ``schedule_task`` and task control (the
    scheduler implements it)."""

    async def schedule(self, *, session_id: str, agent_group_id: str, request: ScheduleTask,
                       task_id: str | None = None) -> Identified: ...

    async def control(self, *, session_id: str, request: TaskControl,
                      reply_id: str | None = None) -> Sequence[Identified]: ...


class DueTasks(Protocol):
    """The sweeper's chores on the schedules (the scheduler implements it)."""

    async def fire_due(self, *, limit: int = 100) -> int: ...

    async def prune(self, *, finished_before: int) -> int: ...


class Respawns:
    """The gateway's Respawner, over the sessions mailbox (it exists before the
    sessions actor does, like :class:`ironclaw.host.inbound.Waker`)."""

    def __init__(self, mailbox: trio.MemorySendChannel[SessionsMessage]) -> None:
        self._mailbox = mailbox

    async def respawn_group(self, agent_group_id: str, reason: str) -> None:
        await self._mailbox.send(RespawnGroup(agent_group_id, reason))


def open_sessions_mailbox(size: int = 4096) -> tuple[
        trio.MemorySendChannel[SessionsMessage], trio.MemoryReceiveChannel[SessionsMessage]]:
    return trio.open_memory_channel[SessionsMessage](size)
