"""The host's two queue handles: it writes inbound and reads outbound, nothing else.

Neither class has a method its side must not have: there is no way to write the
sandbox's outbound file from here, and the outbound reader never opens the live
file with SQLite at all (it reads snapshots; see files.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import attrs

from .. import rows as r
from ..cipher import RawKey
from ..clock import now_us
from ..enums import AckStatus, InboundStatus
from ..ids import MessageId
from ..schema import (
    DESTINATION_COLUMNS,
    HOST_SEQ_EXPR,
    INBOUND_DDL,
    MESSAGES_OUT_COLUMNS,
    OUTBOUND_DDL,
)
from . import codec
from .errors import QueueWriteRefused
from .files import DEFAULT_MAX_FILE_BYTES, Connection, FencedWriterFile, SnapshotReader

_INSERT_INBOUND = f"""
INSERT INTO messages_in (id, seq, kind, timestamp, status, status_changed, process_after,
    recurrence, series_id, tries, engages, platform_id, channel_type, thread_id, content,
    source_session_id, on_wake)
VALUES (?, {HOST_SEQ_EXPR}, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?)
RETURNING seq
"""

# An ack may only move a row forward; a stale or replayed ack changes nothing.
_ACK_PREDECESSORS: dict[AckStatus, tuple[str, ...]] = {
    AckStatus.PROCESSING: (InboundStatus.QUEUED, InboundStatus.SCHEDULED),
    AckStatus.COMPLETED: (InboundStatus.QUEUED, InboundStatus.SCHEDULED,
                          InboundStatus.PROCESSING),
    AckStatus.FAILED: (InboundStatus.QUEUED, InboundStatus.SCHEDULED,
                       InboundStatus.PROCESSING),
}


class InboundWriter:
    """Sole writer of a session's inbound.db. Creates the file and schema if absent."""

    def __init__(self, db_path: Path, key: RawKey, *, vfs: str | None = None,
                 durable_fence: bool = True) -> None:
        self._file = FencedWriterFile(db_path, key, INBOUND_DDL, vfs=vfs,
                                      durable_fence=durable_fence)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> InboundWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def enqueue(self, message: r.NewInboundMessage, *, now: int | None = None
                ) -> r.InboundMessage:
        return self.enqueue_many([message], now=now)[0]

    def enqueue_many(self, messages: Sequence[r.NewInboundMessage], *,
                     now: int | None = None) -> list[r.InboundMessage]:
        """All in one commit: either every row is durable or none is."""
        stamp = now if now is not None else now_us()
        for message in messages:
            try:
                codec.check_new_inbound(message)
            except (r.RowInvalid, ValueError) as exc:
                raise QueueWriteRefused(str(exc)) from None
        written = []
        with self._file.transaction() as conn:
            for m in messages:
                due_later = m.process_after is not None and m.process_after > stamp
                status = InboundStatus.SCHEDULED if due_later else InboundStatus.QUEUED
                (seq,) = conn.execute(_INSERT_INBOUND, (
                    m.id, m.kind.value, stamp, status.value, stamp, m.process_after,
                    m.recurrence, m.series_id, int(m.engages), m.platform_id,
                    m.channel_type, m.thread_id, m.content, m.source_session_id,
                    int(m.on_wake),
                )).fetchone()
                written.append(r.InboundMessage(
                    id=m.id, seq=seq, kind=m.kind, timestamp=stamp, status=status,
                    content=m.content, engages=m.engages, process_after=m.process_after,
                    recurrence=m.recurrence, series_id=m.series_id, tries=0,
                    platform_id=m.platform_id, channel_type=m.channel_type,
                    thread_id=m.thread_id, source_session_id=m.source_session_id,
                    on_wake=m.on_wake))
        return written

    def set_destinations(self, destinations: Iterable[r.Destination]) -> None:
        """Replace the whole destination table: the registry is the source of truth."""
        with self._file.transaction() as conn:
            conn.execute("DELETE FROM destinations")
            conn.executemany(
                f"INSERT INTO destinations ({', '.join(DESTINATION_COLUMNS)}) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(d.name, d.display_name, d.type, d.channel_type, d.platform_id,
                  d.agent_group_id) for d in destinations])

    def set_routing(self, routing: r.SessionRouting) -> None:
        with self._file.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO session_routing (id, channel_type, platform_id, "
                "thread_id) VALUES (1, ?, ?, ?)",
                (routing.channel_type, routing.platform_id, routing.thread_id))

    def apply_acks(self, acks: Iterable[r.ProcessingAck], *, now: int | None = None) -> int:
        """Advance inbound status from the sandbox's acks. Returns rows changed."""
        stamp = now if now is not None else now_us()
        changed = 0
        with self._file.transaction() as conn:
            for ack in acks:
                allowed = _ACK_PREDECESSORS[ack.status]
                marks = ", ".join("?" * len(allowed))
                cursor = conn.execute(
                    f"UPDATE messages_in SET status = ?, status_changed = ? "
                    f"WHERE id = ? AND status IN ({marks})",
                    (ack.status.value, stamp, ack.message_id, *allowed))
                changed += cursor.rowcount
        return changed

    def record_outbound_handled(self, through_seq: int, *, now: int | None = None) -> None:
        """Tell the sandbox that every outbound row up to ``through_seq`` is durably
        handled host-side, so it may prune them."""
        with self._file.transaction() as conn:
            conn.execute(
                "UPDATE host_progress SET outbound_handled_through = "
                "max(outbound_handled_through, ?), updated_at = ? WHERE id = 1",
                (through_seq, now if now is not None else now_us()))

    def prune(self, *, finished_before: int) -> int:
        """Delete completed and failed rows whose status settled before the cutoff.
        The seq floor remembers the highest deleted seq so no seq is ever reissued."""
        done = (InboundStatus.COMPLETED.value, InboundStatus.FAILED.value)
        where = "status IN (?, ?) AND status_changed < ?"
        with self._file.transaction() as conn:
            conn.execute(
                "UPDATE seq_floor SET floor = max(floor, coalesce("
                f"(SELECT max(seq) FROM messages_in WHERE {where}), 0)) WHERE id = 1",
                (*done, finished_before))
            return int(conn.execute(f"DELETE FROM messages_in WHERE {where}",
                                    (*done, finished_before)).rowcount)

    def unfinished_count(self, *, now: int | None = None) -> int:
        """Rows the sandbox still owes an answer for, due by ``now``: the host's way
        to tell, after a restart, which sessions must be woken."""
        stamp = now if now is not None else now_us()
        with self._file.reading() as conn:
            (count,) = conn.execute(
                "SELECT count(*) FROM messages_in WHERE engages = 1 AND ("
                "status IN ('queued', 'processing') OR "
                "(status = 'scheduled' AND process_after <= ?))", (stamp,)).fetchone()
        return int(count)

    def statuses(self, ids: Iterable[MessageId]) -> dict[MessageId, InboundStatus]:
        """The host's own view of its rows (for delivery and tests)."""
        wanted = list(ids)
        result: dict[MessageId, InboundStatus] = {}
        with self._file.reading() as conn:
            for chunk_start in range(0, len(wanted), 500):
                chunk = wanted[chunk_start:chunk_start + 500]
                marks = ", ".join("?" * len(chunk))
                for id_, status in conn.execute(
                        f"SELECT id, status FROM messages_in WHERE id IN ({marks})", chunk):
                    result[MessageId(id_)] = InboundStatus(status)
        return result


