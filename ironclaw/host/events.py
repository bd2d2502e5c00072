"""Typed events the control plane publishes on its event bus.

Events carry ids and counts, never message content or secrets: the stream is watched
by operators and may be exported.
"""

from __future__ import annotations

from typing import ClassVar

import attrs


@attrs.frozen
class MessageReceived:
    type: ClassVar[str] = "message.received"
    channel: str
    messaging_group_id: str
    sender: str
    text_bytes: int


@attrs.frozen
class MessageRouted:
    type: ClassVar[str] = "message.routed"
    messaging_group_id: str
    wiring_id: str
    agent_group_id: str
    decision: str
    session_id: str | None
    message_id: str | None


@attrs.frozen
class AccessRequested:
    type: ClassVar[str] = "access.requested"
    request_id: str
    messaging_group_id: str
    user_id: str


@attrs.frozen
class InboundFull:
    """A row for the session was refused: its inbound.db is at its byte cap. Published
    at most once a minute per session (``refused`` counts the rows since the last)."""

    type: ClassVar[str] = "session.inbound_full"
    session_id: str
    used_bytes: int
    cap_bytes: int
    refused: int


@attrs.frozen
class SessionStarted:
    type: ClassVar[str] = "session.started"
    session_id: str
    agent_group_id: str
    runtime: str


@attrs.frozen
class SessionRetired:
    type: ClassVar[str] = "session.retired"
    session_id: str
    reason: str


@attrs.frozen
class SessionKeyRotated:
    """A session's two queue files were re-encrypted under new keys, and its old key
    forgotten; its sandbox was stopped for it and woken again. `by` is the principal.
    Audited."""

    type: ClassVar[str] = "keys.session_rotated"
    session_id: str
    agent_group_id: str
    by: str


@attrs.frozen
class SessionDeleted:
    """A session was deleted: its queues, its key and its host.db rows are gone (and,
    with `workspace`, its agent group's workspace was emptied). `by` is the principal,
    or `retention` for an idle session the sweeper removed. Audited."""

    type: ClassVar[str] = "session.deleted"
    session_id: str
    agent_group_id: str
    workspace: bool
    by: str


@attrs.frozen
class SessionFailed:
    type: ClassVar[str] = "session.failed"
    session_id: str
    error: str


@attrs.frozen
class SandboxLaunched:
    type: ClassVar[str] = "sandbox.launched"
    session_id: str
    runtime: str
    pid: int


@attrs.frozen
class SandboxExitedEvent:
    type: ClassVar[str] = "sandbox.exited"
    session_id: str
    runtime: str
    returncode: int


@attrs.frozen
class RuntimeSelected:
    """Which sandbox runtime this control plane uses, and how strong it is. A warning
    is set whenever it is weaker than gVisor."""

    type: ClassVar[str] = "runtime.selected"
    runtime: str
    strength: str
    warning: str | None


@attrs.frozen
class SandboxStopped:
    type: ClassVar[str] = "sandbox.stopped"
    session_id: str
    runtime: str
    reason: str
