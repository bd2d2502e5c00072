"""Quarantine: a session whose sandbox proved hostile is stopped and kept stopped.

Proof is something no honest agent produces: an outbound file whose schema is not
the contract's (a generated column, trigger, view, virtual table, extra or rebuilt
table), or a symlink, FIFO, device or hard link where a queue file belongs. Then the
session's actor stops (its sandbox is killed like any stopped sandbox), a
``session.quarantined`` event is published, which the audit recorder appends to the
audit log and ``/v1/events`` carries to operators, and a critical log line names the
session. Every other session carries on: nothing here is shared with them.

The hold lives in the control plane's memory, so a wake (a new message, the sweeper,
recovery) never starts the session again while the plane runs; its inbound rows wait.
An operator clears it by restarting the control plane, after looking at (and, if it
is still hostile, moving away) the session's outbound directory. A file that is still
hostile is caught again at its first read, before any query runs on it.
"""

from __future__ import annotations

from typing import ClassVar

import attrs

from ironclaw.contract.clock import now_us


@attrs.frozen
class SessionQuarantined:
    """Published once per quarantine; audited (ids and a short reason, no content)."""

    type: ClassVar[str] = "session.quarantined"
    session_id: str
    agent_group_id: str
    reason: str


@attrs.frozen
class Hold:
    agent_group_id: str
    reason: str
    since_us: int


class Quarantine:
    """The sessions held, and why. Only the event loop touches it."""

    def __init__(self) -> None:
        self._held: dict[str, Hold] = {}

    def hold(self, session_id: str, agent_group_id: str, reason: str) -> SessionQuarantined | None:
        """Hold a session; the event to publish, or None if it was already held."""
        if session_id in self._held:
            return None
        self._held[session_id] = Hold(agent_group_id, reason[:300], now_us())
        return SessionQuarantined(session_id, agent_group_id, reason[:300])

    def held(self, session_id: str) -> Hold | None:
        return self._held.get(session_id)

    def all(self) -> dict[str, Hold]:
        return dict(self._held)
