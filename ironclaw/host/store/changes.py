"""The gateway's change store: every ChangeRequest, its status and its decision.

Durable, so a change pending when the control plane stops is still pending when it
starts, and a decision made after the restart applies. The status moves one way:
pending -> approved | rejected | expired, then approved -> applied.
"""

from __future__ import annotations

from typing import Any

import attrs

from ironclaw.contract.clock import now_us
from ironclaw.contract.enums import ChangeKind, ChangeStatus, DecisionOutcome
from ironclaw.contract.gateway import ChangeRequest, Decision
from ironclaw.contract.ids import AgentGroupId, ChangeId, UserId
from ironclaw.host.store.host_store import HostStore


class ChangeNotFound(LookupError):
    pass


class ChangeConflict(Exception):
    """The change is not in a state that allows this step (already decided, say)."""


@attrs.frozen
class StoredChange:
    change: ChangeRequest
    status: ChangeStatus
    decision: Decision | None = None
    applied_at: int | None = None


_COLUMNS = ("id, kind, agent_group, requested_by, before, after, reason, created_at, "
            "expires_at, status, decided_by, decided_at, decision_reason, applied_at")


def _row(row: tuple[Any, ...]) -> StoredChange:
    (id_, kind, group, by, before, after, reason, created, expires, status, decided_by,
     decided_at, decision_reason, applied_at) = row
    change = ChangeRequest(id=ChangeId(id_), kind=ChangeKind(kind),
                           agent_group=AgentGroupId(group), requested_by=UserId(by),
                           before=before, after=after, created_at=created, reason=reason,
                           expires_at=expires)
    state = ChangeStatus(status)
    decision = None
    if decided_by is not None:
        outcome = (DecisionOutcome.REJECT if state in (ChangeStatus.REJECTED,
                                                       ChangeStatus.EXPIRED)
                   else DecisionOutcome.APPROVE)
        decision = Decision(change.id, outcome, UserId(decided_by), decided_at,
                            decision_reason)
    return StoredChange(change, state, decision, applied_at)


def _get(conn: Any, change_id: str) -> StoredChange:
    row = conn.execute(f"SELECT {_COLUMNS} FROM changes WHERE id = ?", (change_id,)).fetchone()
    if row is None:
        raise ChangeNotFound(change_id)
    return _row(row)


def _put(conn: Any, change: ChangeRequest) -> StoredChange:
    conn.execute(
        "INSERT INTO changes (id, kind, agent_group, requested_by, before, after, reason, "
        "created_at, expires_at, status, digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (change.id, change.kind.value, change.agent_group, change.requested_by, change.before,
         change.after, change.reason, change.created_at, change.expires_at,
         ChangeStatus.PENDING.value, change.digest()))
    return _get(conn, change.id)


def _decide(conn: Any, decision: Decision) -> StoredChange:
    current = _get(conn, decision.change_id)
    if current.status is not ChangeStatus.PENDING:
        raise ChangeConflict(f"{decision.change_id} is already {current.status}")
    status = (ChangeStatus.APPROVED if decision.outcome is DecisionOutcome.APPROVE
              else ChangeStatus.REJECTED)
    conn.execute("UPDATE changes SET status = ?, decided_by = ?, decided_at = ?, "
                 "decision_reason = ? WHERE id = ?",
                 (status.value, decision.decided_by, decision.decided_at, decision.reason,
                  decision.change_id))
    return _get(conn, decision.change_id)


def _expire(conn: Any, change_id: str, at: int) -> StoredChange:
    current = _get(conn, change_id)
    if current.status is not ChangeStatus.PENDING:
        raise ChangeConflict(f"{change_id} is already {current.status}")
    conn.execute("UPDATE changes SET status = 'expired', decided_by = 'expiry', "
                 "decided_at = ?, decision_reason = 'expired' WHERE id = ?", (at, change_id))
    return _get(conn, change_id)


def _mark_applied(conn: Any, change_id: str, at: int) -> StoredChange:
    current = _get(conn, change_id)
    if current.status is ChangeStatus.APPLIED:
        return current  # applying is idempotent, keyed by change id
    if current.status is not ChangeStatus.APPROVED:
        raise ChangeConflict(f"{change_id} is {current.status}, not approved")
    conn.execute("UPDATE changes SET status = 'applied', applied_at = ? WHERE id = ?",
                 (at, change_id))
    return _get(conn, change_id)


def _list(conn: Any, statuses: tuple[str, ...], limit: int) -> list[StoredChange]:
    marks = ", ".join("?" * len(statuses))
    return [_row(r) for r in conn.execute(
        f"SELECT {_COLUMNS} FROM changes WHERE status IN ({marks}) "
        "ORDER BY created_at DESC, id LIMIT ?", (*statuses, limit))]


class ChangeStore:
    def __init__(self, store: HostStore) -> None:
        self._store = store

    async def put(self, change: ChangeRequest) -> StoredChange:
        return await self._store.transaction(_put, change)

    async def get(self, change_id: str) -> StoredChange:
        return await self._store.call(_get, change_id)

    async def decide(self, decision: Decision) -> StoredChange:
        return await self._store.transaction(_decide, decision)

    async def expire(self, change_id: str, at: int | None = None) -> StoredChange:
        return await self._store.transaction(_expire, change_id, at or now_us())

    async def mark_applied(self, change_id: str, at: int | None = None) -> StoredChange:
        return await self._store.transaction(_mark_applied, change_id, at or now_us())

    async def pending(self, limit: int = 1000) -> list[StoredChange]:
        return await self._store.call(_list, (ChangeStatus.PENDING.value,), limit)

    async def approved_unapplied(self, limit: int = 1000) -> list[StoredChange]:
        """Decided but not yet applied: what a restart must finish applying."""
        return await self._store.call(_list, (ChangeStatus.APPROVED.value,), limit)

    async def history(self, limit: int = 100) -> list[StoredChange]:
        return await self._store.call(_list, tuple(s.value for s in ChangeStatus), limit)
