"""The floor of the message path: the queue pair, no agent logic.

A round trip, the floor of a reply:
1. the host commits one inbound row;
2. the "sandbox" side (a second process, woken by one byte on a pipe: the doorbell's
   job, minimally) takes a snapshot read of it;
3. optionally, it makes one HTTP round trip to the model proxy over the session's
   unix socket (the mock model), as the agent does once per plain turn;
4. it commits the reply and the completed ack in one transaction;
5. the host takes a snapshot read of the reply.

Also here, for ``queue-floor``: the same round trip in one process, and the cost of
opening a SQLCipher file with a raw key versus a passphrase (PBKDF2).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import sqlcipher3

from ironclaw.contract.cipher import SessionKeys
from ironclaw.contract.enums import AckStatus, MessageKind
from ironclaw.contract.ids import new_message_id
from ironclaw.contract.layout import QueuePaths
from ironclaw.contract.queue import InboundReader, InboundWriter, OutboundReader, OutboundWriter
from ironclaw.contract.rows import NewInboundMessage, NewOutboundMessage

__all__ = ["CrossProcessFloor", "HostSide", "SandboxEcho", "make_queues", "open_cost"]

ECHO = """
import sys
from pathlib import Path
from ironclaw.contract.cipher import SessionKeys
from ironclaw.contract.layout import QueuePaths
from bench.queue_floor import SandboxEcho
keys = SessionKeys.parse_file(sys.stdin.readline().replace("|", "\\n"))
proxy = sys.argv[3] if len(sys.argv) > 3 else None
echo = SandboxEcho(QueuePaths(Path(sys.argv[1]), Path(sys.argv[2])), keys, proxy)
sys.stdout.write("ready\\n"); sys.stdout.flush()
while line := sys.stdin.readline():
    echo.answer_pending(via_proxy=line.startswith("p"))
    sys.stdout.write("\\n"); sys.stdout.flush()
"""


class SandboxEcho:
    """The sandbox's half of a turn, with no agent logic: read, (proxy), reply, ack."""

    def __init__(self, queues: QueuePaths, keys: SessionKeys,
                 proxy_socket: str | None = None) -> None:
        self.reader = InboundReader(queues.inbound_db, keys.inbound)
        self.writer = OutboundWriter(queues.outbound_db, keys.outbound)
        self.after = 0
        self._proxy_socket = proxy_socket
        self._http: object | None = None

    def _model_call(self, text: str) -> str:
        """One POST to the mock model through the proxy socket, on a kept-alive
        connection (as the agent's HTTP client keeps one)."""
        import http.client
        import json
        import socket

        from ironclaw.contract.agent_config import MOCK_MODEL_HOST

        path = self._proxy_socket
        assert path is not None

        class UnixConnection(http.client.HTTPConnection):
            def connect(self) -> None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(str(path))
                self.sock = sock

        if self._http is None:
            self._http = UnixConnection(MOCK_MODEL_HOST)
        conn = self._http
        assert isinstance(conn, http.client.HTTPConnection)
        body = json.dumps({"model": "mock", "max_tokens": 64,
                           "messages": [{"role": "user", "content": text}]})
        conn.request("POST", "/v1/messages", body=body,
                     headers={"content-type": "application/json",
                              "anthropic-version": "2023-06-01"})
        response = conn.getresponse()
        data = json.loads(response.read())
        if response.status != 200:
            raise RuntimeError(f"model proxy answered {response.status}: {data}")
        return str(data["content"][0]["text"])

    def answer_pending(self, *, via_proxy: bool = False) -> int:
        poll = self.reader.poll(after_seq=self.after)
        for message in poll.messages:
            text = self._model_call(message.content) if via_proxy else message.content
            with self.writer.batch() as batch:
                batch.send(NewOutboundMessage(id=new_message_id("out"), kind=MessageKind.CHAT,
                                              content=text, in_reply_to=message.id))
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


def make_queues(root: Path) -> QueuePaths:
    q = QueuePaths(root / "in", root / "out")
    q.inbound_dir.mkdir(parents=True)
    q.outbound_dir.mkdir()
    return q


class CrossProcessFloor:
    """The host half here, the sandbox half in a child process. Blocking calls."""

    def __init__(self, root: Path, proxy_socket: Path | None = None) -> None:
        self.queues = make_queues(root)
        keys = SessionKeys.generate()
        self.host = HostSide(self.queues, keys)
        argv = [sys.executable, "-c", ECHO, str(self.queues.inbound_dir),
                str(self.queues.outbound_dir)]
        if proxy_socket is not None:
            argv.append(str(proxy_socket))
        self.child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      text=True, cwd=Path(__file__).resolve().parents[1])
        assert self.child.stdin and self.child.stdout
        self.child.stdin.write(keys.render_file().replace("\n", "|") + "\n")
        self.child.stdin.flush()
        if self.child.stdout.readline().strip() != "ready":
            raise RuntimeError("the floor's echo process did not start")
        self._n = 0

    def roundtrip(self, *, via_proxy: bool = False) -> float:
        assert self.child.stdin and self.child.stdout
        self._n += 1
        start = time.perf_counter()
        mid = self.host.send(f"ping {self._n}")
        self.child.stdin.write("p\n" if via_proxy else "\n")
        self.child.stdin.flush()
        if self.child.stdout.readline() == "":
            raise RuntimeError(f"the floor's echo process died (rc {self.child.poll()})")
        if not self.host.reply_to(mid):
            raise RuntimeError("the floor's reply was not there")
        return time.perf_counter() - start

    def close(self) -> None:
        if self.child.stdin:
            self.child.stdin.close()
        try:
            self.child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.child.kill()
            self.child.wait()
        if self.child.stdout:
            self.child.stdout.close()


def open_cost(path: Path, pragma: str) -> float:
    start = time.perf_counter()
    conn = sqlcipher3.connect(str(path))
    conn.execute(pragma)
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    conn.close()
    return time.perf_counter() - start
