"""The tail hands a reply to delivery before it applies the acks read with it, and
applies acks late: the acks of several polls in one call, and the last ones when the
tail stops (sessions/tail.py)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import trio

from ironclaw.contract.cipher import RawKey
from ironclaw.contract.enums import AckStatus, MessageKind
from ironclaw.contract.ids import MessageId, new_message_id
from ironclaw.contract.layout import QueuePaths
from ironclaw.contract.queue import OutboundWriter
from ironclaw.contract.rows import NewOutboundMessage, ProcessingAck
from ironclaw.host.mailboxes import TailBatch
from ironclaw.host.sessions.tail import OutboundTail


def reply_and_ack(writer: OutboundWriter, text: str) -> MessageId:
    row = new_message_id("in")
    with writer.batch() as batch:
        batch.send(NewOutboundMessage(id=new_message_id("m"), kind=MessageKind.CHAT,
                                      content=text, in_reply_to=row))
        batch.ack([row], AckStatus.COMPLETED)
    return row


async def test_replies_go_first_and_acks_are_applied_together_later(tmp_path: Path) -> None:
    queues = QueuePaths(tmp_path / "in", tmp_path / "out")
    queues.outbound_dir.mkdir()
    key = RawKey.generate()
    order: list[str] = []
    applied: list[list[str]] = []

    async def submit(batch: TailBatch) -> None:
        order.extend(f"reply {m.content}" for m in batch.messages)

    async def apply_acks(acks: Sequence[ProcessingAck]) -> None:
        order.append("acks")
        applied.append(sorted(a.message_id for a in acks))

    tail = OutboundTail(session_id="ses_0123456789abcdef", agent_group_id="demo",
                        queues=queues, key=key, cursor=0, submit=submit,
                        apply_acks=apply_acks, on_activity=lambda: None, safety_poll_s=0.05,
                        ack_delay_s=2.0)  # ample time to read the second reply meanwhile
    with OutboundWriter(queues.outbound_db, key) as writer:
        first = reply_and_ack(writer, "one")
        async with trio.open_nursery() as nursery:
            await nursery.start(tail.run)
            with trio.fail_after(30):
                while not order:  # noqa: ASYNC110 (the tail's own pace)
                    await trio.sleep(0.005)
            second = reply_and_ack(writer, "two")
            with trio.fail_after(30):
                while len(order) < 2:  # noqa: ASYNC110
                    await trio.sleep(0.005)
            # Both replies delivered within the ack delay; no ack applied yet.
            assert order == ["reply one", "reply two"]
            with trio.fail_after(30):
                while not applied:  # noqa: ASYNC110
                    await trio.sleep(0.005)
            assert applied == [sorted([first, second])]  # one call for both polls
            third = reply_and_ack(writer, "three")
            with trio.fail_after(30):
                while len(order) < 4:  # noqa: ASYNC110
                    await trio.sleep(0.005)
            nursery.cancel_scope.cancel()  # stopping applies what is left, at once
    assert order[-1] == "acks" and applied[-1] == [third]
