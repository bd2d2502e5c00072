"""Channels: routing deliveries by (channel, instance), isolation, startup and shutdown."""

from __future__ import annotations

import attrs
import pytest
import trio
import trio.testing

from ironclaw.host.channels import (
    Channels,
    ChannelStatus,
    ChannelUnavailable,
    Deliver,
    DeliveryFailed,
    DeliveryReceipt,
    InboundEvent,
    LocalChannel,
    OutboundDelivery,
)


@attrs.define
class GatedAdapter:
    """Connects (unless told to hang), and delivers only when its gate opens."""

    name: str
    instance: str = ""
    gate: trio.Event = attrs.field(factory=trio.Event)
    hang_on_connect: bool = False
    serving: bool = False
    stopped: int = 0
    delivered: list[str] = attrs.field(factory=list)

    async def serve(
        self,
        events: trio.MemorySendChannel[InboundEvent],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            if self.hang_on_connect:
                await trio.sleep_forever()
            task_status.started()
            self.serving = True
            await trio.sleep_forever()
        finally:
            self.serving = False
            self.stopped += 1

    async def deliver(self, delivery: OutboundDelivery) -> DeliveryReceipt:
        await self.gate.wait()
        self.delivered.append(delivery.outbound_id)
        return DeliveryReceipt(delivery.outbound_id, "pm", duplicate=False)


def to(channel: str, outbound_id: str, instance: str = "") -> OutboundDelivery:
    return OutboundDelivery(outbound_id, channel, instance, "room", None, "text")


async def test_a_slow_channel_does_not_hold_up_another() -> None:
    slow = GatedAdapter("slow")
    local = LocalChannel()
    router_send, _router_receive = trio.open_memory_channel[InboundEvent](4)
    channels = Channels([slow, local], router_send)
    slow_outcome: list[DeliveryReceipt] = []

    async def deliver_slow() -> None:
        slow_outcome.append(await channels.deliver(to("slow", "s1")))

    async with trio.open_nursery() as nursery:
        await nursery.start(channels.run)
        nursery.start_soon(deliver_slow)
        await trio.testing.wait_all_tasks_blocked()
        fast = await channels.deliver(to("local", "f1"))
        assert slow_outcome == []  # still stuck on its own channel
        assert [e.text for e in local.transcript("room")] == ["text"]
        slow.gate.set()
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert fast.outbound_id == "f1"
    assert [r.outbound_id for r in slow_outcome] == ["s1"]


async def test_deliveries_are_routed_by_channel_and_instance() -> None:
    default, ops = GatedAdapter("chat"), GatedAdapter("chat", instance="ops")
    default.gate.set()
    ops.gate.set()
    router_send, _router_receive = trio.open_memory_channel[InboundEvent](4)
    channels = Channels([default, ops], router_send)
    async with trio.open_nursery() as nursery:
        await nursery.start(channels.run)
        await channels.deliver(to("chat", "a"))
        await channels.deliver(to("chat", "b", instance="ops"))
        # The registry spells the default instance as the channel type itself.
        await channels.deliver(to("chat", "c", instance="chat"))
        nursery.cancel_scope.cancel()
    assert (default.delivered, ops.delivered) == (["a", "c"], ["b"])


async def test_unknown_channel_or_instance_is_unavailable() -> None:
    router_send, _router_receive = trio.open_memory_channel[InboundEvent](4)
    channels = Channels([LocalChannel()], router_send)
    async with trio.open_nursery() as nursery:
        await nursery.start(channels.run)
        with pytest.raises(ChannelUnavailable, match="telegram/default"):
            await channels.deliver(to("telegram", "o1"))
        with pytest.raises(ChannelUnavailable):
            await channels.deliver(to("local", "o2", instance="other"))
        with pytest.raises(ChannelUnavailable):
            await channels.submit(Deliver(to("slack", "o3")))
        nursery.cancel_scope.cancel()
    assert channels.keys == [("local", "")]


def test_two_adapters_for_one_channel_are_refused() -> None:
    router_send, _router_receive = trio.open_memory_channel[InboundEvent](1)
    with pytest.raises(ValueError, match="local/default"):
        Channels([LocalChannel(), LocalChannel()], router_send)


async def test_start_does_not_wait_forever_for_a_channel_that_cannot_connect(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stuck = GatedAdapter("stuck", hang_on_connect=True)
    local = LocalChannel()
    router_send, _router_receive = trio.open_memory_channel[InboundEvent](4)
    channels = Channels([stuck, local], router_send, startup_timeout=10)
    async with trio.open_nursery() as nursery:
        await nursery.start(channels.run)
        assert trio.current_time() == pytest.approx(10)
        assert channels.status() == {
            ("stuck", ""): ChannelStatus.STARTING,
            ("local", ""): ChannelStatus.UP,
        }
        nursery.cancel_scope.cancel()


async def test_cancelling_channels_stops_everything_and_answers_pending_callers() -> None:
    slow = GatedAdapter("slow")
    local = LocalChannel()
    router_send, _router_receive = trio.open_memory_channel[InboundEvent](4)
    channels = Channels([slow, local], router_send)
    outcomes: list[DeliveryFailed] = []

    async def deliver_slow() -> None:
        try:
            await channels.deliver(to("slow", "s1"))
        except DeliveryFailed as exc:
            outcomes.append(exc)

    async with trio.open_nursery() as callers:
        async with trio.open_nursery() as owner:
            await owner.start(channels.run)
            callers.start_soon(deliver_slow)
            await trio.testing.wait_all_tasks_blocked()
            assert slow.serving and local.serving
            owner.cancel_scope.cancel()
        # the owner's nursery exited: every channel task is gone and cleaned up
        assert (slow.serving, slow.stopped, local.serving) == (False, 1, False)
        assert set(channels.status().values()) == {ChannelStatus.STOPPED}
        with pytest.raises(ChannelUnavailable):
            await channels.deliver(to("local", "late"))
    # ...and the caller nursery exits without being cancelled: no caller was left hanging
    assert [(o.outbound_id, o.retryable) for o in outcomes] == [("s1", True)]
