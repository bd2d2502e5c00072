"""The gateway's writes to the change store, each one host.db transaction.

They compose the change store's own steps with what must move with them: a verdict
recorded with the submit it decides, what the kind does when its change is refused or
expires, the pending quota checked where the insert happens.
"""

from __future__ import annotations

from typing import Any

from ironclaw.contract.enums import ChangeStatus, DecisionOutcome
from ironclaw.contract.gateway import ChangeRequest, Decision
from ironclaw.host.store.changes import (
    ChangeConflict,
    ChangeNotFound,
    StoredChange,
    _decide,
    _expire,
    _get,
    _put,
)

from . import grants as g
from .config import GatewayConfig
from .rbac import TooManyPending

Conn = Any

def find(conn: Conn, change_id: str) -> StoredChange | None:
    try:
        return _get(conn, change_id)
    except ChangeNotFound:
        return None


def _refused(conn: Conn, change: ChangeRequest, decided_by: str, now: int,
             config: GatewayConfig) -> None:
    """What the change's kind does when it is refused or expires (an access change
    denies its request, so the sender may ask again later)."""
    on_refused = config.kinds[change.kind].on_refused
    if on_refused is not None:
        on_refused(conn, change, decided_by, now)


def record_submit(conn: Conn, change: ChangeRequest, decision: Decision | None,
                  config: GatewayConfig) -> tuple[StoredChange, bool]:
    """Store the change (and the chain's decision, if it made one). Idempotent by id:
    an existing change is returned as it is, with ``False``."""
    existing = find(conn, change.id)
    if existing is not None:
        return existing, False
    if decision is None:
        _check_quota(conn, change, config)
    stored = _put(conn, change)
    if decision is not None:
        stored = _decide(conn, decision)
        if decision.outcome is DecisionOutcome.REJECT:
            _refused(conn, change, decision.decided_by, decision.decided_at, config)
    return stored, True


def _check_quota(conn: Conn, change: ChangeRequest, config: GatewayConfig) -> None:
    """Pending changes per requester, unless the kind counts them its own way (the
    router's access requests: per sender, per chat and per channel instance)."""
    own_quota = config.kinds[change.kind].own_quota
    if own_quota is not None and own_quota(conn, change, config):
        return
    limit = config.max_pending_per_requester
    if g.count_pending(conn, change.requested_by) >= limit:
        raise TooManyPending(f"{change.requested_by} already has {limit} pending changes")


def approvers_of(conn: Conn, change_id: str) -> list[str]:
    """Who approved a pending two-approver change so far, in order."""
    return [name for (name,) in conn.execute(
        "SELECT approver FROM change_approvals WHERE change_id = ? "
        "ORDER BY approved_at, approver", (change_id,))]


def record_first_approval(conn: Conn, change_id: str, approver: str, now: int
                          ) -> StoredChange:
    """One approval of a change that needs two; it stays pending."""
    current = _get(conn, change_id)
    if current.status is not ChangeStatus.PENDING:
        raise ChangeConflict(f"{change_id} is already {current.status}")
    conn.execute("INSERT OR IGNORE INTO change_approvals (change_id, approver, approved_at) "
                 "VALUES (?, ?, ?)", (change_id, approver, now))
    return current


def _forget_approvals(conn: Conn, change_id: str) -> None:
    conn.execute("DELETE FROM change_approvals WHERE change_id = ?", (change_id,))


def record_decision(conn: Conn, decision: Decision, config: GatewayConfig) -> StoredChange:
    stored = _decide(conn, decision)
    _forget_approvals(conn, decision.change_id)
    if decision.outcome is DecisionOutcome.REJECT:
        _refused(conn, stored.change, decision.decided_by, decision.decided_at, config)
    return stored


def record_expiry(conn: Conn, change_id: str, now: int, config: GatewayConfig
                  ) -> StoredChange:
    current = _get(conn, change_id)
    if current.status is not ChangeStatus.PENDING:
        raise ChangeConflict(f"{change_id} is already {current.status}")
    stored = _expire(conn, change_id, now)
    _forget_approvals(conn, change_id)
    _refused(conn, stored.change, "expiry", now, config)
    return stored
