"""ChannelActor: supervised receive loop, channel events, back-pressure, deliveries."""

from __future__ import annotations

import attrs
import pytest
import trio
import trio.testing

from ironclaw.host.channels import (
    ChannelActor,
    ChannelDown,
    ChannelParked,
    ChannelResumed,
    ChannelStatus,
    ChannelUnavailable,
    ChannelUp,
    Deliver,
    DeliveryFailed,
    DeliveryReceipt,
    InboundEvent,
    OutboundDelivery,
)
from tests.support.events import RecordingSink

SECRET = "bot123456:SECRET-TOKEN"


def event(text: str, channel: str = "fake", instance: str = "x") -> InboundEvent:
    return InboundEvent(channel, instance, "room", "u1", text, received_at=1)


def delivery(outbound_id: str = "o1", channel: str = "fake") -> OutboundDelivery:
    return OutboundDelivery(outbound_id, channel, "x", "room", None, "hi")


Step = tuple[bool, list[InboundEvent], str]


def status(actor: ChannelActor) -> ChannelStatus:
    return actor.status  # read through a call so mypy does not carry narrowing across awaits


@attrs.define
class ScriptedAdapter:
    """An adapter whose receive loop follows a script, one entry per attempt.

    Each entry is (connects, events to send, then what): "crash", "return" or "stay".
    Past the end of the script, the last entry repeats.
    """

    script: list[Step]
    name: str = "fake"
    instance: str = "x"
    attempts: int = 0
    sent: int = 0
    cleaned_up: int = 0
    deliver_error: BaseException | None = None
    deliver_gate: trio.Event | None = None

    async def serve(
        self,
        events: trio.MemorySendChannel[InboundEvent],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        connects, to_send, then = self.script[min(self.attempts, len(self.script) - 1)]
        self.attempts += 1
        try:
            await trio.lowlevel.checkpoint()
            if not connects:
                raise ConnectionRefusedError(f"https://api.example/{SECRET}/getUpdates")
            task_status.started()
            for item in to_send:
                await events.send(item)
                self.sent += 1
            if then == "crash":
                raise ConnectionResetError(f"lost https://api.example/{SECRET}")
            if then == "stay":
                await trio.sleep_forever()
        finally:
            self.cleaned_up += 1

    async def deliver(self, delivery: OutboundDelivery) -> DeliveryReceipt:
        if self.deliver_gate is not None:
            await self.deliver_gate.wait()
        await trio.lowlevel.checkpoint()
        if self.deliver_error is not None:
            raise self.deliver_error
        return DeliveryReceipt(delivery.outbound_id, "pm-" + delivery.outbound_id, False)


def relative(times: list[float]) -> list[float]:
    return [round(at - times[0], 6) for at in times]


async def test_crashing_receive_loop_backs_off_then_parks_then_resumes(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    crash: Step = (True, [], "crash")
    adapter = ScriptedAdapter([crash] * 5 + [(True, [], "stay")])
    sink = RecordingSink()
    router_send, _router_receive = trio.open_memory_channel[InboundEvent](1)
    actor = ChannelActor(adapter, router_send, events=sink)
    async with trio.open_nursery() as nursery:
        await nursery.start(actor.run)
        await sink.wait_for(ChannelParked)
        await trio.sleep(3600)  # parked means nobody restarts it
        assert (adapter.attempts, actor.status) == (5, ChannelStatus.PARKED)
        assert actor.resume()
        await sink.wait_for(ChannelUp, count=6)
        nursery.cancel_scope.cancel()

    assert relative(sink.times_of(ChannelUp))[:5] == [0, 1, 3, 7, 15]
    downs = sink.of(ChannelDown)
    assert [d.retry_in for d in downs[:5]] == [1, 2, 4, 8, None]
    assert [d.consecutive_failures for d in downs[:5]] == [1, 2, 3, 4, 5]
    assert {d.reason for d in downs[:5]} == {"ConnectionResetError"}  # no URL, no token
    assert SECRET not in repr(sink.records)
    assert caplog.records  # the supervisor did log the failures...
    assert SECRET not in caplog.text  # ...without the adapter's raw error text
    (parked,) = sink.of(ChannelParked)
    assert parked == ChannelParked("fake", "x", 5, "ConnectionResetError")
    assert sink.times_of(ChannelParked) == [sink.times_of(ChannelUp)[4]]
    assert sink.of(ChannelResumed) == [ChannelResumed("fake", "x")]
    assert sink.of(ChannelUp)[5] == ChannelUp("fake", "x", attempt=6)
    assert adapter.cleaned_up == adapter.attempts == 6
    assert actor.status is ChannelStatus.STOPPED
    assert downs[-1].reason == "stopped"


async def test_failed_connects_are_retried_and_start_waits_for_the_first_outcome(
    autojump_clock: trio.testing.MockClock,
) -> None:
    adapter = ScriptedAdapter([(False, [], ""), (False, [], ""), (True, [event("a")], "stay")])
    sink = RecordingSink()
    router_send, router_receive = trio.open_memory_channel[InboundEvent](4)
    actor = ChannelActor(adapter, router_send, events=sink)
    async with trio.open_nursery() as nursery:
        await nursery.start(actor.run)
        # started was reported after the first attempt failed, not before it ran
        assert status(actor) is ChannelStatus.DOWN
        assert [d.reason for d in sink.of(ChannelDown)] == ["ConnectionRefusedError"]
        received = await router_receive.receive()
        assert trio.current_time() == pytest.approx(3.0)
        assert status(actor) is ChannelStatus.UP
        nursery.cancel_scope.cancel()
    assert received.text == "a"
    assert sink.of(ChannelUp) == [ChannelUp("fake", "x", attempt=3)]


async def test_a_receive_loop_that_returns_is_restarted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    adapter = ScriptedAdapter([(True, [], "return"), (True, [], "stay")])
    sink = RecordingSink()
    router_send, _router_receive = trio.open_memory_channel[InboundEvent](1)
    async with trio.open_nursery() as nursery:
        await nursery.start(ChannelActor(adapter, router_send, events=sink).run)
        await sink.wait_for(ChannelUp, count=2)
        nursery.cancel_scope.cancel()
    assert sink.of(ChannelDown)[0].reason == "receive loop returned"


async def test_full_router_holds_the_adapter_back_and_nothing_is_dropped() -> None:
    batch = [event(f"m{n}") for n in range(5)]
    adapter = ScriptedAdapter([(True, batch, "stay")])
    router_send, router_receive = trio.open_memory_channel[InboundEvent](1)
    async with trio.open_nursery() as nursery:
        await nursery.start(ChannelActor(adapter, router_send).run)
        await trio.testing.wait_all_tasks_blocked()
        # one in the router's buffer, one held by the forwarder; the adapter waits
        assert adapter.sent == 2
        texts = [(await router_receive.receive()).text for _ in batch]
        nursery.cancel_scope.cancel()
    assert texts == ["m0", "m1", "m2", "m3", "m4"]


async def test_an_event_handed_over_survives_the_crash_of_its_receive_loop(
    autojump_clock: trio.testing.MockClock,
) -> None:
    adapter = ScriptedAdapter([(True, [event("precious")], "crash"), (True, [], "stay")])
    sink = RecordingSink()
    router_send, router_receive = trio.open_memory_channel[InboundEvent](0)
    async with trio.open_nursery() as nursery:
        await nursery.start(ChannelActor(adapter, router_send, events=sink).run)
        await sink.wait_for(ChannelDown)  # crashed while the router was not reading
        received = await router_receive.receive()
        nursery.cancel_scope.cancel()
    assert received.text == "precious"


async def test_events_are_stamped_with_the_actors_own_channel() -> None:
    adapter = ScriptedAdapter([(True, [event("spoof", channel="local", instance="")], "stay")])
    router_send, router_receive = trio.open_memory_channel[InboundEvent](1)
    async with trio.open_nursery() as nursery:
        await nursery.start(ChannelActor(adapter, router_send).run)
        received = await router_receive.receive()
        nursery.cancel_scope.cancel()
    assert (received.channel, received.instance, received.text) == ("fake", "x", "spoof")


@pytest.mark.parametrize(
    ("error", "retryable", "retry_after", "reason"),
    [
        (DeliveryFailed("429", retryable=True, retry_after=7.0), True, 7.0, "429"),
        (DeliveryFailed("chat gone", retryable=False), False, None, "chat gone"),
        (ConnectionError(f"POST https://api.example/{SECRET}"), True, None, "ConnectionError"),
    ],
)
async def test_adapter_errors_become_typed_delivery_failures(
    error: BaseException, retryable: bool, retry_after: float | None, reason: str
) -> None:
    adapter = ScriptedAdapter([(True, [], "stay")], deliver_error=error)
    router_send, _router_receive = trio.open_memory_channel[InboundEvent](1)
    actor = ChannelActor(adapter, router_send)
    async with trio.open_nursery() as nursery:
        await nursery.start(actor.run)
        with pytest.raises(DeliveryFailed) as failed:
            await actor.deliver(delivery("o7"))
        nursery.cancel_scope.cancel()
    assert (failed.value.retryable, failed.value.retry_after) == (retryable, retry_after)
    assert failed.value.outbound_id == "o7"
    assert str(failed.value) == reason


async def test_a_hung_delivery_times_out_as_retryable(
    autojump_clock: trio.testing.MockClock,
) -> None:
    adapter = ScriptedAdapter([(True, [], "stay")], deliver_gate=trio.Event())
    router_send, _router_receive = trio.open_memory_channel[InboundEvent](1)
    actor = ChannelActor(adapter, router_send, deliver_timeout=30)
    async with trio.open_nursery() as nursery:
        await nursery.start(actor.run)
        start = trio.current_time()
        with pytest.raises(DeliveryFailed) as failed:
            await actor.deliver(delivery())
        assert trio.current_time() - start == pytest.approx(30)
        nursery.cancel_scope.cancel()
    assert failed.value.retryable is True


async def test_stopping_answers_every_queued_delivery_and_refuses_new_ones() -> None:
    adapter = ScriptedAdapter([(True, [], "stay")], deliver_gate=trio.Event())
    router_send, _router_receive = trio.open_memory_channel[InboundEvent](1)
    actor = ChannelActor(adapter, router_send)
    messages = [Deliver(delivery(f"o{n}")) for n in range(3)]
    async with trio.open_nursery() as nursery:
        await nursery.start(actor.run)
        for message in messages:  # the first is in flight, two are queued
            await actor.submit(message)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    outcomes = []
    for message in messages:
        assert message.reply.answered
        with pytest.raises(DeliveryFailed) as failed:
            await message.reply.wait()
        outcomes.append(failed.value)
    assert all(o.retryable for o in outcomes)
    assert [o.outbound_id for o in outcomes] == ["o0", "o1", "o2"]
    with pytest.raises(ChannelUnavailable):
        await actor.submit(Deliver(delivery("late")))


async def test_a_delivery_for_another_channel_is_refused() -> None:
    adapter = ScriptedAdapter([(True, [], "stay")])
    router_send, _router_receive = trio.open_memory_channel[InboundEvent](1)
    actor = ChannelActor(adapter, router_send)
    async with trio.open_nursery() as nursery:
        await nursery.start(actor.run)
        with pytest.raises(DeliveryFailed) as failed:
            await actor.deliver(delivery(channel="other"))
        ok = await actor.deliver(delivery())
        nursery.cancel_scope.cancel()
    assert failed.value.retryable is False
    assert ok == DeliveryReceipt("o1", "pm-o1", duplicate=False)
