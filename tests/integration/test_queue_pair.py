"""The encrypted queue pair, on real SQLCipher files and real processes."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlcipher3

from ironclaw.contract.cipher import RawKey, SessionKeys
from ironclaw.contract.enums import AckStatus, InboundStatus, MessageKind
from ironclaw.contract.ids import MessageId, new_message_id
from ironclaw.contract.layout import QueuePaths
from ironclaw.contract.queue import (
    InboundReader,
    InboundWriter,
    OutboundReader,
    OutboundWriter,
    QueueNotReady,
    WrongKeyOrCorrupt,
)
from ironclaw.contract.rows import NewInboundMessage, NewOutboundMessage

SECRET = "the-quick-brown-fox-PLAINTEXT-MARKER"


def chat_in(text: str, **extra: object) -> NewInboundMessage:
    return NewInboundMessage(id=new_message_id(), kind=MessageKind.CHAT, content=text,
                             **extra)  # type: ignore[arg-type]


def chat_out(text: str, **extra: object) -> NewOutboundMessage:
    return NewOutboundMessage(id=new_message_id(), kind=MessageKind.CHAT, content=text,
                              **extra)  # type: ignore[arg-type]


def test_round_trip_host_to_sandbox(queues: QueuePaths, keys: SessionKeys) -> None:
    with InboundWriter(queues.inbound_db, keys.inbound) as writer:
        first = writer.enqueue(chat_in("hello", platform_id="C1", channel_type="local"))
        second = writer.enqueue(chat_in("world", engages=False))
    poll = InboundReader(queues.inbound_db, keys.inbound).poll()
    assert [(m.id, m.seq, m.content, m.engages) for m in poll.messages] == [
        (first.id, 2, "hello", True), (second.id, 4, "world", False)]
    assert poll.messages[0].platform_id == "C1"
    assert poll.rejections == []


def test_round_trip_sandbox_to_host(queues: QueuePaths, keys: SessionKeys) -> None:
    with OutboundWriter(queues.outbound_db, keys.outbound) as writer:
        reply = writer.send(chat_out("hi there", in_reply_to=MessageId("msg_1")))
        with writer.batch() as batch:
            batch.ack([MessageId("msg_1")], AckStatus.COMPLETED)
            batch.set_container_state(current_tool="read_file", tool_declared_timeout_ms=500)
    poll = OutboundReader(queues.outbound_db, keys.outbound).poll()
    assert [(m.id, m.seq, m.content, m.in_reply_to) for m in poll.messages] == [
        (reply.id, 1, "hi there", "msg_1")]
    assert [(a.message_id, a.status) for a in poll.acks] == [("msg_1", AckStatus.COMPLETED)]
    assert poll.container is not None and poll.container.current_tool == "read_file"
    assert poll.cursor == 1


def test_scheduled_rows_wait_until_due(queues: QueuePaths, keys: SessionKeys) -> None:
    now = 1_800_000_000_000_000
    with InboundWriter(queues.inbound_db, keys.inbound) as writer:
        later = writer.enqueue(chat_in("later", process_after=now + 60_000_000), now=now)
    assert later.status is InboundStatus.SCHEDULED
    reader = InboundReader(queues.inbound_db, keys.inbound)
    assert reader.poll(now=now).messages == []
    assert [m.id for m in reader.poll(now=now + 60_000_000).messages] == [later.id]


def test_wrong_key_fails_at_open(queues: QueuePaths, keys: SessionKeys) -> None:
    InboundWriter(queues.inbound_db, keys.inbound).close()
    OutboundWriter(queues.outbound_db, keys.outbound).close()
    wrong = RawKey.generate()
    with pytest.raises(WrongKeyOrCorrupt):
        InboundReader(queues.inbound_db, wrong).verify()
    with pytest.raises(WrongKeyOrCorrupt):
        OutboundReader(queues.outbound_db, wrong).verify()
    with pytest.raises(WrongKeyOrCorrupt):
        InboundWriter(queues.inbound_db, wrong)
    # The plain sqlite3 module cannot read it at all.
    import sqlite3
    with pytest.raises(sqlite3.DatabaseError):
        sqlite3.connect(queues.inbound_db).execute("SELECT * FROM sqlite_master").fetchall()


def test_reader_before_writer_is_not_ready(queues: QueuePaths, keys: SessionKeys) -> None:
    with pytest.raises(QueueNotReady):
        OutboundReader(queues.outbound_db, keys.outbound).poll()


def test_read_only_handles_cannot_write(queues: QueuePaths, keys: SessionKeys) -> None:
    InboundWriter(queues.inbound_db, keys.inbound).close()
    # The open discipline the readers use: mode=ro plus query_only.
    conn = sqlcipher3.connect(f"file:{queues.inbound_db}?mode=ro", uri=True)
    conn.execute(keys.inbound.pragma())
    conn.execute("PRAGMA query_only = ON")
    with pytest.raises(sqlcipher3.OperationalError, match="readonly"):
        conn.execute("INSERT INTO messages_in (id, seq, kind, timestamp, status, "
                     "status_changed, content) VALUES ('x', 2, 'chat', 1, 'queued', 1, 'y')")
    conn.close()
    # And the sandbox-side classes have no way to write inbound at all, nor the host
    # side a way to write outbound.
    write_verbs = {"enqueue", "enqueue_many", "set_destinations", "set_routing",
                   "apply_acks", "record_outbound_handled", "prune", "send", "ack",
                   "batch", "put_state"}
    assert not write_verbs & set(dir(InboundReader))
    assert not write_verbs & set(dir(OutboundReader))
    assert not {"send", "ack", "batch", "put_state"} & set(dir(InboundWriter))


def test_no_plaintext_on_disk(queues: QueuePaths, keys: SessionKeys) -> None:
    with InboundWriter(queues.inbound_db, keys.inbound) as writer:
        for _ in range(20):
            writer.enqueue(chat_in(SECRET))
    with OutboundWriter(queues.outbound_db, keys.outbound) as out:
        for _ in range(20):
            out.send(chat_out(SECRET))
        out.put_state("history", SECRET)
    for db in (queues.inbound_db, queues.outbound_db):
        raw = db.read_bytes()
        assert len(raw) > 4096
        assert SECRET.encode() not in raw
        assert b"SQLite format 3" not in raw
        assert b"messages_" not in raw  # even the schema is encrypted


def _parallel(count: int, make: object) -> list[int]:
    seqs: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            seq = make()  # type: ignore[operator]
            with lock:
                seqs.append(seq)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return seqs


def test_seq_parity_under_concurrent_writers(queues: QueuePaths, keys: SessionKeys) -> None:
    """24 writer instances (each its own connection and fence handle) at once."""
    InboundWriter(queues.inbound_db, keys.inbound).close()
    OutboundWriter(queues.outbound_db, keys.outbound).close()

    def host_write() -> int:
        with InboundWriter(queues.inbound_db, keys.inbound) as w:
            return w.enqueue(chat_in("x")).seq

    def sandbox_write() -> int:
        with OutboundWriter(queues.outbound_db, keys.outbound) as w:
            return w.send(chat_out("y")).seq

    host = _parallel(24, host_write)
    sandbox = _parallel(24, sandbox_write)
    assert len(set(host)) == 24 and all(s % 2 == 0 for s in host)
    assert len(set(sandbox)) == 24 and all(s % 2 == 1 for s in sandbox)
    assert sorted(host) == list(range(2, 50, 2))
    assert sorted(sandbox) == list(range(1, 49, 2))


def test_seq_parity_across_processes(queues: QueuePaths, keys: SessionKeys, spawn) -> None:
    """24 writer processes per side, all committing to one file at once."""
    InboundWriter(queues.inbound_db, keys.inbound).close()
    OutboundWriter(queues.outbound_db, keys.outbound).close()
    for direction, db, key in (("inbound", queues.inbound_db, keys.inbound),
                               ("outbound", queues.outbound_db, keys.outbound)):
        workers = [spawn("write", direction, str(db), key.hex(), "1", "", f"w{i}-")
                   for i in range(24)]
        for w in workers:
            w.finish()
    inbound = InboundReader(queues.inbound_db, keys.inbound).poll(limit=100).messages
    outbound = OutboundReader(queues.outbound_db, keys.outbound).poll(limit=100).messages
    assert sorted(m.seq for m in inbound) == list(range(2, 50, 2))
    assert sorted(m.seq for m in outbound) == list(range(1, 49, 2))


def test_seq_is_not_reissued_after_pruning(queues: QueuePaths, keys: SessionKeys) -> None:
    now = 1_800_000_000_000_000
    with InboundWriter(queues.inbound_db, keys.inbound) as w:
        rows = w.enqueue_many([chat_in(str(i)) for i in range(3)], now=now)
        w.apply_acks([_ack(m.id, AckStatus.COMPLETED, now) for m in rows], now=now)
        assert w.prune(finished_before=now + 1) == 3
        assert w.enqueue(chat_in("after"), now=now).seq == 8
    with OutboundWriter(queues.outbound_db, keys.outbound) as o:
        sent = [o.send(chat_out(str(i))) for i in range(3)]
        o.prune(handled_through=sent[-1].seq, sent_before=now * 2,
                live_inbound_ids=frozenset())
        assert o.send(chat_out("after")).seq == 7


def _ack(mid: MessageId, status: AckStatus, at: int):
    from ironclaw.contract.rows import ProcessingAck
    return ProcessingAck(message_id=mid, status=status, status_changed=at)


def test_acks_advance_status_forward_only(queues: QueuePaths, keys: SessionKeys) -> None:
    now = 1_800_000_000_000_000
    with InboundWriter(queues.inbound_db, keys.inbound) as w:
        a, b = w.enqueue_many([chat_in("a"), chat_in("b")], now=now)
        assert w.apply_acks([_ack(a.id, AckStatus.PROCESSING, now)]) == 1
        assert w.apply_acks([_ack(a.id, AckStatus.COMPLETED, now)]) == 1
        # A replayed, stale "processing" ack never moves a finished row back.
        assert w.apply_acks([_ack(a.id, AckStatus.PROCESSING, now)]) == 0
        assert w.statuses([a.id, b.id]) == {a.id: InboundStatus.COMPLETED,
                                           b.id: InboundStatus.QUEUED}
    # The sandbox no longer sees the completed row as pending.
    pending = InboundReader(queues.inbound_db, keys.inbound).poll(now=now).messages
    assert [m.id for m in pending] == [b.id]


def test_full_ack_and_prune_cycle_keeps_both_files_bounded(
        queues: QueuePaths, keys: SessionKeys) -> None:
    """Host writes, sandbox answers and acks, host advances and prunes, sandbox prunes:
    after many rounds neither file holds the finished rows."""
    t0 = 1_800_000_000_000_000
    inbound = InboundWriter(queues.inbound_db, keys.inbound)
    outbound = OutboundWriter(queues.outbound_db, keys.outbound)
    in_reader = InboundReader(queues.inbound_db, keys.inbound)
    out_reader = OutboundReader(queues.outbound_db, keys.outbound)
    cursor = 0
    retention = 1_000_000
    for round_ in range(30):
        now = t0 + round_ * 10 * retention
        inbound.enqueue(chat_in(f"q{round_}"), now=now)
        for message in in_reader.poll(now=now).messages:
            with outbound.batch(now=now) as batch:
                batch.send(chat_out(f"a:{message.content}", in_reply_to=message.id))
                batch.ack([message.id], AckStatus.COMPLETED)
        poll = out_reader.poll(after_seq=cursor)
        cursor = poll.cursor
        inbound.apply_acks(poll.acks, now=now)
        inbound.record_outbound_handled(cursor, now=now)
        inbound.prune(finished_before=now - retention)
        view = in_reader.poll(now=now, with_live_ids=True)
        assert view.live_ids is not None
        outbound.prune(handled_through=view.outbound_handled_through,
                       sent_before=now - retention, live_inbound_ids=view.live_ids)
    final_in = in_reader.poll(now=now + 1, with_live_ids=True)
    assert final_in.live_ids is not None
    final_out = out_reader.poll()
    assert len(final_in.live_ids) <= 2  # only rows inside the retention window remain
    assert len(final_out.messages) <= 2
    assert len(final_out.acks) <= 2
    inbound.close()
    outbound.close()


def test_live_poll_across_processes(queues: QueuePaths, keys: SessionKeys, spawn,
                                    tmp_path: Path) -> None:
    """A row committed by a writer process after a reader process began polling is
    seen by that reader's next read."""
    InboundWriter(queues.inbound_db, keys.inbound).close()
    reader = spawn("read", "inbound", str(queues.inbound_db), keys.inbound.hex(), "1", "60")
    reader.wait_for("polling")
    writer = spawn("write", "inbound", str(queues.inbound_db), keys.inbound.hex(), "1", "",
                   "late-")
    writer.finish()
    seen = reader.wait_for("seen")["seen"]
    reader.finish()
    assert [row[0] for row in seen] == ["late-0"]  # type: ignore[index]


def test_writer_reads_skip_the_fence_unless_a_journal_is_present(
        queues: QueuePaths, keys: SessionKeys) -> None:
    """A writer's own reads need no window (nothing changes), except when a crashed
    writer left a hot journal: then the read may roll it back, so it takes a window."""
    from ironclaw.contract.queue.fence import read_fence
    from ironclaw.contract.queue.files import fence_path_for
    fence = fence_path_for(queues.inbound_db)
    with InboundWriter(queues.inbound_db, keys.inbound) as writer:
        row = writer.enqueue(chat_in("x"))
        before = read_fence(fence)
        assert writer.statuses([row.id]) == {row.id: InboundStatus.QUEUED}
        assert writer.unfinished_count() == 1
        assert read_fence(fence) == before  # no window was opened
        journal = queues.inbound_db.with_name("inbound.db-journal")
        journal.write_bytes(b"")  # an empty journal is not hot; SQLite ignores it
        assert writer.statuses([row.id]) == {row.id: InboundStatus.QUEUED}
        assert read_fence(fence) == before + 2  # one full window
        journal.unlink(missing_ok=True)
