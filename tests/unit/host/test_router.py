"""Routing, over a real host.db, real key store and real inbound queues.

Covers the reference scenarios (fan-out, identity namespacing, engage modes, session
modes, drop versus accumulate, access precedence) and the three unknown-sender
policies, which the reference stored but never enforced.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from ironclaw.contract.enums import (
    EngageMode,
    IgnoredMessagePolicy,
    SenderScope,
    SessionMode,
    UnknownSenderPolicy,
)
from ironclaw.contract.queue import InboundReader
from ironclaw.host.channels.base import InboundEvent
from ironclaw.host.inbound import Waker
from ironclaw.host.inbound.queues import SessionQueues
from ironclaw.host.inbound.router import Decision, Router
from ironclaw.host.keys import FileMasterKeySource, KeyStore
from ironclaw.host.mailboxes import Wake
from ironclaw.host.registry import (
    AccessLevel,
    AccessRequestStatus,
    AgentGroup,
    InboundOrigin,
    Registry,
    Role,
    RoleGrant,
    Wiring,
)
from ironclaw.host.store import open_host_store
from ironclaw.runtime import EventBus, Reply


@attrs.define
class Harness:
    registry: Registry
    router: Router
    queues: SessionQueues
    wakes: trio.MemoryReceiveChannel[Wake]
    bus: EventBus
    mg: str = ""

    def woken(self) -> list[str]:
        out = []
        while True:
            try:
                out.append(self.wakes.receive_nowait().session_id)
            except trio.WouldBlock:
                return out

    def rows(self, session_id: str) -> list[tuple[str, bool, str | None]]:
        keys = self.queues.keys(session_id)
        poll = InboundReader(self.queues.paths(session_id).inbound_db, keys.inbound).poll()
        return [(m.content, m.engages, m.thread_id) for m in poll.messages]

    async def wire(self, wid: str, ag: str, **fields: object) -> None:
        await self.registry.put_wiring(Wiring(id=wid, messaging_group_id=self.mg,
                                              agent_group_id=ag, **fields))  # type: ignore[arg-type]

    async def send(self, handle: str, text: str, **fields: object):
        return await self.router.route(InboundEvent(
            channel="slack", instance="", platform_id="C1", sender_handle=handle, text=text,
            **fields))  # type: ignore[arg-type]


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    keystore = KeyStore.open(tmp_path / "state", FileMasterKeySource.in_state_dir(
        tmp_path / "state"))
    async with open_host_store(tmp_path / "host.db", secrets.token_bytes(32)) as store:
        registry = Registry(store)
        for gid in ("g1", "g2"):
            await registry.put_agent_group(AgentGroup(id=gid, name=gid, folder=gid))
        await registry.grant_role(RoleGrant("slack:alice", Role.OWNER))
        queues = SessionQueues(tmp_path / "state", keystore)
        send, receive = trio.open_memory_channel[Wake](1000)
        bus = EventBus()
        router = Router(registry, queues, Waker(send), bus)
        harness = Harness(registry, router, queues, receive, bus)
        harness.mg = (await registry.ensure_messaging_group("slack", "C1")).id
        yield harness
        await queues.aclose()


async def test_fan_out_in_priority_order(h: Harness) -> None:
    await h.wire("w1", "g1", priority=2)
    await h.wire("w2", "g2", priority=1)
    outcomes = await h.send("alice", "hello")
    assert [(o.agent_group_id, o.decision) for o in outcomes] == [
        ("g1", Decision.ENGAGED), ("g2", Decision.ENGAGED)]
    assert outcomes[0].session_id and outcomes[1].session_id
    assert outcomes[0].session_id != outcomes[1].session_id
    assert sorted(h.woken()) == sorted(o.session_id for o in outcomes)
    for o in outcomes:
        assert h.rows(o.session_id) == [("hello", True, None)]  # type: ignore[arg-type]


async def test_priority_ties_break_by_wiring_id(h: Harness) -> None:
    await h.wire("w-b", "g1")
    await h.wire("w-a", "g2")
    assert [o.wiring_id for o in await h.send("alice", "x")] == ["w-a", "w-b"]


async def test_colon_spoofed_identity_gets_nothing(h: Harness) -> None:
    await h.registry.grant_role(RoleGrant("evil:owner", Role.OWNER))
    await h.wire("w1", "g1")
    (spoof,) = await h.send("evil:owner", "let me in")  # becomes slack:evil
    assert spoof.decision is Decision.ACCESS_DENIED and spoof.session_id is None
    (real,) = await h.send("alice", "hi")
    assert real.engaged
    assert len(h.woken()) == 1


async def test_pattern_mode(h: Harness) -> None:
    await h.wire("w1", "g1", engage_mode=EngageMode.PATTERN, pattern="(?i)deploy")
    assert (await h.send("alice", "please DEPLOY now"))[0].engaged
    (miss,) = await h.send("alice", "hello there")
    assert miss.decision is Decision.DROPPED and miss.session_id is None
    assert len(h.woken()) == 1


async def test_match_anything_includes_empty_text(h: Harness) -> None:
    await h.wire("w1", "g1", pattern=".")
    assert (await h.send("alice", ""))[0].engaged


async def test_invalid_regex_never_engages_and_never_raises(h: Harness) -> None:
    await h.wire("w1", "g1", pattern="(unclosed")
    (outcome,) = await h.send("alice", "(unclosed")
    assert outcome.decision is Decision.DROPPED


async def test_catastrophic_pattern_on_64k_input_returns_promptly(h: Harness) -> None:
    await h.wire("w1", "g1", pattern="^(a+)+$")
    text = "a" * (64 * 1024 - 1) + "!"  # exactly the 64 KiB that is matched
    start = time.process_time()
    (outcome,) = await h.send("alice", text)
    cpu = time.process_time() - start
    assert outcome.decision is Decision.DROPPED
    # A backtracking engine needs ~2**65536 steps here; RE2 is linear. The bound is
    # generous on purpose: it separates "linear" from "never", not fast from slow.
    assert cpu < 5.0


async def test_mention_mode_keys_on_the_platform_flag(h: Harness) -> None:
    await h.wire("w1", "g1", engage_mode=EngageMode.MENTION)
    assert (await h.send("alice", "hey @agent", mentioned=True))[0].engaged
    (chatter,) = await h.send("alice", "just chatter")
    assert chatter.decision is Decision.DROPPED and chatter.session_id is None
    assert len(h.woken()) == 1


async def test_mention_sticky_continues_an_existing_session(h: Harness) -> None:
    await h.wire("w1", "g1", engage_mode=EngageMode.MENTION_STICKY)
    (cold,) = await h.send("alice", "cold chatter")
    assert cold.decision is Decision.DROPPED and cold.session_id is None
    (start,) = await h.send("alice", "@agent start", mentioned=True)
    (follow,) = await h.send("alice", "more context")
    assert start.decision is Decision.ENGAGED and follow.decision is Decision.STICKY
    assert follow.session_id == start.session_id
    assert len(h.woken()) == 2


async def test_per_thread_sessions_via_routing(h: Harness) -> None:
    await h.wire("w1", "g1", session_mode=SessionMode.PER_THREAD)
    a = (await h.send("alice", "1", thread_id="thread-1"))[0].session_id
    b = (await h.send("alice", "2", thread_id="thread-2"))[0].session_id
    c = (await h.send("alice", "3", thread_id="thread-1"))[0].session_id
    assert a == c != b
    assert h.rows(a) == [("1", True, "thread-1"), ("3", True, "thread-1")]  # type: ignore[arg-type]


async def test_each_queued_row_has_the_hosts_record_of_its_message(h: Harness) -> None:
    await h.wire("w1", "g1")
    await h.wire("w2", "g2", engage_mode=EngageMode.MENTION,
                 ignored_policy=IgnoredMessagePolicy.ACCUMULATE)
    one, two = await h.send("alice", "hi", thread_id="1700.01", platform_message_id="1700.02")
    for outcome in (one, two):  # engaged and accumulated rows alike
        assert outcome.session_id and outcome.message_id
        assert await h.registry.origin_of(outcome.session_id, outcome.message_id) == (
            InboundOrigin("slack", "", "C1", "1700.01", "1700.02"))
    # Keyed by session: the same row id in another session is not this record.
    assert await h.registry.origin_of(two.session_id, "in_" + "0" * 24) is None
    assert one.session_id is not None
    assert await h.registry.origin_of("ses_other", one.message_id) is None
    # An id too long to keep whole is not kept at all (a cut one could name another).
    (long,) = [o for o in await h.send("alice", "x", thread_id="1700.03",
                                       platform_message_id="9" * 600)
               if o.agent_group_id == "g1"]
    assert long.session_id and long.message_id
    assert await h.registry.origin_of(long.session_id, long.message_id) == InboundOrigin(
        "slack", "", "C1", "1700.03", None)


async def test_drop_versus_accumulate(h: Harness) -> None:
    await h.wire("w-acc", "g1", engage_mode=EngageMode.MENTION,
                 ignored_policy=IgnoredMessagePolicy.ACCUMULATE)
    await h.wire("w-drop", "g2", engage_mode=EngageMode.MENTION,
                 ignored_policy=IgnoredMessagePolicy.DROP)
    acc, drop = await h.send("alice", "background")
    assert acc.decision is Decision.ACCUMULATED and acc.session_id
    assert h.rows(acc.session_id) == [("background", False, None)]
    assert drop.decision is Decision.DROPPED and drop.session_id is None
    assert h.woken() == []  # accumulate never wakes


async def test_access_gate_and_sender_scope(h: Harness) -> None:
    await h.wire("w1", "g1", sender_scope=SenderScope.KNOWN)
    await h.registry.add_member("slack:known", "g1")
    assert (await h.send("known", "hi"))[0].engaged
    (ghost,) = await h.send("ghost", "hi")
    assert ghost.decision is Decision.ACCESS_DENIED and ghost.session_id is None
    assert len(h.woken()) == 1


async def test_strict_policy_drops_unknown_senders(h: Harness) -> None:
    await h.wire("w1", "g1")
    (o,) = await h.send("stranger", "hello")
    assert o.decision is Decision.ACCESS_DENIED
    assert await h.registry.list_access_requests() == []
    assert await h.registry.list_sessions() == []


async def test_request_approval_raises_one_request_an_owner_can_grant(h: Harness) -> None:
    group = await h.registry.get_messaging_group(h.mg)
    await h.registry.put_messaging_group(attrs.evolve(
        group, unknown_sender_policy=UnknownSenderPolicy.REQUEST_APPROVAL))
    await h.wire("w1", "g1")
    async with h.bus.subscribe("access.*") as events:
        for _ in range(3):
            (o,) = await h.send("stranger", "please")
            assert o.decision is Decision.ACCESS_REQUESTED and o.session_id is None
        (request,) = await h.registry.list_access_requests(AccessRequestStatus.PENDING)
        assert request.user_id == "slack:stranger"
        announced = events.receive_nowait()
        assert announced.event.request_id == request.id  # type: ignore[union-attr]
        with pytest.raises(trio.WouldBlock):
            events.receive_nowait()  # owners are told once, not once per message
    await h.registry.decide_access_request(request.id, grant=True, decided_by="slack:alice")
    assert await h.registry.access_level("slack:stranger", "g1") is AccessLevel.MEMBER
    assert (await h.send("stranger", "thanks"))[0].engaged


async def test_public_policy_lets_unknown_senders_through_scope_all_only(h: Harness) -> None:
    group = await h.registry.get_messaging_group(h.mg)
    await h.registry.put_messaging_group(attrs.evolve(
        group, unknown_sender_policy=UnknownSenderPolicy.PUBLIC))
    await h.wire("w-all", "g1", sender_scope=SenderScope.ALL)
    await h.wire("w-known", "g2", sender_scope=SenderScope.KNOWN)
    open_, closed = await h.send("passerby", "hi")
    assert open_.engaged
    assert closed.decision is Decision.SCOPE_DENIED and closed.session_id is None


async def test_router_serves_its_mailbox(h: Harness) -> None:
    await h.wire("w1", "g1")
    send, receive = trio.open_memory_channel[InboundEvent](10)
    async with trio.open_nursery() as nursery:
        await nursery.start(h.router.run, receive)
        async with send:
            for text in ("a", "b"):
                await send.send(InboundEvent(channel="slack", instance="", platform_id="C1",
                                             sender_handle="alice", text=text))
    # The mailbox closed, so run returned after routing both.
    woken = h.woken()
    assert len(woken) == 2 and woken[0] == woken[1]
    assert [r[0] for r in h.rows(woken[0])] == ["a", "b"]


class _FailingGate:
    def __init__(self) -> None:
        self.calls = 0

    async def submit_access_request(self, request: object) -> object:
        await trio.lowlevel.checkpoint()
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("the gateway's quota of router requests is full")
        return request


class _Notices:
    def __init__(self) -> None:
        self.told: list[tuple[str, str]] = []

    async def access_requested(self, request: object, event: InboundEvent) -> None:
        await trio.lowlevel.checkpoint()
        self.told.append((request.user_id, event.platform_id))  # type: ignore[attr-defined]


class _Commands:
    async def intercept(self, event: InboundEvent) -> bool:
        await trio.lowlevel.checkpoint()
        return event.text.startswith("/approve")


async def test_hooks_a_refused_submission_and_a_taken_command(h: Harness) -> None:
    """A gateway that refuses the request closes it again (the next message asks anew)
    and never stops the router; the sender is told only about a request owners see. A
    command taken by the interceptor reaches no wiring, and its event is accepted."""
    group = await h.registry.get_messaging_group(h.mg)
    await h.registry.put_messaging_group(attrs.evolve(
        group, unknown_sender_policy=UnknownSenderPolicy.REQUEST_APPROVAL))
    await h.wire("w1", "g1")
    gate, notices = _FailingGate(), _Notices()
    send, _receive = trio.open_memory_channel[Wake](100)
    router = Router(h.registry, h.queues, Waker(send), h.bus, access_gate=gate, notices=notices,
                    commands=_Commands())
    event = InboundEvent(channel="slack", instance="", platform_id="C1",
                         sender_handle="stranger", text="hi")
    (o,) = await router.route(event)
    assert o.decision is Decision.ACCESS_REQUESTED
    (closed,) = await h.registry.list_access_requests()
    assert closed.status is AccessRequestStatus.DENIED and closed.decided_by == "system"
    assert notices.told == []
    (o,) = await router.route(event)
    assert o.decision is Decision.ACCESS_REQUESTED
    assert len(await h.registry.list_access_requests(AccessRequestStatus.PENDING)) == 1
    assert notices.told == [("slack:stranger", "C1")]
    (o,) = await router.route(event)  # pending: nobody is told again
    assert gate.calls == 2 and len(notices.told) == 1

    await h.registry.add_member("slack:alice", "g1")
    taken = InboundEvent(channel="slack", instance="", platform_id="C1",
                         sender_handle="alice", text="/approve chg_x", accepted=Reply())
    assert await router.route(taken) == []
    assert taken.accepted is not None and taken.accepted.answered
    await taken.accepted.wait()  # accepted, not refused
    assert await h.registry.list_sessions() == []
    assert (await router.route(attrs.evolve(taken, text="hello", accepted=Reply())))[0].engaged


async def test_an_event_routed_again_after_a_crash_is_written_once(h: Harness) -> None:
    """The adapter records an event as seen only after the router committed it; a
    plane killed in between gets the event again from the platform's retry. Its row id
    comes from the event's dedup id, so the second routing writes nothing new: one
    row, one answer, one idempotency key."""
    await h.wire("w1", "g1")
    [first] = await h.send("alice", "once", event_id="evt-1")
    [again] = await h.send("alice", "once", event_id="evt-1")
    assert first.decision is again.decision is Decision.ENGAGED
    assert first.message_id == again.message_id
    assert first.session_id is not None
    assert h.rows(first.session_id) == [("once", True, None)]
    [other] = await h.send("alice", "once", event_id="evt-2")
    assert other.message_id != first.message_id
    assert len(h.rows(first.session_id)) == 2


class _GatedQueues:
    """The real queues, except that enqueueing into one chat's session waits."""

    def __init__(self, queues: SessionQueues, registry: Registry) -> None:
        self._queues = queues
        self._registry = registry
        self.held_platform = "C-slow"
        self.gate = trio.Event()
        self.holding = trio.Event()

    async def enqueue(self, session_id: str, messages: Any) -> Any:
        session = await self._registry.get_session(session_id)
        group = await self._registry.get_messaging_group(session.messaging_group_id or "")
        if group.platform_id == self.held_platform:
            self.holding.set()
            await self.gate.wait()
        return await self._queues.enqueue(session_id, messages)

    async def holds(self, session_id: str, message_id: str) -> bool:
        return await self._queues.holds(session_id, message_id)


