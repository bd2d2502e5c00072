"""The floor of the message path: the queue pair alone, no agent, no model.

Three measurements, interleaved round by round so machine drift hits all alike:
- in-process round trip: host enqueues, sandbox reads (snapshot), sandbox commits a
  reply and its ack in one transaction, host reads the reply;
- cross-process round trip: the same, with the sandbox side in a second process
  woken by one byte on a pipe (the doorbell's job, minimally);
- cost of opening a SQLCipher file with a raw key versus a passphrase (PBKDF2).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlcipher3

from ironclaw.contract.cipher import SessionKeys
from ironclaw.contract.enums import AckStatus, MessageKind
from ironclaw.contract.ids import new_message_id
from ironclaw.contract.layout import QueuePaths
from ironclaw.contract.queue import InboundReader, InboundWriter, OutboundReader, OutboundWriter
from ironclaw.contract.rows import NewInboundMessage, NewOutboundMessage

from .stats import summarise

ECHO = """
import sys
from pathlib import Path
from ironclaw.contract.cipher import SessionKeys
from bench.queue_floor import SandboxEcho
keys = SessionKeys.parse_file(sys.stdin.readline().replace("|", "\\n"))
echo = SandboxEcho(QueuePaths(Path(sys.argv[1]), Path(sys.argv[2])), keys)
sys.stdout.write("ready\\n"); sys.stdout.flush()
while sys.stdin.readline():
    echo.answer_pending()
    sys.stdout.write("\\n"); sys.stdout.flush()
"""


class SandboxEcho:
    """The sandbox's half of a turn, with no agent logic: read, reply, ack."""

    def __init__(self, queues: QueuePaths, keys: SessionKeys) -> None:
        self.reader = InboundReader(queues.inbound_db, keys.inbound)
        self.writer = OutboundWriter(queues.outbound_db, keys.outbound)
        self.after = 0

    def answer_pending(self) -> int:
        poll = self.reader.poll(after_seq=self.after)
        for message in poll.messages:
            with self.writer.batch() as batch:
                batch.send(NewOutboundMessage(id=new_message_id("out"), kind=MessageKind.CHAT,
                                              content=message.content,
                                              in_reply_to=message.id))
                batch.ack([message.id], AckStatus.COMPLETED)
            self.after = message.seq
        return len(poll.messages)


class HostSide:
    def __init__(self, queues: QueuePaths, keys: SessionKeys) -> None:
        self.writer = InboundWriter(queues.inbound_db, keys.inbound)
        self.reader: OutboundReader | None = None
        self.queues, self.keys = queues, keys
        self.cursor = 0

    def send(self, text: str) -> str:
        return self.writer.enqueue(NewInboundMessage(
            id=new_message_id("in"), kind=MessageKind.CHAT, content=text)).id

    def reply_to(self, message_id: str) -> bool:
        if self.reader is None:
            self.reader = OutboundReader(self.queues.outbound_db, self.keys.outbound)
        poll = self.reader.poll(after_seq=self.cursor)
        self.cursor = poll.cursor
        return any(m.in_reply_to == message_id for m in poll.messages)


def _queues(root: Path) -> QueuePaths:
    q = QueuePaths(root / "in", root / "out")
    q.inbound_dir.mkdir(parents=True)
    q.outbound_dir.mkdir()
    return q


def open_cost(path: Path, pragma: str) -> float:
    start = time.perf_counter()
    conn = sqlcipher3.connect(str(path))
    conn.execute(pragma)
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    conn.close()
    return time.perf_counter() - start


def run(iterations: int = 200, warmup: int = 20) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        keys = SessionKeys.generate()
        local = _queues(root / "local")
        host, echo = HostSide(local, keys), SandboxEcho(local, keys)
        remote_q = _queues(root / "remote")
        remote_keys = SessionKeys.generate()
        remote_host = HostSide(remote_q, remote_keys)
        child = subprocess.Popen(
            [sys.executable, "-c", "from ironclaw.contract.layout import QueuePaths\n" + ECHO,
             str(remote_q.inbound_dir), str(remote_q.outbound_dir)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            cwd=Path(__file__).resolve().parents[1])
        assert child.stdin and child.stdout
        child.stdin.write(remote_keys.render_file().replace("\n", "|") + "\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "ready"

        raw_db, pass_db = root / "raw.db", root / "pass.db"
        for db, pragma in ((raw_db, keys.inbound.pragma()),
                           (pass_db, "PRAGMA key = 'correct horse battery staple'")):
            conn = sqlcipher3.connect(str(db))
            conn.execute(pragma)
            conn.execute("CREATE TABLE t (x)")
            conn.commit()
            conn.close()

        samples: dict[str, list[float]] = {k: [] for k in (
            "roundtrip_in_process", "roundtrip_cross_process", "open_raw_key",
            "open_passphrase")}
        for i in range(warmup + iterations):
            start = time.perf_counter()
            mid = host.send(f"ping {i}")
            echo.answer_pending()
            assert host.reply_to(mid)
            local_s = time.perf_counter() - start

            start = time.perf_counter()
            mid = remote_host.send(f"ping {i}")
            child.stdin.write("\n")
            child.stdin.flush()
            child.stdout.readline()
            assert remote_host.reply_to(mid)
            remote_s = time.perf_counter() - start

            raw_s = open_cost(raw_db, keys.inbound.pragma())
            pass_s = open_cost(pass_db, "PRAGMA key = 'correct horse battery staple'") if (
                i % 10 == 0) else None  # ~200 ms each: sample every tenth round
            if i >= warmup:
                samples["roundtrip_in_process"].append(local_s)
                samples["roundtrip_cross_process"].append(remote_s)
                samples["open_raw_key"].append(raw_s)
                if pass_s is not None:
                    samples["open_passphrase"].append(pass_s)
        child.stdin.close()
        child.wait(timeout=30)
        child.stdout.close()
    summary = {name: summarise(values) for name, values in samples.items() if values}
    ratios = {
        "cross_over_in_process": summary["roundtrip_cross_process"]["median_ms"]
        / summary["roundtrip_in_process"]["median_ms"],
        "passphrase_over_raw_key": summary["open_passphrase"]["median_ms"]
        / summary["open_raw_key"]["median_ms"],
    }
    return {"iterations": iterations, "warmup": warmup, "results": summary, "ratios": ratios}
