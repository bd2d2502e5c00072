"""The local channel's durable transcript, on a real SQLCipher host.db: what a channel
wrote is what a fresh channel over the same file (a restarted control plane) reads back,
a redelivered reply is not added twice, and the retention bounds hold on disk."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest
import trio

from ironclaw.host.channels import (
    Channels,
    ChannelUnavailable,
    InboundEvent,
    LocalChannel,
    OutboundDelivery,
)
from ironclaw.host.channels.transcripts import DurableTranscripts
from ironclaw.host.store import HostStore, open_host_store


async def accepting_router(receive: trio.MemoryReceiveChannel[InboundEvent]) -> None:
    async for event in receive:
        if event.accepted is not None:
            event.accepted.ok(None)


def reply(outbound_id: str, conversation: str, text: str) -> OutboundDelivery:
    return OutboundDelivery(outbound_id=outbound_id, channel="local", instance="",
                            platform_id=conversation, thread_id=None, text=text)


Served = Callable[..., AbstractAsyncContextManager[LocalChannel]]


@pytest.fixture
def served(tmp_path: Path) -> Served:
    """``served(**limits)``: a durable local channel over ``tmp_path/host.db``, being
    served; each use opens host.db afresh, as a restarted control plane does."""
    key = os.urandom(32)

    @asynccontextmanager
    async def serve(**limits: float) -> AsyncIterator[LocalChannel]:
        async with open_host_store(tmp_path / "host.db", key) as store, \
                trio.open_nursery() as nursery:
            local = LocalChannel(transcripts=DurableTranscripts(store), **limits)  # type: ignore[arg-type]
            send, receive = trio.open_memory_channel[InboundEvent](8)
            nursery.start_soon(accepting_router, receive)
            await nursery.start(Channels([local], send).run)
            yield local
            nursery.cancel_scope.cancel()

    return serve


async def rows(store: HostStore) -> list[tuple[str, int, str]]:
    return await store.call(lambda conn: conn.execute(
        "SELECT conversation, idx, text FROM local_transcript ORDER BY conversation, idx"
    ).fetchall())


async def test_a_restart_keeps_every_conversation_and_its_numbering(served: Served) -> None:
    async with served() as local:
        await local.post("c1", "alice", "hello")
        await local.deliver(reply("out-1", "c1", "echo: hello"))
        await local.post("c2", "bob", "hi")
        before = {name: local.transcript(name) for name in ("c1", "c2")}
    async with served() as local:
        assert {name: local.transcript(name) for name in ("c1", "c2")} == before
        assert local.conversations() == ["c1", "c2"]  # least recently active first
        assert local.cursor("c1") == 1
        mark = local.cursor("c1")
        await local.post("c1", "alice", "again")
        await local.deliver(reply("out-2", "c1", "echo: again"))
        answer = await local.wait_for_reply("c1", after_index=mark)
        assert (answer.text, answer.index) == ("echo: again", 3)
        assert [e.index for e in local.transcript("c1")] == [0, 1, 2, 3]


async def test_a_reply_redelivered_after_a_restart_is_not_added_twice(
        served: Served) -> None:
    async with served() as local:
        await local.post("c1", "alice", "hello")
        first = await local.deliver(reply("out-1", "c1", "echo: hello"))
    # The delivery record never made it (a crash between the append and the record):
    # the new plane delivers the same outbound id again, with an empty memory ledger.
    async with served() as local:
        again = await local.deliver(reply("out-1", "c1", "echo: hello"))
        assert again.platform_message_id == first.platform_message_id
        assert [e.text for e in local.transcript("c1")] == ["hello", "echo: hello"]
        assert local.cursor("c1") == 1


async def test_the_conversation_bound_holds_across_a_restart(served: Served) -> None:
    async with served(max_transcript=3, max_conversations=2) as local:
        for i in range(5):
            await local.post("c1", "alice", f"m{i}")
        await local.post("c2", "bob", "x")
        await local.post("c3", "carol", "y")  # pushes out c1, the least recently active
        assert local.conversations() == ["c2", "c3"]
        assert local.transcript("c1") == []
    async with served(max_transcript=3, max_conversations=2) as local:
        assert local.conversations() == ["c2", "c3"]
    async with served() as local:  # wider limits: nothing of c1 was left in host.db
        assert local.conversations() == ["c2", "c3"]


async def test_entries_past_the_age_bound_are_pruned_on_start(served: Served) -> None:
    async with served() as local:
        await local.post("c1", "alice", "old news")
    async with served(max_age_s=1e-6) as local:
        assert local.transcript("c1") == []
        assert local.conversations() == []
    async with served() as local:  # gone from host.db too, not only from memory
        assert local.transcript("c1") == []


async def test_per_conversation_bound_trims_host_db(tmp_path: Path) -> None:
    async with open_host_store(tmp_path / "host.db", os.urandom(32)) as store, \
            trio.open_nursery() as nursery:
        local = LocalChannel(transcripts=DurableTranscripts(store), max_transcript=3)
        send, receive = trio.open_memory_channel[InboundEvent](8)
        nursery.start_soon(accepting_router, receive)
        await nursery.start(Channels([local], send).run)
        for i in range(5):
            await local.post("c1", "alice", f"m{i}")
        assert await rows(store) == [("c1", 2, "m2"), ("c1", 3, "m3"), ("c1", 4, "m4")]
        assert [e.index for e in local.transcript("c1")] == [2, 3, 4]
        nursery.cancel_scope.cancel()


async def test_a_post_the_router_never_takes_leaves_nothing_in_host_db(
        tmp_path: Path) -> None:
    async with open_host_store(tmp_path / "host.db", os.urandom(32)) as store, \
            trio.open_nursery() as nursery:
        local = LocalChannel(transcripts=DurableTranscripts(store), accept_timeout=0.2)
        send, _receive = trio.open_memory_channel[InboundEvent](1)
        await nursery.start(Channels([local], send).run)
        with pytest.raises(ChannelUnavailable):
            await local.post("c1", "alice", "nobody accepts this")
        assert await rows(store) == []
        assert local.transcript("c1") == []
        nursery.cancel_scope.cancel()


async def test_a_serving_channel_prunes_by_age_as_it_goes(served: Served) -> None:
    async with served(max_age_s=0.3, prune_interval_s=0.05) as local:
        await local.post("c1", "alice", "soon old")
        assert [e.text for e in local.transcript("c1")] == ["soon old"]
        with trio.fail_after(10):
            while local.transcript("c1"):  # noqa: ASYNC110 (pruning signals nothing)
                await trio.sleep(0.05)
    async with served() as local:  # and from host.db, not only from memory
        assert local.transcript("c1") == []
