"""``ironclaw-controlplane``: the control-plane daemon's entry point.

The daemon itself (actor tree, sessions, API) is not built yet. Until it is, ``--dev``
runs a self-check of what exists: one message through a session's encrypted queue
pair under the state directory, both directions, with the timings.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from ironclaw import __version__
from ironclaw.contract.cipher import SessionKeys
from ironclaw.contract.enums import AckStatus, MessageKind
from ironclaw.contract.ids import new_message_id, new_session_id
from ironclaw.contract.layout import SessionLayout
from ironclaw.contract.queue import InboundReader, InboundWriter, OutboundReader, OutboundWriter
from ironclaw.contract.rows import NewInboundMessage, NewOutboundMessage

RUNTIMES = ("auto", "runsc", "runc", "crun", "process")


def strongest_runtime() -> str:
    for name in ("runsc", "runc", "crun"):
        if shutil.which(name):
            return name
    return "process"


def queue_self_check(state_dir: Path) -> float:
    """Round trip one message; returns milliseconds. Raises on any failure."""
    layout = SessionLayout.under(state_dir, new_session_id())
    queues = layout.create()
    keys = SessionKeys.generate()
    start = time.perf_counter()
    with InboundWriter(queues.inbound_db, keys.inbound) as host:
        sent = host.enqueue(NewInboundMessage(id=new_message_id(), kind=MessageKind.CHAT,
                                              content="self-check"))
        (received,) = InboundReader(queues.inbound_db, keys.inbound).poll().messages
        with OutboundWriter(queues.outbound_db, keys.outbound) as sandbox, \
                sandbox.batch() as batch:
            batch.send(NewOutboundMessage(id=new_message_id(), kind=MessageKind.CHAT,
                                          content=received.content.upper(),
                                          in_reply_to=received.id))
            batch.ack([received.id], AckStatus.COMPLETED)
        poll = OutboundReader(queues.outbound_db, keys.outbound).poll()
        host.apply_acks(poll.acks)
    elapsed = (time.perf_counter() - start) * 1000
    (reply,) = poll.messages
    if reply.in_reply_to != sent.id or reply.content != "SELF-CHECK":
        raise RuntimeError("queue self-check returned the wrong reply")
    shutil.rmtree(layout.root)
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ironclaw-controlplane", description=__doc__)
    parser.add_argument("--dev", action="store_true",
                        help="development mode: loopback, mock model, demo agent")
    parser.add_argument("--state-dir", type=Path, default=Path("state"))
    parser.add_argument("--runtime", choices=RUNTIMES, default="auto")
    parser.add_argument("--version", action="version", version=__version__)
    args = parser.parse_args(argv)
    if not args.dev:
        parser.error("only --dev exists until the daemon is built")
    runtime = strongest_runtime() if args.runtime == "auto" else args.runtime
    args.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    print(f"ironclaw {__version__}: dev mode, state dir {args.state_dir.resolve()}")
    print(f"sandbox runtime that would be used: {runtime}")
    elapsed = queue_self_check(args.state_dir)
    print(f"queue self-check: one message through the encrypted queue pair and back "
          f"in {elapsed:.1f} ms")
    print("The control-plane daemon (sessions, agent, API) is not built yet; this build "
          "holds the contract and the queue pair. See README.md.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
