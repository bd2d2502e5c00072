"""The SQL of pairing and chat approvals: plain functions over a host.db connection, run
on the store's thread (``HostStore.call`` / ``HostStore.transaction``).

Two tables (migration V6): ``chat_approvers`` (owners who opted in to deciding from
chat; no row, no chat decisions) and ``chat_notices`` (the durable outbox of fixed
notices about access requests, one row per request and kind; since V9 also of the
alerts owners get about a quarantined session, with their text in ``text``).
"""

from __future__ import annotations

import enum
import hashlib
from typing import Any

import attrs

Conn = Any


class NoticeKind(enum.StrEnum):
    REQUESTED = "access_requested"
    GRANTED = "access_granted"
    DENIED = "access_denied"
    EXPIRED = "access_expired"
    # To an owner or admin: a session of theirs was quarantined (chatops.alerts).
    SESSION_QUARANTINED = "session_quarantined"


class NoticeStatus(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    DEAD = "dead"


@attrs.frozen
class Notice:
    id: str  # the outbound id: the adapter's idempotency key
    request_id: str
    kind: NoticeKind
    channel: str
    instance: str
    platform_id: str
    thread_id: str | None
    status: NoticeStatus = NoticeStatus.PENDING
    attempts: int = 0
    next_at: int = 0
    created_at: int = 0
    text: str | None = None  # None: the fixed text of ``kind`` (access notices)


def notice_id(request_id: str, kind: NoticeKind) -> str:
    """Deterministic, so a notice raised twice (a callback and a restart's reconcile)
    is one row and, through the adapter's ledger, one message."""
    digest = hashlib.sha256(f"notice:{request_id}:{kind.value}".encode()).hexdigest()
    return "ntc_" + digest[:32]


@attrs.frozen
class Approver:
    user_id: str
    enabled_by: str
    enabled_at: int


# Chat approvers.

def enable_approver(conn: Conn, user_id: str, by: str, now: int) -> bool:
    return bool(conn.execute(
        "INSERT OR IGNORE INTO chat_approvers (user_id, enabled_by, enabled_at) "
        "VALUES (?, ?, ?)", (user_id, by, now)).rowcount)


def disable_approver(conn: Conn, user_id: str) -> bool:
    return bool(conn.execute("DELETE FROM chat_approvers WHERE user_id = ?",
                             (user_id,)).rowcount)


def is_approver(conn: Conn, user_id: str) -> bool:
    return conn.execute("SELECT 1 FROM chat_approvers WHERE user_id = ?",
                        (user_id,)).fetchone() is not None


def list_approvers(conn: Conn) -> list[Approver]:
    return [Approver(*row) for row in conn.execute(
        "SELECT user_id, enabled_by, enabled_at FROM chat_approvers ORDER BY user_id")]


# Notices.

_N_COLUMNS = ("id, request_id, kind, channel, instance, platform_id, thread_id, status, "
              "attempts, next_at, created_at, text")


def _notice(row: tuple[Any, ...]) -> Notice:
    (id_, request, kind, channel, instance, platform, thread, status, attempts, next_at,
     created, text) = row
    return Notice(id_, request, NoticeKind(kind), channel, instance, platform, thread,
                  NoticeStatus(status), attempts, next_at, created, text)


def put_notice(conn: Conn, notice: Notice, now: int) -> bool:
    """Queue a notice; False (and nothing written) if that request already has one of
    that kind."""
    return bool(conn.execute(
        f"INSERT OR IGNORE INTO chat_notices ({_N_COLUMNS}, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?)",
        (notice.id, notice.request_id, notice.kind.value, notice.channel, notice.instance,
         notice.platform_id, notice.thread_id, now, now, notice.text, now)).rowcount)


def find_notice(conn: Conn, request_id: str, kind: NoticeKind) -> Notice | None:
    row = conn.execute(f"SELECT {_N_COLUMNS} FROM chat_notices WHERE request_id = ? "
                       "AND kind = ?", (request_id, kind.value)).fetchone()
    return None if row is None else _notice(row)


def due_notices(conn: Conn, now: int, limit: int) -> tuple[list[Notice], int | None]:
    """Pending notices due by ``now`` (oldest first), and when the next one is due. An
    outcome waits until its request's ``requested`` notice is settled, so a sender
    never hears "granted" before "requested"."""
    columns = ", ".join(f"n.{c.strip()}" for c in _N_COLUMNS.split(","))
    due = [_notice(r) for r in conn.execute(
        f"SELECT {columns} FROM chat_notices n WHERE n.status = 'pending' "
        "AND n.next_at <= ? AND NOT (n.kind != ? AND EXISTS (SELECT 1 FROM chat_notices r "
        "WHERE r.request_id = n.request_id AND r.kind = ? AND r.status = 'pending')) "
        "ORDER BY n.next_at, n.rowid LIMIT ?",
        (now, NoticeKind.REQUESTED.value, NoticeKind.REQUESTED.value, limit))]
    row = conn.execute("SELECT min(next_at) FROM chat_notices WHERE status = 'pending' "
                       "AND next_at > ?", (now,)).fetchone()
    return due, None if row is None else row[0]


def settle_notice(conn: Conn, notice_id: str, status: NoticeStatus, attempts: int,
                  next_at: int, error: str | None, now: int) -> None:
    conn.execute("UPDATE chat_notices SET status = ?, attempts = ?, next_at = ?, "
                 "last_error = ?, updated_at = ? WHERE id = ? AND status = 'pending'",
                 (status.value, attempts, next_at, error, now, notice_id))


def outcome_kind(status: str, decided_by: str | None) -> NoticeKind | None:
    """The notice for an access request in ``status`` (None while it is pending)."""
    if status == "granted":
        return NoticeKind.GRANTED
    if status == "denied":
        return NoticeKind.EXPIRED if decided_by == "expiry" else NoticeKind.DENIED
    return None


def raise_requested(conn: Conn, notice: Notice, now: int) -> bool:
    """Queue the ``requested`` notice and, if the request was decided meanwhile (a
    verifier refused it at once, or an owner was very quick), its outcome too."""
    created = put_notice(conn, notice, now)
    row = conn.execute("SELECT status, decided_by FROM access_requests WHERE id = ?",
                       (notice.request_id,)).fetchone()
    kind = None if row is None else outcome_kind(row[0], row[1])
    if kind is not None:
        raise_outcome(conn, notice.request_id, kind, now)
    return created


def raise_outcome(conn: Conn, request_id: str, kind: NoticeKind, now: int) -> bool:
    """Queue how a request ended, in the chat (and thread) where it was raised; only
    for a sender who was told that it was raised."""
    asked = find_notice(conn, request_id, NoticeKind.REQUESTED)
    if asked is None:
        return False
    return put_notice(conn, attrs.evolve(asked, id=notice_id(request_id, kind), kind=kind),
                      now)


def reconcile(conn: Conn, now: int) -> int:
    """Queue the outcome of every decided access request whose sender was told that
    access was requested but not yet how it ended (the control plane stopped between
    the decision and the notice). Returns how many were queued."""
    rows = conn.execute(
        "SELECT a.id, a.status, a.decided_by FROM access_requests a JOIN chat_notices n "
        "ON n.request_id = a.id AND n.kind = ? WHERE a.status != 'pending' "
        "AND NOT EXISTS (SELECT 1 FROM chat_notices o WHERE o.request_id = a.id "
        "AND o.kind != ?)", (NoticeKind.REQUESTED.value, NoticeKind.REQUESTED.value)
    ).fetchall()
    queued = 0
    for request_id, status, decided_by in rows:
        kind = outcome_kind(status, decided_by)
        if kind is not None:
            queued += raise_outcome(conn, request_id, kind, now)
    return queued
