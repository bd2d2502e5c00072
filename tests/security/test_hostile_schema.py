"""A sandbox-authored schema is refused before any query runs on it.

The agent holds its outbound key, so it writes the schema: a generated column (the
host built a 300 MB string on every poll), a trigger, a view, a virtual table under a
contract table's name, extra tables or indexes. The reader compares ``sqlite_master``
with the contract's DDL byte for byte and refuses any difference, and its connection
is limited and defensive even for what the comparison lets through.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlcipher3

from ironclaw.contract.cipher import RawKey
from ironclaw.contract.queue import (
    OutboundReader,
    OutboundWriter,
    QueueSchemaError,
    QueueTooLarge,
)
from ironclaw.contract.queue.fence import WriterFence
from ironclaw.contract.queue.files import SnapshotReader, fence_path_for
from ironclaw.contract.queue.snapshot_db import READER_LIMITS, expected_schema
from ironclaw.contract.schema import OUTBOUND_DDL

MESSAGES_OUT_LOOSE = (
    "id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, in_reply_to TEXT, "
    "timestamp INTEGER NOT NULL, deliver_after INTEGER, recurrence TEXT, "
    "kind TEXT NOT NULL, platform_id TEXT, channel_type TEXT, thread_id TEXT, "
    "destination TEXT")
ROW = ("INSERT INTO messages_out (id, seq, timestamp, kind) "
       "VALUES ('msg_a', 1, 1800000000000000, 'chat');")

ATTACKS = {
    # The host selected content and computed octet_length(content): 300 MB per poll.
    "generated column": (
        "DROP TABLE messages_out; "
        f"CREATE TABLE messages_out ({MESSAGES_OUT_LOOSE}, content TEXT GENERATED ALWAYS "
        "AS (printf('%.*c', 300000000, 'x'))); " + ROW),
    "trigger": ("CREATE TRIGGER ack_spy AFTER INSERT ON processing_ack BEGIN "
                "DELETE FROM seq_floor; END;"),
    "view": ("CREATE VIEW big AS SELECT printf('%.*c', 300000000, 'x') AS x;"),
    "virtual table named messages_out": (
        "DROP TABLE messages_out; CREATE VIRTUAL TABLE messages_out USING fts5(id, seq, "
        "in_reply_to, timestamp, deliver_after, recurrence, kind, platform_id, "
        "channel_type, thread_id, destination, content);"),
    "extra table": "CREATE TABLE exfil (x TEXT);",
    "extra index": "CREATE INDEX by_kind ON messages_out (kind);",
    "dropped table": "DROP TABLE processing_ack;",
    "table without STRICT": (
        "DROP TABLE messages_out; "
        f"CREATE TABLE messages_out ({MESSAGES_OUT_LOOSE}, content TEXT NOT NULL);"),
    "ANALYZE statistics": "ANALYZE;",
}


def hostile_file(root: Path, script: str) -> tuple[Path, RawKey]:
    """An outbound file created honestly, then altered by its writer inside a fence
    window, as a compromised agent with its key can."""
    db, key = root / "outbound.db", RawKey.generate()
    OutboundWriter(db, key).close()
    fence = WriterFence(fence_path_for(db))
    conn = sqlcipher3.connect(str(db), isolation_level=None)
    try:
        conn.execute(key.pragma())
        with fence.writing():
            conn.executescript(script)
    finally:
        conn.close()
        fence.close()
    return db, key


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_every_schema_deviation_is_refused_before_any_query(tmp_path: Path,
                                                            attack: str) -> None:
    db, key = hostile_file(tmp_path, ATTACKS[attack])
    ran: list[str] = []
    reader = SnapshotReader(db, key, OUTBOUND_DDL)
    with pytest.raises(QueueSchemaError):
        reader.read(lambda conn: ran.append("query"))
    assert ran == []  # refused before the caller's query ran at all
    with pytest.raises(QueueSchemaError):
        OutboundReader(db, key).poll()


def test_an_honest_file_has_exactly_the_contract_schema(tmp_path: Path) -> None:
    db, key = tmp_path / "outbound.db", RawKey.generate()
    with OutboundWriter(db, key) as writer:
        writer.put_state("k", "v")
    found = SnapshotReader(db, key, OUTBOUND_DDL).read(lambda conn: conn.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
    ).fetchall())
    assert tuple(map(tuple, found)) == expected_schema(OUTBOUND_DDL)
    assert {row[1] for row in expected_schema(OUTBOUND_DDL)} >= {
        b"messages_out", b"processing_ack", b"session_state", b"container_state",
        b"seq_floor"}


def test_the_reader_connection_is_limited_and_defensive(tmp_path: Path) -> None:
    db, key = tmp_path / "outbound.db", RawKey.generate()
    OutboundWriter(db, key).close()
    reader = SnapshotReader(db, key, OUTBOUND_DDL)
    too_long = READER_LIMITS[0] + 1
    with pytest.raises(QueueTooLarge):
        reader.read(lambda conn: conn.execute(
            f"SELECT length(printf('%.*c', {too_long}, 'x'))").fetchone())

    def write_attempts(conn: sqlcipher3.Connection) -> list[str]:
        refused = []
        for statement in ("PRAGMA writable_schema = ON",
                          "CREATE TEMP VIEW v AS SELECT 1",
                          "ATTACH DATABASE ':memory:' AS other"):
            try:
                conn.execute(statement)
                if statement.startswith("CREATE TEMP VIEW"):
                    conn.execute("SELECT * FROM v").fetchall()
            except sqlcipher3.DatabaseError:
                refused.append(statement)
        return refused

    refused = reader.read(write_attempts)
    assert "CREATE TEMP VIEW v AS SELECT 1" in refused  # views are off
    assert "ATTACH DATABASE ':memory:' AS other" in refused  # no attached databases
    assert reader.read(lambda conn: conn.execute(
        "PRAGMA trusted_schema").fetchone()[0]) == 0

    def writable_schema_after_asking(conn: sqlcipher3.Connection) -> int:
        conn.execute("PRAGMA writable_schema = ON")
        return int(conn.execute("PRAGMA writable_schema").fetchone()[0])

    assert reader.read(writable_schema_after_asking) == 0  # defensive mode ignores it
