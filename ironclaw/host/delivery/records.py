"""What delivery remembers in host.db's ``delivery_records``: one row per outbound row.

The key is :func:`delivery_key` (``<session id>:<outbound id>``), not the bare outbound
id: outbound ids are minted by the sandbox, and a bare key would let one session mark
another's message as delivered by reusing its id. The same key is the idempotency key
handed to channel adapters and stored by
:class:`~ironclaw.host.store.deliveries.DurableDeliveryLedger`.

Statuses: ``delivered`` (a channel took it, or it reached another agent's queue),
``handled`` (a system action was acted on), ``dead`` (given up: permanent failure or
retries exhausted), ``denied`` (not allowed), ``rejected`` (malformed or refused); all
final, so a re-read row is skipped. ``retrying`` is the one non-final status: it carries
the attempt count across restarts so retries stay bounded.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Sequence
from typing import Any

import attrs

from ironclaw.host.store import HostStore

__all__ = ["DeliveryRecords", "Record", "RecordStatus", "delivery_key", "derived_id"]


class RecordStatus(enum.StrEnum):
    DELIVERED = "delivered"
    HANDLED = "handled"
    DEAD = "dead"
    DENIED = "denied"
    REJECTED = "rejected"
    RETRYING = "retrying"


FINAL = frozenset(RecordStatus) - {RecordStatus.RETRYING}
_FINAL_VALUES = tuple(sorted(s.value for s in FINAL))


def delivery_key(session_id: str, outbound_id: str) -> str:
    return f"{session_id}:{outbound_id}"


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


_UPSERT = ("INSERT INTO delivery_records (outbound_id, session_id, status, "
           "platform_message_id, attempts, last_error, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
           "ON CONFLICT (outbound_id) DO UPDATE SET status = excluded.status, "
           "platform_message_id = coalesce(excluded.platform_message_id, platform_message_id), "
           "attempts = max(attempts, excluded.attempts), last_error = excluded.last_error, "
           "updated_at = excluded.updated_at "
           f"WHERE delivery_records.status NOT IN ({', '.join('?' * len(_FINAL_VALUES))})")


def _write(conn: Any, key: str, session_id: str, status: str, detail: str | None,
           attempts: int, error: str | None, at: int) -> None:
    conn.execute(_UPSERT, (key, session_id, status, detail, attempts, error, at,
                           *_FINAL_VALUES))


def _prune(conn: Any, before: int) -> int:
    marks = ", ".join("?" * len(_FINAL_VALUES))
    return int(conn.execute(
        f"DELETE FROM delivery_records WHERE status IN ({marks}) AND updated_at < ?",
        (*_FINAL_VALUES, before)).rowcount)


class DeliveryRecords:
    def __init__(self, store: HostStore) -> None:
        self._store = store

    async def lookup(self, keys: Sequence[str]) -> dict[str, Record]:
        return await self._store.call(_lookup, list(keys))

    async def finish(self, key: str, session_id: str, status: RecordStatus, *, at: int,
                     detail: str | None = None, attempts: int = 1,
                     error: str | None = None) -> None:
        """Record a final outcome (a final record is never overwritten)."""
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