@attrs.frozen
class OutboundPoll:
    """One consistent view of the sandbox's outbound file."""

    messages: list[r.OutboundMessage]
    rejections: list[r.RowRejection]
    acks: list[r.ProcessingAck]
    container: r.ContainerState | None
    # The highest seq examined (valid or rejected): the caller's next cursor.
    cursor: int
    # Rows whose seq is not even an integer (only a rebuilt, non-STRICT table allows
    # that); they cannot be paged past, so they are counted, not returned.
    unpageable_rows: int


class OutboundReader:
    """Reads a sandbox's outbound.db. Everything it returns is validated; nothing
    the file contains can make it raise anything but a typed QueueError."""

    def __init__(self, db_path: Path, key: RawKey, *, scratch_dir: Path | None = None,
                 max_bytes: int = DEFAULT_MAX_FILE_BYTES, budget_s: float = 5.0) -> None:
        self._reader = SnapshotReader(db_path, key, OUTBOUND_DDL, scratch_dir=scratch_dir,
                                      max_bytes=max_bytes, budget_s=budget_s)

    def verify(self) -> None:
        self._reader.verify()

    def fence(self) -> int | None:
        """The commit fence's counter now (None while it is missing or torn): a caller
        that saw the same even value at its last complete read need not copy again."""
        return self._reader.fence()

    @property
    def last_copy_bytes(self) -> int:
        """Bytes copied by the last snapshot: what the last read cost."""
        return self._reader.last_copy_bytes

    def poll(self, *, after_seq: int = 0, limit: int = 256, ack_limit: int = 4096
             ) -> OutboundPoll:
        return self._reader.read(lambda conn: _poll(conn, after_seq, limit, ack_limit))


def _poll(conn: Connection, after_seq: int, limit: int, ack_limit: int) -> OutboundPoll:
    columns = ", ".join(MESSAGES_OUT_COLUMNS[:-1])
    raw_rows = conn.execute(
        f"SELECT {columns}, CASE WHEN octet_length(content) <= ? THEN content END, "
        "octet_length(content) FROM messages_out "
        "WHERE typeof(seq) = 'integer' AND seq > ? ORDER BY seq LIMIT ?",
        (r.MAX_CONTENT_BYTES, after_seq, limit)).fetchall()
    messages: list[r.OutboundMessage] = []
    rejections: list[r.RowRejection] = []
    cursor = after_seq
    for raw in raw_rows:
        cursor = max(cursor, raw[1])
        result = r.validate_row("messages_out", raw, codec.outbound_message,
                                seq_index=1, id_index=0)
        if isinstance(result, r.RowRejection):
            rejections.append(result)
        else:
            messages.append(result)
    (unpageable,) = conn.execute(
        "SELECT count(*) FROM messages_out WHERE typeof(seq) != 'integer'").fetchone()
    acks: list[r.ProcessingAck] = []
    for raw in conn.execute(
            "SELECT message_id, status, status_changed FROM processing_ack LIMIT ?",
            (ack_limit,)):
        ack = r.validate_row("processing_ack", raw, codec.processing_ack,
                             seq_index=None, id_index=0)
        if isinstance(ack, r.RowRejection):
            rejections.append(ack)
        else:
            acks.append(ack)
    container = None
    state_row = conn.execute(
        "SELECT current_tool, tool_declared_timeout_ms, tool_started_at, heartbeat_at, "
        "updated_at FROM container_state WHERE id = 1").fetchone()
    if state_row is not None:
        state = r.validate_row("container_state", state_row, codec.container_state,
                               seq_index=None, id_index=None)
        if isinstance(state, r.RowRejection):
            rejections.append(state)
        else:
            container = state
    return OutboundPoll(messages, rejections, acks, container, cursor, unpageable)
