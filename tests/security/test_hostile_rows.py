"""Hostile bytes from a compromised sandbox never crash the host's reader.

The sandbox holds its outbound key, so it can store anything in any column: wrong
types, invalid UTF-8, NUL bytes, oversized content, unknown kinds, path-like ids. A
rebuilt table is refused by the schema check (tests/security/test_hostile_schema.py),
so these tests go further: rows written through a table without STRICT, then the
schema text put back to the contract's own (``writable_schema``), so the reader sees
exactly the contract's schema over rows STRICT would never have let in. The reader
must answer with typed rows and typed rejections; only a file-level problem may
raise, and then a QueueError.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import sqlcipher3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ironclaw.contract.actions import MalformedAction, parse_system_action
from ironclaw.contract.cipher import RawKey
from ironclaw.contract.queue import OutboundReader, OutboundWriter, QueueSchemaError
from ironclaw.contract.queue.fence import WriterFence
from ironclaw.contract.queue.files import fence_path_for
from ironclaw.contract.queue.snapshot_db import expected_schema
from ironclaw.contract.rows import MAX_CONTENT_BYTES, OutboundMessage, RowRejection
from ironclaw.contract.schema import OUTBOUND_DDL

# Same constraints, hence the same automatic indexes, as the contract's table; no types.
HOSTILE_SQL = ("CREATE TABLE messages_out (id PRIMARY KEY, seq UNIQUE, in_reply_to, "
               "timestamp, deliver_after, recurrence, kind, platform_id, channel_type, "
               "thread_id, destination, content)")
CONTRACT_SQL = next(row[3] or b"" for row in expected_schema(OUTBOUND_DDL)
                    if row[1] == b"messages_out")

any_value = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True),
    st.text(max_size=40),
    st.binary(max_size=40),
    st.sampled_from(["chat", "system", "task", "webhook", "../../etc/passwd", "\x00",
                     "msg_ok", 1, 3, 1_800_000_000_000_000]),
)
# Mostly-plausible rows with one or two fields bent, so the valid path is exercised too.
plausible_row = st.fixed_dictionaries({
    "id": st.one_of(st.just("msg_a"), st.text(max_size=20), st.binary(max_size=10)),
    "seq": st.one_of(st.integers(min_value=-5, max_value=10_000), st.text(max_size=3)),
    "timestamp": st.one_of(st.just(1_800_000_000_000_000), any_value),
    "kind": st.one_of(st.sampled_from(["chat", "system", "bogus"]), any_value),
    "content": st.one_of(st.text(max_size=50), st.binary(max_size=50), any_value),
    "other": any_value,
})


class HostileWriter:
    """Writes outbound rows the way a compromised sandbox could, fence and all."""

    def __init__(self, root: Path) -> None:
        self.db = root / "outbound.db"
        self.key = RawKey.generate()
        OutboundWriter(self.db, self.key).close()
        self.fence = WriterFence(fence_path_for(self.db))
        self.conn = sqlcipher3.connect(str(self.db), isolation_level=None)
        self.conn.execute(self.key.pragma())

    def _set_table_sql(self, sql: bytes | str) -> None:
        sql = sql.decode() if isinstance(sql, bytes) else sql
        (version,) = self.conn.execute("PRAGMA schema_version").fetchone()
        self.conn.execute("PRAGMA writable_schema = ON")
        self.conn.execute("UPDATE sqlite_master SET sql = ? WHERE name = 'messages_out'",
                          (sql,))
        self.conn.execute(f"PRAGMA schema_version = {version + 1}")
        self.conn.execute("PRAGMA writable_schema = OFF")

    def replace_rows(self, rows: list[tuple[object, ...]], *, invalid_utf8: bool) -> int:
        """Store ``rows`` (a duplicate id or seq is skipped); returns how many stored."""
        with self.fence.writing():
            self._set_table_sql(HOSTILE_SQL)
            self.conn.execute("DELETE FROM messages_out")
            for row in rows:
                marks = ", ".join(
                    "CAST(? AS TEXT)" if invalid_utf8 and isinstance(v, bytes) else "?"
                    for v in row)
                self.conn.execute(f"INSERT OR IGNORE INTO messages_out VALUES ({marks})",
                                  row)
            self._set_table_sql(CONTRACT_SQL)
            self.stored = self.conn.execute("SELECT seq FROM messages_out").fetchall()
        return len(self.stored)

    def close(self) -> None:
        self.conn.close()
        self.fence.close()


def _row(fields: dict[str, object]) -> tuple[object, ...]:
    o = fields["other"]
    return (fields["id"], fields["seq"], o, fields["timestamp"], o, o, fields["kind"], o, o,
            o, o, fields["content"])


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(plausible_row, max_size=6), invalid_utf8=st.booleans())
def test_reader_is_total_over_hostile_rows(rows: list[dict[str, object]],
                                           invalid_utf8: bool) -> None:
    with tempfile.TemporaryDirectory() as root:
        hostile = HostileWriter(Path(root))
        try:
            hostile.replace_rows([_row(r) for r in rows], invalid_utf8=invalid_utf8)
            poll = OutboundReader(hostile.db, hostile.key).poll()
        finally:
            hostile.close()
    seqs = [seq for (seq,) in hostile.stored]
    pageable = [seq for seq in seqs if isinstance(seq, int) and seq > 0]
    assert len(poll.messages) + len(
        [x for x in poll.rejections if x.table == "messages_out"]) == len(pageable)
    assert poll.unpageable_rows == sum(1 for seq in seqs if not isinstance(seq, int))
    for message in poll.messages:
        assert isinstance(message, OutboundMessage)
        assert message.seq % 2 == 1
        assert "\x00" not in message.content
    for rejection in poll.rejections:
        assert isinstance(rejection, RowRejection) and rejection.reason


def test_oversized_content_is_rejected_without_decoding(tmp_path: Path) -> None:
    hostile = HostileWriter(tmp_path)
    huge = "y" * (MAX_CONTENT_BYTES + 1)
    hostile.replace_rows([("msg_big", 1, None, 1_800_000_000_000_000, None, None, "chat",
                           None, None, None, None, huge),
                          ("msg_ok", 3, None, 1_800_000_000_000_000, None, None, "chat",
                           None, None, None, None, "fine")], invalid_utf8=False)
    hostile.close()
    poll = OutboundReader(hostile.db, hostile.key).poll()
    assert [m.id for m in poll.messages] == ["msg_ok"]
    assert len(poll.rejections) == 1
    assert poll.rejections[0].row_id == "msg_big" and "cap" in poll.rejections[0].reason
    assert poll.cursor == 3  # the host pages past the bad row instead of sticking on it


def test_specific_hostile_values_become_typed_rejections(tmp_path: Path) -> None:
    hostile = HostileWriter(tmp_path)
    ts = 1_800_000_000_000_000
    base = ["msg_x", 1, None, ts, None, None, "chat", None, None, None, None, "hello"]
    cases = {
        "unknown kind": {6: "exfiltrate"},
        "NUL in content": {11: "a\x00b"},
        "invalid UTF-8": {11: b"\xff\xfe\xfd"},
        "path-like id": {0: "../../etc/passwd"},
        "even seq": {1: 2},
        "float timestamp": {3: 1.5},
        "implausible timestamp": {3: 12},
    }
    rows = []
    for index, change in enumerate(cases.values()):
        row = list(base)
        row[0] = f"msg_{index}"
        row[1] = 2 * index + 1
        for position, value in change.items():
            row[position] = value
        rows.append(tuple(row))
    hostile.replace_rows(rows, invalid_utf8=True)
    hostile.close()
    poll = OutboundReader(hostile.db, hostile.key).poll()
    assert poll.messages == []
    assert len(poll.rejections) == len(cases)


def test_sabotaged_schema_is_a_typed_error(tmp_path: Path) -> None:
    hostile = HostileWriter(tmp_path)
    with hostile.fence.writing():
        hostile.conn.execute("DROP TABLE processing_ack")
    hostile.close()
    with pytest.raises(QueueSchemaError):
        OutboundReader(hostile.db, hostile.key).poll()


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300),
                 st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                              lambda inner: st.lists(inner, max_size=4)
                              | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                              max_leaves=20).map(lambda v: __import__("json").dumps(v))))
def test_system_action_parser_is_total(content: str | bytes) -> None:
    result = parse_system_action(content)
    assert result is not None
    if isinstance(result, MalformedAction):
        assert result.reason


def test_system_action_parser_survives_pathological_nesting() -> None:
    assert isinstance(parse_system_action("[" * 200_000), MalformedAction)
    assert isinstance(parse_system_action('{"action":' * 50_000), MalformedAction)
    big = '{"action":"persona","payload":"' + "z" * (MAX_CONTENT_BYTES + 10) + '"}'
    assert isinstance(parse_system_action(big), MalformedAction)
