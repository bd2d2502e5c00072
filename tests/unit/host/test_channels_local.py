"""The local channel and the idempotent-delivery helper it is built on."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from ironclaw.contract.clock import is_plausible
from ironclaw.host.channels import (
    Channels,
    ChannelUnavailable,
    ConversationEvicted,
    DeliveryFailed,
    DeliveryReceipt,
    IdempotentDelivery,
    InboundEvent,
    LocalChannel,
    MemoryDeliveryLedger,
    OutboundDelivery,
)


async def accepting_router(receive: trio.MemoryReceiveChannel[InboundEvent],
                           seen: list[InboundEvent]) -> None:
    """Stands in for the router: takes every event and accepts it, as the real router
    does once its rows are committed."""
    async for event in receive:
        seen.append(event)
        if event.accepted is not None:
            event.accepted.ok(None)


def reply(outbound_id: str, conversation: str, text: str, **kw: str) -> OutboundDelivery:
    return OutboundDelivery(
        outbound_id=outbound_id,
        channel="local",
        instance=kw.get("instance", ""),
        platform_id=conversation,
        thread_id=None,
        text=text,
    )


async def test_post_reaches_the_router_mailbox_with_the_right_fields() -> None:
    local = LocalChannel()
    router_send, router_receive = trio.open_memory_channel[InboundEvent](8)
    seen: list[InboundEvent] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(accepting_router, router_receive, seen)
        await nursery.start(Channels([local], router_send).run)
        message_id = await local.post("conv-1", "alice", "hello", thread_id="t-9")
        nursery.cancel_scope.cancel()
    (event,) = seen

    assert (event.channel, event.instance, event.platform_id) == ("local", "", "conv-1")
    assert (event.sender_handle, event.text, event.thread_id) == ("alice", "hello", "t-9")
    assert event.mentioned is True
    assert event.platform_message_id == message_id
    assert is_plausible(event.received_at)
    (entry,) = local.transcript("conv-1")
    assert (entry.role, entry.sender, entry.platform_message_id) == ("user", "alice", message_id)
    assert entry.at == event.received_at


async def test_reply_follows_the_question_and_a_duplicate_sends_nothing() -> None:
    local = LocalChannel()
    router_send, router_receive = trio.open_memory_channel[InboundEvent](8)
    channels = Channels([local], router_send)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(accepting_router, router_receive, [])
        await nursery.start(channels.run)
        question_id = await local.post("c", "alice", "2+2?", mentioned=False)
        first = await channels.deliver(reply("out-1", "c", "4"))
        again = await channels.deliver(reply("out-1", "c", "4"))
        nursery.cancel_scope.cancel()

    assert first.duplicate is False
    assert again == DeliveryReceipt("out-1", first.platform_message_id, duplicate=True)
    entries = local.transcript("c")
    assert [(e.role, e.text) for e in entries] == [("user", "2+2?"), ("agent", "4")]
    assert [e.index for e in entries] == [0, 1]
    assert entries[0].platform_message_id == question_id
    assert entries[1].platform_message_id == first.platform_message_id
    assert entries[1].sender == "agent"


async def test_wait_for_reply_wakes_on_delivery_and_skips_older_replies() -> None:
    local = LocalChannel()
    await local.deliver(reply("old", "c", "earlier answer"))
    mark = local.cursor("c")
    got: list[str] = []

    async def waiter() -> None:
        entry = await local.wait_for_reply("c", after_index=mark)
        got.append(entry.text)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []  # the earlier reply is at or before the mark
        await local.deliver(reply("new", "c", "fresh answer"))
    assert got == ["fresh answer"]


async def test_concurrent_duplicates_send_once() -> None:
    ledger = MemoryDeliveryLedger()
    helper = IdempotentDelivery(ledger)
    release = trio.Event()
    sends: list[str] = []
    receipts: list[DeliveryReceipt] = []

    async def slow_send(delivery: OutboundDelivery) -> str:
        sends.append(delivery.outbound_id)
        await release.wait()
        return "pm-1"

    async def deliver() -> None:
        receipts.append(await helper.deliver(reply("o", "c", "x"), slow_send))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(deliver)
        nursery.start_soon(deliver)
        await trio.testing.wait_all_tasks_blocked()
        release.set()
    assert sends == ["o"]
    assert sorted(r.duplicate for r in receipts) == [False, True]
    assert {r.platform_message_id for r in receipts} == {"pm-1"}


async def test_a_failed_send_is_not_recorded_and_can_be_retried() -> None:
    helper = IdempotentDelivery(MemoryDeliveryLedger())
    attempts = 0

    async def flaky_send(delivery: OutboundDelivery) -> str:
        nonlocal attempts
        attempts += 1
        await trio.lowlevel.checkpoint()
        if attempts == 1:
            raise DeliveryFailed("rate limited", retryable=True, retry_after=3.0)
        return "pm"

    with pytest.raises(DeliveryFailed) as failed:
        await helper.deliver(reply("o", "c", "x"), flaky_send)
    assert (failed.value.retryable, failed.value.retry_after) == (True, 3.0)
    receipt = await helper.deliver(reply("o", "c", "x"), flaky_send)
    assert (receipt.duplicate, attempts) == (False, 2)


async def test_a_ledger_that_cannot_record_still_reports_the_send() -> None:
    class BrokenLedger(MemoryDeliveryLedger):
        async def put(self, receipt: DeliveryReceipt) -> None:
            await trio.lowlevel.checkpoint()
            raise OSError("disk full")

    async def send(delivery: OutboundDelivery) -> str:
        await trio.lowlevel.checkpoint()
        return "pm"

    receipt = await IdempotentDelivery(BrokenLedger()).deliver(reply("o", "c", "x"), send)
    assert receipt == DeliveryReceipt("o", "pm", duplicate=False)


async def test_memory_ledger_forgets_the_oldest_beyond_its_bound() -> None:
    ledger = MemoryDeliveryLedger(max_entries=2)
    for n in range(3):
        await ledger.put(DeliveryReceipt(f"o{n}", f"p{n}", duplicate=True))
    assert len(ledger) == 2
    assert await ledger.get("o0") is None
    assert await ledger.get("o2") == DeliveryReceipt("o2", "p2", duplicate=False)


async def test_transcripts_and_conversations_are_bounded_oldest_first() -> None:
    local = LocalChannel(max_transcript=3, max_conversations=2)
    for n in range(5):
        await local.deliver(reply(f"a{n}", "a", f"m{n}"))
    assert [e.text for e in local.transcript("a")] == ["m2", "m3", "m4"]
    assert [e.index for e in local.transcript("a")] == [2, 3, 4]
    assert local.cursor("a") == 4

    evicted: list[BaseException] = []

    async def wait_on_b() -> None:
        try:
            await local.wait_for_reply("b", after_index=100)
        except ConversationEvicted as exc:
            evicted.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait_on_b)
        await trio.testing.wait_all_tasks_blocked()
        await local.deliver(reply("a5", "a", "m5"))  # a is now the most recent
        await local.deliver(reply("c0", "c", "hi c"))  # third conversation: b goes
    assert len(evicted) == 1
    assert local.conversations() == ["a", "c"]
    assert local.transcript("b") == []


async def test_post_refuses_when_not_served_or_oversized() -> None:
    local = LocalChannel(max_text_chars=5)
    with pytest.raises(ChannelUnavailable):
        await local.post("c", "alice", "hi")
    router_send, _router_receive = trio.open_memory_channel[InboundEvent](1)
    async with trio.open_nursery() as nursery:
        await nursery.start(local.serve, router_send)
        with pytest.raises(ValueError):
            await local.post("c", "alice", "toolong")
        with pytest.raises(ValueError):
            await local.post("", "alice", "hi")
        nursery.cancel_scope.cancel()
    assert local.transcript("c") == []
    with pytest.raises(DeliveryFailed) as failed:
        await local.deliver(reply("o", "c", "toolong"))
    assert failed.value.retryable is False


async def test_a_post_cancelled_under_back_pressure_leaves_no_trace(
    autojump_clock: trio.testing.MockClock,
) -> None:
    local = LocalChannel()
    router_send, router_receive = trio.open_memory_channel[InboundEvent](0)
    async with trio.open_nursery() as nursery:
        await nursery.start(local.serve, router_send)
        with trio.move_on_after(1) as blocked:
            await local.post("c", "alice", "nobody reads me")
        assert blocked.cancelled_caught  # the router never took it: post waited
        nursery.cancel_scope.cancel()
    assert local.transcript("c") == []
    with pytest.raises(trio.WouldBlock):
        router_receive.receive_nowait()


async def test_delivery_for_another_instance_is_refused() -> None:
    local = LocalChannel("ops")
    with pytest.raises(DeliveryFailed) as failed:
        await local.deliver(reply("o", "c", "x"))
    assert failed.value.retryable is False
    receipt = await local.deliver(reply("o", "c", "x", instance="ops"))
    assert receipt.duplicate is False


async def test_post_returns_only_once_the_router_accepts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Acknowledged means durable: a router that takes the event but has not committed
    it yet keeps post waiting, and one that never accepts makes post fail clearly."""
    local = LocalChannel(accept_timeout=5)
    router_send, router_receive = trio.open_memory_channel[InboundEvent](8)
    async with trio.open_nursery() as nursery:
        await nursery.start(local.serve, router_send)
        returned = trio.Event()

        async def post() -> None:
            await local.post("c", "alice", "hi")
            returned.set()

        nursery.start_soon(post)
        event = await router_receive.receive()
        await trio.sleep(1)
        assert not returned.is_set()
        assert event.accepted is not None
        event.accepted.ok(None)
        await returned.wait()
        with pytest.raises(ChannelUnavailable, match="accept"):
            await local.post("c", "alice", "never accepted")
        nursery.cancel_scope.cancel()
