"""Pairing notices over a real host.db with a scripted channel: retries with backoff,
order (never "granted" before "requested"), a restart while the channel is down, giving
up (logged and audited), and forged access changes. Plus the command grammar."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from ironclaw.contract.enums import ChangeKind, ChangeStatus, UnknownSenderPolicy
from ironclaw.contract.gateway import ChangeRequest
from ironclaw.contract.ids import AgentGroupId, ChangeId, UserId
from ironclaw.host.channels.base import (
    ChannelUnavailable,
    DeliveryFailed,
    DeliveryReceipt,
    InboundEvent,
    OutboundDelivery,
)
from ironclaw.host.chatops import ChatNotices, NoticePolicy, parse_command
from ironclaw.host.chatops.commands import ChatCommand
from ironclaw.host.chatops.notices import TEXTS
from ironclaw.host.chatops.store import NoticeKind
from ironclaw.host.gateway.messages import access_change_id
from ironclaw.host.registry import AccessRequest, AgentGroup, Registry, Wiring
from ironclaw.host.store import HostStore, open_host_store
from ironclaw.runtime import EventBus

FAST = NoticePolicy(initial_s=0.01, cap_s=0.05, max_nap_s=0.5, deliver_timeout_s=5.0)


class Script:
    """A channel that fails as told, then delivers; records every attempt."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.attempts: list[OutboundDelivery] = []
        self.delivered: list[OutboundDelivery] = []
        self._changed = trio.lowlevel.ParkingLot()

    async def deliver(self, delivery: OutboundDelivery) -> DeliveryReceipt:
        await trio.lowlevel.checkpoint()
        self.attempts.append(delivery)
        self._changed.unpark_all()
        if self.failures:
            raise self.failures.pop(0)
        self.delivered.append(delivery)
        self._changed.unpark_all()
        return DeliveryReceipt(delivery.outbound_id, f"m{len(self.delivered)}", False)

    async def until(self, delivered: int = 0, attempts: int = 0) -> None:
        with trio.fail_after(10):
            while len(self.delivered) < delivered or len(self.attempts) < attempts:
                await self._changed.park()


class Audit:
    def __init__(self) -> None:
        self.entries: list[tuple[str, dict[str, Any]]] = []

    async def append(self, kind: str, /, **fields: Any) -> int:
        await trio.lowlevel.checkpoint()
        self.entries.append((kind, fields))
        return len(self.entries)


@attrs.define
class World:
    store: HostStore
    registry: Registry
    mg: str


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with open_host_store(tmp_path / "host.db", secrets.token_bytes(32)) as store:
        registry = Registry(store)
        await registry.put_agent_group(AgentGroup(id="g1", name="g1", folder="g1"))
        group = await registry.ensure_messaging_group("slack", "C1")
        await registry.put_messaging_group(attrs.evolve(
            group, unknown_sender_policy=UnknownSenderPolicy.REQUEST_APPROVAL))
        await registry.put_wiring(Wiring(id="w1", messaging_group_id=group.id,
                                         agent_group_id="g1"))
        yield World(store, registry, group.id)


def asked(request: AccessRequest, thread: str | None = "t1") -> InboundEvent:
    return InboundEvent(channel="slack", instance="", platform_id="C1",
                        sender_handle=request.user_id.split(":", 1)[1], text="let me in",
                        thread_id=thread)


def access_change(request_id: str, *, forged: bool = False) -> ChangeRequest:
    change_id = ChangeId("chg_" + "f" * 32) if forged else access_change_id(request_id)
    return ChangeRequest.of(
        id=change_id, kind=ChangeKind.ACCESS, agent_group=AgentGroupId("g1"),
        requested_by=UserId("system:router"), before={}, created_at=1,
        after={"request": request_id, "user": "slack:stranger", "member_of": ["g1"]})


async def notice_rows(world: World) -> list[tuple[str, str, int]]:
    return await world.store.call(lambda conn: conn.execute(
        "SELECT kind, status, attempts FROM chat_notices ORDER BY rowid").fetchall())