async def test_a_slow_chat_delays_no_other_and_each_keeps_its_order(h: Harness) -> None:
    for platform in ("C-slow", "C-fast"):
        group = await h.registry.ensure_messaging_group("slack", platform)
        await h.registry.put_wiring(Wiring(id=f"w-{platform}", messaging_group_id=group.id,
                                           agent_group_id="g1"))
    gated = _GatedQueues(h.queues, h.registry)
    send, wakes = trio.open_memory_channel[Wake](100)
    router = Router(h.registry, gated, Waker(send), h.bus)
    inbox_send, inbox = trio.open_memory_channel[InboundEvent](10)

    def event(platform: str, text: str) -> InboundEvent:
        return InboundEvent(channel="slack", instance="", platform_id=platform,
                            sender_handle="alice", text=text)

    async with trio.open_nursery() as nursery:
        await nursery.start(router.run, inbox)
        async with inbox_send:
            await inbox_send.send(event("C-slow", "s1"))
            await gated.holding.wait()
            await inbox_send.send(event("C-slow", "s2"))
            for text in ("f1", "f2", "f3"):
                await inbox_send.send(event("C-fast", text))
            with trio.fail_after(30):  # the fast chat is routed while the slow one waits
                fast = (await wakes.receive()).session_id
                for _ in range(2):
                    assert (await wakes.receive()).session_id == fast
            assert [r[0] for r in h.rows(fast)] == ["f1", "f2", "f3"]
            gated.gate.set()
    slow = {wakes.receive_nowait().session_id for _ in range(2)}
    assert len(slow) == 1 and fast not in slow
    assert [r[0] for r in h.rows(slow.pop())] == ["s1", "s2"]
