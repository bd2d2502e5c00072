"""The gateway actor's mailbox: frozen messages, each (but the timer's) with a
:class:`ironclaw.runtime.Reply` that carries the answer back to the asking task."""

from __future__ import annotations

import hashlib
from typing import Any, TypeAlias

import attrs

from ironclaw.contract.enums import ChangeKind, DecisionOutcome
from ironclaw.contract.ids import ChangeId
from ironclaw.runtime import Reply

from .rbac import Principal


@attrs.frozen
class SubmitChange:
    kind: ChangeKind
    agent_group: str
    after: str  # canonical JSON
    requested_by: str  # a principal's name, "session:<id>" or "system:<what>"
    reason: str | None
    ttl_us: int | None
    change_id: ChangeId | None  # deterministic for sandbox and router requests
    reply: Reply[Any]


@attrs.frozen
class DecideChange:
    change_id: str
    outcome: DecisionOutcome
    principal: Principal
    reason: str | None
    reply: Reply[Any]
    # The digest of the change as the decider saw it; when given, a change whose digest
    # differs is refused, not decided (chat approvals always bind to it).
    digest: str | None = attrs.field(default=None, kw_only=True)


@attrs.frozen
class RetryApply:
    change_id: str
    reply: Reply[Any]


@attrs.frozen
class ExpireChange:
    """From the change's TTL timer, inside the actor."""

    change_id: str


GatewayMessage: TypeAlias = SubmitChange | DecideChange | RetryApply | ExpireChange


def change_id_for(session_id: str, outbound_id: str) -> ChangeId:
    """The change a sandbox's outbound row becomes: the same row, re-delivered after a
    retry or a restart, names the same change, so it is never submitted twice."""
    digest = hashlib.sha256(f"{session_id}:{outbound_id}".encode()).hexdigest()
    return ChangeId("chg_" + digest[:32])


def access_change_id(request_id: str) -> ChangeId:
    digest = hashlib.sha256(f"access:{request_id}".encode()).hexdigest()
    return ChangeId("chg_" + digest[:32])
