"""The gateway's writes to the change store, each one host.db transaction.

They compose the change store's own steps with what must move with them: a verdict
recorded with the submit it decides, an access request closed with the change that
denied it, the per-requester quota checked where the insert happens.
"""

from __future__ import annotations

from typing import Any

from ironclaw.contract.enums import ChangeKind, ChangeStatus, DecisionOutcome
from ironclaw.contract.gateway import MAX_CHANGE_BYTES, ChangeRequest, Decision
from ironclaw.contract.jsonvalue import parse_json
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
from .messages import access_change_id
from .rbac import TooManyPending

Conn = Any

ROUTER = "system:router"  # who raises access requests


def find(conn: Conn, change_id: str) -> StoredChange | None:
    try:
        return _get(conn, change_id)
    except ChangeNotFound:
        return None


def _close_access_request(conn: Conn, change: ChangeRequest, decided_by: str,
                          now: int) -> None:
    """A refused or expired access change denies its request, so the sender may ask
    again later instead of being held by a request nobody can grant. Only the change
    raised for that request may close it (a forged one names it in vain)."""
    if change.kind is not ChangeKind.ACCESS:
        return
    after = parse_json(change.after, max_bytes=MAX_CHANGE_BYTES)
    request = after.get("request") if isinstance(after, dict) else None
    if isinstance(request, str) and change.id == access_change_id(request):
        g.settle_access_request(conn, request, granted=False, decided_by=decided_by, now=now)


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
            _close_access_request(conn, change, decision.decided_by, decision.decided_at)
    return stored, True


def _check_quota(conn: Conn, change: ChangeRequest, config: GatewayConfig) -> None:
    """Pending changes per requester; for the router's access requests, per sender, per
    chat and per channel instance instead, so strangers fill only their own share."""
    request = _access_request_of(change)
    if request is None:
        limit = config.max_pending_per_requester
        if g.count_pending(conn, change.requested_by) >= limit:
            raise TooManyPending(f"{change.requested_by} already has {limit} pending changes")
        return
    for scope, count, limit in (
        ("sender", g.pending_access_by_sender(conn, request),
         config.access_max_pending_per_sender),
        ("chat", g.pending_access_in_chat(conn, request), config.access_max_pending_per_chat),
        ("channel", g.pending_access_on_channel(conn, request),
         config.access_max_pending_per_channel),
    ):
        if count >= limit:
            raise TooManyPending(f"access requests: this {scope} already has {limit} pending")


def _access_request_of(change: ChangeRequest) -> str | None:
    """The access request a router-raised ``access`` change was made for (its id is
    derived from the request's, so nothing else can pass for one)."""
    if change.kind is not ChangeKind.ACCESS or change.requested_by != ROUTER:
        return None
    after = parse_json(change.after, max_bytes=MAX_CHANGE_BYTES)
    request = after.get("request") if isinstance(after, dict) else None
    if isinstance(request, str) and change.id == access_change_id(request):
        return request
    return None


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


def record_decision(conn: Conn, decision: Decision) -> StoredChange:
    stored = _decide(conn, decision)
    _forget_approvals(conn, decision.change_id)
    if decision.outcome is DecisionOutcome.REJECT:
        _close_access_request(conn, stored.change, decision.decided_by, decision.decided_at)
    return stored


def record_expiry(conn: Conn, change_id: str, now: int) -> StoredChange:
    current = _get(conn, change_id)
    if current.status is not ChangeStatus.PENDING:
        raise ChangeConflict(f"{change_id} is already {current.status}")
    stored = _expire(conn, change_id, now)
    _forget_approvals(conn, change_id)
    _close_access_request(conn, stored.change, "expiry", now)
    return stored
