"""Events the delivery actor publishes. Ids, seqs, counts and short reasons; never the
content of a row (reasons are built by us, and anything quoted from input is masked)."""

from __future__ import annotations

import re
from typing import ClassVar

import attrs

__all__ = [
    "ActionHandled",
    "AgentMessageSent",
    "DeadLettered",
    "Delivered",
    "DeliveryDenied",
    "DeliveryHeld",
    "DeliveryRejected",
    "DeliveryRetrying",
    "WorkerFailed",
    "public_reason",
]

_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
MAX_REASON_CHARS = 200


def public_reason(text: str) -> str:
    """A reason safe for the event stream: quoted fragments (which may echo input, a
    duplicate JSON key say) are masked, and the length is capped."""
    return _QUOTED.sub("'…'", text)[:MAX_REASON_CHARS]


@attrs.frozen
class Delivered:
    type: ClassVar[str] = "delivery.delivered"
    session_id: str
    outbound_id: str
    seq: int
    channel: str
    attempts: int
    duplicate: bool


@attrs.frozen
class DeliveryRetrying:
    type: ClassVar[str] = "delivery.retrying"
    session_id: str
    outbound_id: str
    seq: int
    attempt: int
    retry_in: float
    reason: str


@attrs.frozen
class DeadLettered:
    type: ClassVar[str] = "delivery.dead_lettered"
    session_id: str
    outbound_id: str
    seq: int
    attempts: int
    reason: str


@attrs.frozen
class DeliveryDenied:
    type: ClassVar[str] = "delivery.denied"
    session_id: str
    outbound_id: str
    seq: int
    reason: str


@attrs.frozen
class DeliveryRejected:
    """A row (or an unreadable row the tail reported) that is handled by refusing it."""

    type: ClassVar[str] = "delivery.rejected"
    session_id: str
    outbound_id: str | None
    seq: int | None
    reason: str


@attrs.frozen
class DeliveryHeld:
    type: ClassVar[str] = "delivery.held"
    session_id: str
    outbound_id: str
    seq: int
    due_at: int


@attrs.frozen
class AgentMessageSent:
    type: ClassVar[str] = "delivery.a2a"
    session_id: str
    outbound_id: str
    seq: int
    target_agent_group_id: str
    target_session_id: str
    hops: int


@attrs.frozen
class ActionHandled:
    """A system action was acted on; ``result_id`` is the task, question or change."""

    type: ClassVar[str] = "delivery.action"
    session_id: str
    outbound_id: str
    seq: int
    action: str
    result_id: str


@attrs.frozen
class WorkerFailed:
    type: ClassVar[str] = "delivery.worker_failed"
    session_id: str
    reason: str