async def test_a_notice_is_retried_until_delivered_in_the_chat_and_thread_asked(
        world: World) -> None:
    channel = Script(DeliveryFailed("busy", retryable=True, retry_after=0.01),
                     ChannelUnavailable("down"), RuntimeError("adapter bug"))
    bus = EventBus()
    notices = ChatNotices(world.store, channel, events=bus, policy=FAST)
    async with trio.open_nursery() as nursery:
        await nursery.start(notices.run)
        request, new = await world.registry.request_access(world.mg, "slack:stranger")
        assert new
        await notices.access_requested(request, asked(request))
        await channel.until(delivered=1)
        nursery.cancel_scope.cancel()
    (sent,) = channel.delivered
    assert (sent.channel, sent.platform_id, sent.thread_id) == ("slack", "C1", "t1")
    assert sent.text == TEXTS[NoticeKind.REQUESTED] and "let me in" not in sent.text
    assert len({a.outbound_id for a in channel.attempts}) == 1  # one idempotency key
    assert await notice_rows(world) == [("access_requested", "sent", 4)]


async def test_an_outcome_waits_for_its_request_notice_and_survives_a_restart(
        world: World) -> None:
    """The channel is down while the request is decided; the control plane restarts;
    the sender hears "requested" then "granted", once each."""
    down = Script(*[ChannelUnavailable("down")] * 1000)
    bus = EventBus()
    request, _ = await world.registry.request_access(world.mg, "slack:stranger")
    async with trio.open_nursery() as nursery:
        notices = ChatNotices(world.store, down, events=bus, policy=FAST)
        await nursery.start(notices.run)
        await notices.access_requested(request, asked(request))
        await world.registry.decide_access_request(request.id, grant=True, decided_by="ann")
        await notices.change_resolved(access_change(request.id), ChangeStatus.APPLIED)
        await down.until(attempts=3)
        nursery.cancel_scope.cancel()
    assert {d.outbound_id for d in down.attempts} == {down.attempts[0].outbound_id}
    up = Script()
    async with trio.open_nursery() as nursery:
        await nursery.start(ChatNotices(world.store, up, events=bus, policy=FAST).run)
        await up.until(delivered=2)
        nursery.cancel_scope.cancel()
    assert [d.text for d in up.delivered] == [TEXTS[NoticeKind.REQUESTED],
                                              TEXTS[NoticeKind.GRANTED]]
    assert all(d.thread_id == "t1" for d in up.delivered)
    assert [(k, s) for k, s, _ in await notice_rows(world)] == [
        ("access_requested", "sent"), ("access_granted", "sent")]


async def test_a_decision_the_last_run_did_not_tell_is_found_on_start(world: World) -> None:
    channel = Script()
    request, _ = await world.registry.request_access(world.mg, "slack:stranger")
    notices = ChatNotices(world.store, channel, policy=FAST)
    await notices.access_requested(request, asked(request, thread=None))
    # Decided (expired) with no callback: the plane stopped in between.
    await world.registry.decide_access_request(request.id, grant=False, decided_by="expiry")
    async with trio.open_nursery() as nursery:
        await nursery.start(notices.run)
        await channel.until(delivered=2)
        nursery.cancel_scope.cancel()
    assert [d.text for d in channel.delivered] == [TEXTS[NoticeKind.REQUESTED],
                                                   TEXTS[NoticeKind.EXPIRED]]


