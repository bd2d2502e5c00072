"""An inotify storm makes the host copy no more than the agent commits.

The tail wakes on every change in the outbound directory. A hostile agent can make
thousands of changes a second without committing anything (rewrite the heartbeat,
create and delete files); each used to cost the host a full copy and decrypt of
the queue file. Now a copy happens only when the commit fence moved, and copies
are paced by a size-charged budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import trio
import trio.testing

from ironclaw.contract.cipher import RawKey
from ironclaw.contract.clock import now_us
from ironclaw.contract.enums import MessageKind
from ironclaw.contract.ids import new_message_id
from ironclaw.contract.layout import QueuePaths, write_heartbeat
from ironclaw.contract.queue import OutboundWriter
from ironclaw.contract.rows import NewOutboundMessage, ProcessingAck
from ironclaw.host.mailboxes import TailBatch
from ironclaw.host.sessions.tail import (
    WAKE_BURST,
    WAKES_PER_S,
    CopyBudget,
    CopyPolicy,
    OutboundTail,
)

STORM = 3000


def make_tail(queues: QueuePaths, key: RawKey, batches: list[TailBatch]) -> OutboundTail:
    async def submit(batch: TailBatch) -> None:
        batches.append(batch)

    async def apply_acks(acks: Sequence[ProcessingAck]) -> None:
        pass

    return OutboundTail(session_id="ses_0123456789abcdef", agent_group_id="demo",
                        queues=queues, key=key, cursor=0, submit=submit,
                        apply_acks=apply_acks, on_activity=lambda: None,
                        safety_poll_s=0.05)


def storm(outbound: Path) -> None:
    for i in range(STORM):
        write_heartbeat(outbound / "heartbeat")
        junk = outbound / f"junk-{i % 7}"
        junk.write_bytes(b"x")
        junk.unlink()


async def test_a_storm_without_commits_costs_no_copies(tmp_path: Path) -> None:
    queues = QueuePaths(tmp_path / "in", tmp_path / "out")
    queues.outbound_dir.mkdir()
    key = RawKey.generate()
    with OutboundWriter(queues.outbound_db, key) as writer:
        writer.send(NewOutboundMessage(id=new_message_id("m"), kind=MessageKind.CHAT,
                                       content="one"))
    batches: list[TailBatch] = []
    tail = make_tail(queues, key, batches)
    async with trio.open_nursery() as nursery:
        await nursery.start(tail.run)
        with trio.fail_after(30):
            while not batches:  # noqa: ASYNC110 (the tail's own pace)
                await trio.sleep(0.01)
        copies_before, wakes_before = tail.state.copies, tail.state.wakes
        started, started_us = trio.current_time(), now_us()
        await trio.to_thread.run_sync(storm, queues.outbound_dir)
        await trio.sleep(0.3)  # a few safety polls as well
        elapsed = trio.current_time() - started
        # The storm woke the tail, and it copied nothing: the fence never moved.
        assert tail.state.skipped_polls > 0
        assert tail.state.copies == copies_before
        # Nine thousand events; the wake-ups are paced whatever the machine's speed
        # (a slower machine only means fewer of them).
        assert tail.state.wakes - wakes_before <= WAKE_BURST + WAKES_PER_S * elapsed + 1
        # Skipping the copy does not skip the heartbeat: the storm's beats were seen.
        assert (tail.state.heartbeat_at or 0) >= started_us
        with OutboundWriter(queues.outbound_db, key) as writer:
            writer.send(NewOutboundMessage(id=new_message_id("m"), kind=MessageKind.CHAT,
                                           content="two"))
        with trio.fail_after(30):
            while len(batches) < 2:  # noqa: ASYNC110 (the tail's own pace)
                await trio.sleep(0.01)
        assert [m.content for b in batches for m in b.messages] == ["one", "two"]
        assert tail.state.copies == copies_before + 1
        nursery.cancel_scope.cancel()


async def test_copies_are_paced_by_their_size(autojump_clock: trio.abc.Clock) -> None:
    budget = CopyBudget(CopyPolicy(rate=4.0, burst=2, bytes_per_token=1 << 20))
    start = trio.current_time()
    budget.charge(100)  # one token
    await budget.wait()
    assert trio.current_time() == start  # banked
    budget.charge(8 << 20)  # 9 tokens: one banked, eight at 4 a second
    await budget.wait()
    assert trio.current_time() - start == 2.0
