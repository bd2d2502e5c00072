"""What delivery remembers in host.db's ``delivery_records``: one row per outbound row.
This module is the table's only writer and reader.

The key is :func:`delivery_key` (``<session id>:<outbound id>``), not the bare outbound
id: outbound ids are minted by the sandbox, and a bare key would let one session mark
another's message as delivered by reusing its id. The same key is the idempotency key
handed to channel adapters, and :class:`DeliveryRecords` is also the channels' durable
:class:`~ironclaw.host.channels.ledger.DeliveryLedger`: an adapter's receipt (of a whole
reply, or of one part of a split reply, keyed ``<key>#<n>``) is a ``delivered`` row of
this table, and the delivery worker's own record of the row lands on the same row.
Receipts the chat commands and notices leave (keys that name no session) carry a NULL
``session_id``.

Statuses: ``delivered`` (a channel took it, or it reached another agent's queue),
``handled`` (a system action was acted on), ``dead`` (given up: permanent failure or
retries exhausted), ``denied`` (not allowed), ``rejected`` (malformed or refused); all
final, so a re-read row is skipped. ``retrying`` is the one non-final status: it carries
the attempt count across restarts so retries stay bounded.
"""

from __future__ import annotations

import enum
import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import attrs

from ironclaw.contract.clock import now_us
from ironclaw.contract.ids import InvalidId, validate_session_id
from ironclaw.host.channels.base import DeliveryReceipt
from ironclaw.host.store import HostStore

__all__ = ["DeliveryRecords", "Record", "RecordStatus", "delivery_key", "derived_id",
           "session_of"]


class RecordStatus(enum.StrEnum):
    DELIVERED = "delivered"
    HANDLED = "handled"
    DEAD = "dead"
    DENIED = "denied"
    REJECTED = "rejected"
    RETRYING = "retrying"


_NOT_FRESH = object()
FINAL = frozenset(RecordStatus) - {RecordStatus.RETRYING}
_FINAL_VALUES = tuple(sorted(s.value for s in FINAL))


def delivery_key(session_id: str, outbound_id: str) -> str:
    return f"{session_id}:{outbound_id}"


def session_of(key: str) -> str | None:
    """The session a :func:`delivery_key` (or a part's ``<key>#<n>``) names; None for a
    key of something else (a chat command's reply, a notice)."""
    prefix, colon, _ = key.partition(":")
    if not colon:
        return None
    try:
        return validate_session_id(prefix)
    except InvalidId:
        return None


def derived_id(prefix: str, key: str, hex_chars: int = 24) -> str:
    """A stable id for something an outbound row caused (a task, a question, an a2a
    row), so handling the row again finds it instead of creating a second one."""
    return prefix + hashlib.sha256(key.encode("utf-8")).hexdigest()[:hex_chars]


@attrs.frozen
class Record:
    key: str
    status: RecordStatus
    attempts: int

    @property
    def final(self) -> bool:
        return self.status in FINAL


def _lookup(conn: Any, keys: Sequence[str]) -> dict[str, Record]:
    found: dict[str, Record] = {}
    for start in range(0, len(keys), 500):
        chunk = list(keys[start:start + 500])
        marks = ", ".join("?" * len(chunk))
        for key, status, attempts in conn.execute(
                "SELECT outbound_id, status, attempts FROM delivery_records "
                f"WHERE outbound_id IN ({marks})", chunk):
            try:
                found[key] = Record(key, RecordStatus(status), attempts)
            except ValueError:
                continue  # a status some other writer uses: not ours to interpret
    return found


# A final row never changes status; writing the same status again (the adapter's receipt,
# then the worker's record of the row) only completes it: the session, the platform's
# id, the larger attempt count.
_UPSERT = ("INSERT INTO delivery_records (outbound_id, session_id, status, "
           "platform_message_id, attempts, last_error, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
           "ON CONFLICT (outbound_id) DO UPDATE SET status = excluded.status, "
           "session_id = coalesce(session_id, excluded.session_id), "
           "platform_message_id = coalesce(excluded.platform_message_id, platform_message_id), "
           "attempts = max(attempts, excluded.attempts), "
           "last_error = excluded.last_error, "
           "updated_at = excluded.updated_at "
           f"WHERE delivery_records.status NOT IN ({', '.join('?' * len(_FINAL_VALUES))}) "
           "OR delivery_records.status = excluded.status")


def _write(conn: Any, key: str, session_id: str | None, status: str, detail: str | None,
           attempts: int, error: str | None, at: int) -> None:
    conn.execute(_UPSERT, (key, session_id, status, detail, attempts, error, at,
                           *_FINAL_VALUES))


def _receipt(conn: Any, key: str) -> DeliveryReceipt | None:
    row = conn.execute("SELECT platform_message_id FROM delivery_records "
                       "WHERE outbound_id = ? AND status = 'delivered'", (key,)).fetchone()
    return None if row is None else DeliveryReceipt(key, row[0], duplicate=True)


def _prune(conn: Any, before: int) -> int:
    marks = ", ".join("?" * len(_FINAL_VALUES))
    return int(conn.execute(
        f"DELETE FROM delivery_records WHERE status IN ({marks}) AND updated_at < ?",
        (*_FINAL_VALUES, before)).rowcount)


# Receipts this process just wrote, remembered so the worker's record of the same
# delivery (right after) need not write the row a second time.
_FRESH_RECEIPTS = 1024


class DeliveryRecords:
    """The outcomes of outbound rows, and the channels' durable ledger of receipts."""

    def __init__(self, store: HostStore) -> None:
        self._store = store
        self._fresh: OrderedDict[str, str | None] = OrderedDict()

    async def get(self, outbound_id: str) -> DeliveryReceipt | None:
        """The channels' ledger: the receipt of a delivered key, if there is one."""
        return await self._store.call(_receipt, outbound_id)

    async def put(self, receipt: DeliveryReceipt) -> None:
        """The channels' ledger: a platform accepted ``receipt.outbound_id``."""
        key = receipt.outbound_id
        await self._store.transaction(_write, key, session_of(key),
                                      RecordStatus.DELIVERED.value,
                                      receipt.platform_message_id, 1, None, now_us())
        self._fresh[key] = receipt.platform_message_id
        while len(self._fresh) > _FRESH_RECEIPTS:
            self._fresh.popitem(last=False)

    async def lookup(self, keys: Sequence[str]) -> dict[str, Record]:
        return await self._store.call(_lookup, list(keys))

    async def finish(self, key: str, session_id: str, status: RecordStatus, *, at: int,
                     detail: str | None = None, attempts: int = 1,
                     error: str | None = None) -> None:
        """Record a final outcome (a final record never changes status). A first
        delivery whose receipt this process has just recorded is already that row:
        the same status, session, platform id and attempt, so nothing is written."""
        fresh = self._fresh.pop(key, _NOT_FRESH)
        if (status is RecordStatus.DELIVERED and attempts == 1 and error is None
                and fresh == detail and session_of(key) == session_id):
            return
        await self._store.transaction(_write, key, session_id, status.value, detail,
                                      attempts, error, at)

    async def note_retry(self, key: str, session_id: str, *, attempts: int, error: str,
                         at: int) -> None:
        await self._store.transaction(_write, key, session_id, RecordStatus.RETRYING.value,
                                      None, attempts, error, at)

    async def prune(self, *, before: int) -> int:
        """Forget final records last touched before the cutoff. Safe once the rows they
        describe are long handled: the sessions side never re-reads a row at or below
        its handled-through cursor."""
        return await self._store.transaction(_prune, before)
