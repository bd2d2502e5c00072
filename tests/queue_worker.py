"""A separate OS process for queue tests: ``python tests/queue_worker.py ROLE ...``.

Roles write or read one queue file and report on stdout as JSON lines, so a test
can drive two real processes against one real SQLCipher file.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ironclaw.contract.cipher import RawKey
from ironclaw.contract.enums import MessageKind
from ironclaw.contract.queue import (
    InboundReader,
    InboundWriter,
    OutboundReader,
    OutboundWriter,
    QueueNotReady,
)
from ironclaw.contract.rows import NewInboundMessage, NewOutboundMessage


def _emit(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def write(direction: str, db: Path, key: RawKey, count: int, vfs: str | None,
          prefix: str) -> None:
    """Commit ``count`` rows, one per transaction, as fast as possible."""
    if direction == "inbound":
        iw = InboundWriter(db, key, vfs=vfs)
        _emit(ready=True)
        for i in range(count):
            iw.enqueue(NewInboundMessage(id=f"{prefix}{i}", kind=MessageKind.CHAT,
                                         content=f"payload {i} " + "x" * (i % 300)))
        iw.close()
    else:
        ow = OutboundWriter(db, key, vfs=vfs)
        _emit(ready=True)
        for i in range(count):
            ow.send(NewOutboundMessage(id=f"{prefix}{i}", kind=MessageKind.CHAT,
                                       content=f"payload {i} " + "x" * (i % 300)))
        ow.close()
    _emit(done=count)


def read(direction: str, db: Path, key: RawKey, expect: int, timeout: float) -> None:
    """Poll with a cursor until ``expect`` rows were seen; report every row once."""
    seen: list[tuple[str, int, str]] = []
    after = 0
    deadline = time.monotonic() + timeout
    polls = 0
    _emit(polling=True)
    while len(seen) < expect and time.monotonic() < deadline:
        try:
            if direction == "inbound":
                poll = InboundReader(db, key).poll(after_seq=after, limit=1000)
                batch = poll.messages
                rejected = poll.rejections
            else:
                out = OutboundReader(db, key).poll(after_seq=after, limit=1000)
                batch = out.messages
                rejected = out.rejections
        except QueueNotReady:
            time.sleep(0.001)
            continue
        polls += 1
        if rejected:
            _emit(rejected=[r.reason for r in rejected])
        for message in batch:
            seen.append((message.id, message.seq, message.content))
            after = max(after, message.seq)
    _emit(seen=seen, polls=polls)


def main() -> None:
    role, direction, db, key_hex, *rest = sys.argv[1:]
    key = RawKey.from_hex(key_hex)
    if role == "write":
        count, vfs, prefix = int(rest[0]), rest[1] or None, rest[2]
        write(direction, Path(db), key, count, vfs, prefix)
    elif role == "read":
        read(direction, Path(db), key, int(rest[0]), float(rest[1]))
    else:
        raise SystemExit(f"unknown role {role}")


if __name__ == "__main__":
    main()
