"""The sandbox's two queue handles: it reads inbound and writes outbound.

``InboundReader`` has no write method, reads only snapshots opened with
``mode=ro``, ``immutable`` and ``query_only``, and in production the inbound
directory is also bound read-only: three independent layers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs

from .. import rows as r
from ..cipher import RawKey
from ..clock import now_us
from ..enums import AckStatus
from ..ids import MessageId
from ..schema import (
    DESTINATION_COLUMNS,
    INBOUND_DDL,
    MESSAGES_IN_COLUMNS,
    OUTBOUND_DDL,
    SANDBOX_SEQ_EXPR,
)
from . import codec
from .errors import QueueWriteRefused
from .files import DEFAULT_MAX_FILE_BYTES, Connection, FencedWriterFile, SnapshotReader

_PENDING = ("queued", "scheduled", "processing")

_INSERT_OUTBOUND = f"""
INSERT INTO messages_out (id, seq, in_reply_to, timestamp, deliver_after, recurrence, kind,
    platform_id, channel_type, thread_id, destination, content)
VALUES (?, {SANDBOX_SEQ_EXPR}, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
RETURNING seq
"""


@attrs.frozen
class InboundPoll:
    """One consistent view of the host's inbound file."""

    # Rows not yet finished host-side and due by ``now``, in seq order. The caller
    # drops the ones its own outbound acks already mark completed.
    messages: list[r.InboundMessage]
    rejections: list[r.RowRejection]
    destinations: list[r.Destination]
    routing: r.SessionRouting | None
    outbound_handled_through: int
    # Ids still present in inbound (acks for any other id may be pruned); only
    # filled when asked for, since it walks the whole table.
    live_ids: frozenset[MessageId] | None


class InboundReader:
    def __init__(self, db_path: Path, key: RawKey, *, scratch_dir: Path | None = None,
                 max_bytes: int = DEFAULT_MAX_FILE_BYTES, budget_s: float = 5.0) -> None:
        self._reader = SnapshotReader(db_path, key, INBOUND_DDL, scratch_dir=scratch_dir,
                                      max_bytes=max_bytes, budget_s=budget_s)

    def verify(self) -> None:
        self._reader.verify()

    def poll(self, *, now: int | None = None, after_seq: int = 0, limit: int = 256,
             with_live_ids: bool = False) -> InboundPoll:
        """Pending rows due by ``now`` with seq above ``after_seq``. A loop that
        pages through a backlog passes its last seq; one that re-checks everything
        still unfinished passes 0."""
        stamp = now if now is not None else now_us()
        return self._reader.read(
            lambda conn: _poll_inbound(conn, stamp, after_seq, limit, with_live_ids))


def _poll_inbound(conn: Connection, now: int, after_seq: int, limit: int,
                  with_live_ids: bool) -> InboundPoll:
    columns = ", ".join(MESSAGES_IN_COLUMNS)
    messages: list[r.InboundMessage] = []
    rejections: list[r.RowRejection] = []
    for raw in conn.execute(
            f"SELECT {columns} FROM messages_in WHERE status IN (?, ?, ?) "
            "AND (process_after IS NULL OR process_after <= ?) AND seq > ? "
            "ORDER BY seq LIMIT ?",
            (*_PENDING, now, after_seq, limit)):
        row = r.validate_row("messages_in", raw, codec.inbound_message, seq_index=1,
                             id_index=0)
        if isinstance(row, r.RowRejection):
            rejections.append(row)
        else:
            messages.append(row)
    destinations: list[r.Destination] = []
    for raw in conn.execute(f"SELECT {', '.join(DESTINATION_COLUMNS)} FROM destinations"):
        dest = r.validate_row("destinations", raw, codec.destination, seq_index=None,
                              id_index=None)
        if isinstance(dest, r.RowRejection):
            rejections.append(dest)
        else:
            destinations.append(dest)
    routing = None
    raw_routing = conn.execute(
        "SELECT channel_type, platform_id, thread_id FROM session_routing WHERE id = 1"
    ).fetchone()
    if raw_routing is not None:
        parsed = r.validate_row("session_routing", raw_routing, codec.session_routing,
                                seq_index=None, id_index=None)
        if isinstance(parsed, r.RowRejection):
            rejections.append(parsed)
        else:
            routing = parsed
    (handled,) = conn.execute(
        "SELECT outbound_handled_through FROM host_progress WHERE id = 1").fetchone() or (0,)
    live = frozenset(MessageId(i.decode() if isinstance(i, bytes) else i)
                     for (i,) in conn.execute("SELECT id FROM messages_in")
                     ) if with_live_ids else None
    return InboundPoll(messages, rejections, destinations, routing,
                       handled if isinstance(handled, int) else 0, live)


class OutboundBatch:
    """Writes that must commit together: a turn's replies and its completed ack go
    in one transaction, so a crash can neither lose the reply nor send it twice."""

    def __init__(self, conn: Connection, now: int) -> None:
        self._conn = conn
        self._now = now

    def send(self, message: r.NewOutboundMessage) -> r.OutboundMessage:
        try:
            codec.check_new_outbound(message)
        except (r.RowInvalid, ValueError) as exc:
            raise QueueWriteRefused(str(exc)) from None
        m = message
        (seq,) = self._conn.execute(_INSERT_OUTBOUND, (
            m.id, m.in_reply_to, self._now, m.deliver_after, m.recurrence, m.kind.value,
            m.platform_id, m.channel_type, m.thread_id, m.destination, m.content,
        )).fetchone()
        return r.OutboundMessage(
            id=m.id, seq=seq, kind=m.kind, timestamp=self._now, content=m.content,
            in_reply_to=m.in_reply_to, deliver_after=m.deliver_after,
            recurrence=m.recurrence, platform_id=m.platform_id,
            channel_type=m.channel_type, thread_id=m.thread_id, destination=m.destination)

    def ack(self, message_ids: Iterable[MessageId], status: AckStatus) -> None:
        self._conn.executemany(
            "INSERT INTO processing_ack (message_id, status, status_changed) VALUES (?, ?, ?) "
            "ON CONFLICT (message_id) DO UPDATE SET status = excluded.status, "
            "status_changed = excluded.status_changed",
            [(mid, status.value, self._now) for mid in message_ids])

    def put_state(self, key: str, value: str) -> None:
        if len(value.encode()) > r.MAX_STATE_VALUE_BYTES:
            raise QueueWriteRefused(f"state value over {r.MAX_STATE_VALUE_BYTES} bytes")
        self._conn.execute(
            "INSERT INTO session_state (key, value, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
            "updated_at = excluded.updated_at", (key, value, self._now))

    def set_container_state(self, *, current_tool: str | None = None,
                            tool_declared_timeout_ms: int | None = None,
                            tool_started_at: int | None = None) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO container_state (id, current_tool, "
            "tool_declared_timeout_ms, tool_started_at, heartbeat_at, updated_at) "
            "VALUES (1, ?, ?, ?, ?, ?)",
            (current_tool, tool_declared_timeout_ms, tool_started_at, self._now, self._now))


class OutboundWriter:
    """Sole writer of the session's outbound.db (inside the sandbox)."""

    def __init__(self, db_path: Path, key: RawKey, *, vfs: str | None = None,
                 durable_fence: bool = True) -> None:
        self._file = FencedWriterFile(db_path, key, OUTBOUND_DDL, vfs=vfs,
                                      durable_fence=durable_fence)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> OutboundWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def batch(self, *, now: int | None = None) -> Iterator[OutboundBatch]:
        with self._file.transaction() as conn:
            yield OutboundBatch(conn, now if now is not None else now_us())

    def send(self, message: r.NewOutboundMessage) -> r.OutboundMessage:
        with self.batch() as batch:
            return batch.send(message)

    def ack(self, message_ids: Iterable[MessageId], status: AckStatus) -> None:
        with self.batch() as batch:
            batch.ack(message_ids, status)

    def put_state(self, key: str, value: str) -> None:
        with self.batch() as batch:
            batch.put_state(key, value)

    def get_state(self, key: str) -> str | None:
        with self._file.reading() as conn:
            row = conn.execute("SELECT value FROM session_state WHERE key = ?",
                               (key,)).fetchone()
        return None if row is None else str(row[0])

    def ack_statuses(self, ids: Iterable[MessageId]) -> dict[MessageId, AckStatus]:
        wanted = list(ids)
        result: dict[MessageId, AckStatus] = {}
        with self._file.reading() as conn:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start:start + 500]
                marks = ", ".join("?" * len(chunk))
                for mid, status in conn.execute(
                        "SELECT message_id, status FROM processing_ack "
                        f"WHERE message_id IN ({marks})", chunk):
                    result[MessageId(mid)] = AckStatus(status)
        return result

    def prune(self, *, handled_through: int, sent_before: int,
              live_inbound_ids: frozenset[MessageId]) -> int:
        """Drop outbound rows the host has handled (and that are older than the
        retention cutoff), and acks for inbound rows the host has already pruned."""
        with self._file.transaction() as conn:
            where = "seq <= ? AND timestamp < ?"
            conn.execute(
                "UPDATE seq_floor SET floor = max(floor, coalesce("
                f"(SELECT max(seq) FROM messages_out WHERE {where}), 0)) WHERE id = 1",
                (handled_through, sent_before))
            removed = conn.execute(f"DELETE FROM messages_out WHERE {where}",
                                   (handled_through, sent_before)).rowcount
            finished = [mid for (mid,) in conn.execute(
                "SELECT message_id FROM processing_ack WHERE status IN ('completed', 'failed')")
                if mid not in live_inbound_ids]
            conn.executemany("DELETE FROM processing_ack WHERE message_id = ?",
                             [(mid,) for mid in finished])
        return int(removed) + len(finished)