async def test_a_permanent_failure_or_an_old_notice_is_given_up_and_audited(
        world: World) -> None:
    audit, bus = Audit(), EventBus()
    channel = Script(DeliveryFailed("chat is gone", retryable=False))
    request, _ = await world.registry.request_access(world.mg, "slack:stranger")
    notices = ChatNotices(world.store, channel, audit=audit, events=bus, policy=FAST)
    async with trio.open_nursery() as nursery, bus.subscribe("chat.notice_failed") as failed:
        await nursery.start(notices.run)
        await notices.access_requested(request, asked(request))
        with trio.fail_after(10):
            assert (await failed.receive()).event.final  # type: ignore[union-attr]
        nursery.cancel_scope.cancel()
    assert audit.entries == [("chat.notice_dead", {
        "notice_id": channel.attempts[0].outbound_id, "request_id": request.id,
        "kind": "access_requested", "attempts": 1})]
    assert await notice_rows(world) == [("access_requested", "dead", 1)]

    # Retryable, but older than max_age: given up as well.
    other, _ = await world.registry.request_access(world.mg, "slack:other")
    channel = Script(ChannelUnavailable("down"))
    notices = ChatNotices(world.store, channel, audit=audit, events=bus,
                          policy=attrs.evolve(FAST, max_age_s=0.0))
    async with trio.open_nursery() as nursery, bus.subscribe("chat.notice_failed") as failed:
        await nursery.start(notices.run)
        await notices.access_requested(other, asked(other))
        with trio.fail_after(10):
            assert (await failed.receive()).event.final  # type: ignore[union-attr]
        nursery.cancel_scope.cancel()
    assert len(audit.entries) == 2
    assert (await notice_rows(world))[-1] == ("access_requested", "dead", 1)


async def test_only_the_change_raised_for_a_request_tells_its_sender(world: World) -> None:
    request, _ = await world.registry.request_access(world.mg, "slack:stranger")
    notices = ChatNotices(world.store, Script(), policy=FAST)
    await notices.access_requested(request, asked(request))
    await notices.change_resolved(access_change(request.id, forged=True),
                                  ChangeStatus.REJECTED)
    persona = attrs.evolve(access_change(request.id), kind=ChangeKind.PERSONA)
    await notices.change_resolved(persona, ChangeStatus.REJECTED)
    await notices.change_resolved(access_change(request.id), ChangeStatus.PENDING)
    assert [k for k, _, _ in await notice_rows(world)] == ["access_requested"]
    # A request nobody was told about raises no outcome either.
    silent, _ = await world.registry.request_access(world.mg, "slack:silent")
    await notices.change_resolved(access_change(silent.id), ChangeStatus.REJECTED)
    assert [k for k, _, _ in await notice_rows(world)] == ["access_requested"]


@pytest.mark.parametrize(("text", "expected"), [
    ("/pending", ChatCommand("pending", (), "")),
    ("  /PENDING@IronClawBot  ", ChatCommand("pending", (), "")),
    ("/show chg_1", ChatCommand("show", ("chg_1",), "")),
    ("/approve chg_1 abcd1234", ChatCommand("approve", ("chg_1", "abcd1234"), "abcd1234")),
    ("/reject chg_1 not  today, thanks", ChatCommand(
        "reject", ("chg_1", "not"), "not  today, thanks")),
    ("/help", None), ("hello /approve chg_1", None), ("approve chg_1", None), ("", None),
    ("/", None), ("/approvex chg_1", None),
])
def test_the_command_grammar(text: str, expected: ChatCommand | None) -> None:
    assert parse_command(text) == expected


def test_a_chat_principal_is_named_after_its_stable_chat_identity() -> None:
    from ironclaw.host.gateway import ChatOrigin, Principal

    origin = ChatOrigin(user_id="telegram:12345", channel="telegram", instance="",
                        platform_id="12345")
    chat = Principal("chat:telegram:12345", frozenset({"owner"}), via=origin)
    assert chat.is_decider
    for name in ("chat:telegram:999", "telegram:12345", "owner"):
        with pytest.raises(ValueError):
            Principal(name, frozenset({"owner"}), via=origin)
    with pytest.raises(ValueError):  # a token principal's name never has a colon
        Principal("chat:telegram:12345", frozenset({"owner"}))
    for bad in ({"user_id": "slack:U1"},  # another channel's user
                {"user_id": "telegram:a b"}, {"user_id": "telegram:"},
                {"user_id": "telegram:1\u202e"}, {"platform_id": "x\n"}):
        fields = {"user_id": "telegram:12345", "channel": "telegram", "instance": "",
                  "platform_id": "12345", **bad}
        with pytest.raises(ValueError):
            ChatOrigin(**fields)
