"""The holding capability gate: a sandbox's request to change its agent is recorded
pending in the change store and never applied.

It implements :class:`ironclaw.host.mailboxes.CapabilityGate` until the gateway (its
verifiers, the human decision, the applier) replaces it. What it records:

* ``kind``: the requested :class:`~ironclaw.contract.enums.ChangeKind`; an action name
  the contract does not know is privileged by definition, so it becomes ``permissions``
  with ``{"action": <name>, "payload": <payload>}`` as the requested state, and a human
  sees exactly what was asked;
* ``before``: ``{}`` for now (the gateway will fill in the current state);
* ``requested_by``: ``session:<session id>`` (the session, not anything it claims);
* the change id is derived from ``(session, outbound row id)``, so a row handled twice
  (a retry, a restart) leaves one pending change, not two.

It publishes ``change.submitted`` with ids only.
"""

from __future__ import annotations

import hashlib
from typing import ClassVar

import attrs

from ironclaw.contract.enums import ChangeKind
from ironclaw.contract.gateway import MAX_CHANGE_BYTES, ChangeRequest
from ironclaw.contract.ids import AgentGroupId, ChangeId, UserId
from ironclaw.contract.jsonvalue import canonical_json, parse_json
from ironclaw.runtime import DiscardEvents, EventSink

from .scheduling import SystemClock, WallClock
from .store.changes import ChangeNotFound, ChangeStore

__all__ = ["ChangeSubmitted", "HoldingGate", "change_id_for"]


@attrs.frozen
class ChangeSubmitted:
    type: ClassVar[str] = "change.submitted"
    change_id: str
    kind: str
    agent_group_id: str
    requested_by: str
    unknown_action: bool


def change_id_for(session_id: str, outbound_id: str) -> ChangeId:
    digest = hashlib.sha256(f"{session_id}:{outbound_id}".encode()).hexdigest()
    return ChangeId("chg_" + digest[:32])


class HoldingGate:
    def __init__(self, changes: ChangeStore, *, events: EventSink | None = None,
                 clock: WallClock | None = None) -> None:
        self._changes = changes
        self._events = events or DiscardEvents()
        self._clock = clock or SystemClock()

    async def submit_from_sandbox(self, *, session_id: str, agent_group_id: str,
                                  kind: str, payload: str, reason: str | None,
                                  outbound_id: str) -> str:
        """Record the request pending; return its change id. ``payload`` is JSON text.
        Raises ``ValueError`` for a payload that is not acceptable JSON."""
        change_id = change_id_for(session_id, outbound_id)
        try:
            await self._changes.get(change_id)
            return change_id  # already submitted by an earlier attempt
        except ChangeNotFound:
            pass
        value = parse_json(payload, max_bytes=MAX_CHANGE_BYTES)
        try:
            change_kind, after, unknown = ChangeKind(kind), value, False
        except ValueError:
            change_kind, unknown = ChangeKind.PERMISSIONS, True
            after = {"action": kind, "payload": value}
        requested_by = f"session:{session_id}"
        change = ChangeRequest(id=change_id, kind=change_kind,
                               agent_group=AgentGroupId(agent_group_id),
                               requested_by=UserId(requested_by), before="{}",
                               after=canonical_json(after), created_at=self._clock.now_us(),
                               reason=reason)
        await self._changes.put(change)
        self._events.publish(ChangeSubmitted(change_id, change_kind.value, agent_group_id,
                                             requested_by, unknown))
        return change_id
