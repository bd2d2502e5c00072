"""The small protocols the gateway depends on, and the events it publishes.

* :class:`AuditSink`: the tamper-evident audit log (``ironclaw.host.audit.AuditLog``
  implements it). Fields are ids and counts only, never payloads or reasons.
* :class:`Notifier`: tells the requesting session how its change ended; the sessions
  side implements it by enqueuing a system row.
* :class:`Respawner`: restarts an agent group's running sandboxes so an applied change
  (persona, tools, mounts, packages, egress, MCP access) takes effect.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

import attrs
import trio

from ironclaw.contract.enums import ChangeStatus
from ironclaw.contract.gateway import ChangeRequest


class AuditSink(Protocol):
    async def append(self, kind: str, /, **fields: str | int | bool | None) -> int: ...


class Notifier(Protocol):
    async def change_resolved(self, change: ChangeRequest, status: ChangeStatus) -> None:
        """Called once a change reaches applied, rejected or expired. Must not assume
        the requester is a session: operators and the router submit changes too."""
        ...


class Respawner(Protocol):
    async def respawn_group(self, agent_group_id: str, reason: str) -> None: ...


class NoNotifier:
    async def change_resolved(self, change: ChangeRequest, status: ChangeStatus) -> None:
        del change, status
        await trio.lowlevel.checkpoint()


class NoRespawner:
    async def respawn_group(self, agent_group_id: str, reason: str) -> None:
        del agent_group_id, reason
        await trio.lowlevel.checkpoint()


@attrs.frozen
class ChangeSubmitted:
    type: ClassVar[str] = "change.submitted"
    change_id: str
    kind: str
    agent_group_id: str
    requested_by: str
    status: str


@attrs.frozen
class ChangeDecided:
    type: ClassVar[str] = "change.decided"
    change_id: str
    outcome: str
    decided_by: str


@attrs.frozen
class ChangeApplied:
    type: ClassVar[str] = "change.applied"
    change_id: str
    kind: str
    agent_group_id: str
    effects: int


@attrs.frozen
class ChangeApplyFailed:
    type: ClassVar[str] = "change.apply_failed"
    change_id: str
    kind: str


@attrs.frozen
class ChangeExpired:
    type: ClassVar[str] = "change.expired"
    change_id: str
