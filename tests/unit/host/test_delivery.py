"""The delivery actor over real parts: host.db, inbound queues, Channels + LocalChannel.

Covers exactly-once delivery across a restart, retries without head-of-line blocking,
dead letters, destination grants, agent-to-agent (grant, wake, hops, quota), held
rows, the watermark and per-session fairness. System actions have their own modules
(test_scheduling, test_questions) except the gate's, which is here.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from ironclaw.contract.enums import ChangeKind, ChangeStatus, MessageKind, SessionMode
from ironclaw.contract.rows import RowRejection
from ironclaw.host.channels import DeliveryFailed
from ironclaw.host.channels.base import DeliveryReceipt
from ironclaw.host.delivery import (
    ActionHandled,
    AgentMessageSent,
    DeadLettered,
    Delivered,
    DeliveryDenied,
    DeliveryHeld,
    DeliveryPolicy,
    DeliveryRecords,
    DeliveryRejected,
    DeliveryRetrying,
    WorkerFailed,
    delivery_key,
)
from ironclaw.host.gateway import ChangeSubmitted
from ironclaw.host.registry import InboundOrigin
from ironclaw.host.store import open_host_store
from tests.support.delivery import Harness, open_harness


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with open_harness(tmp_path) as harness:
        yield harness


async def record_status(h: Harness, session_id: str, outbound_id: str) -> tuple[Any, ...]:
    """The row's status and attempt count; it must name its session."""
    key = delivery_key(session_id, outbound_id)
    row = await h.store.call(lambda c: c.execute(
        "SELECT status, attempts, session_id FROM delivery_records WHERE outbound_id = ?",
        (key,)).fetchone())
    assert row[2] == session_id, f"the record of {key} names session {row[2]!r}"
    return tuple(row[:2])


async def test_chat_row_reaches_origin_once_even_across_a_restart(h: Harness) -> None:
    session = await h.session("g1", "chat-1")
    first, second = h.row("hello"), h.row("second")
    delivery = await h.start_delivery()
    await delivery.submit(h.batch(session, [first]))
    await h.progress.wait_through(session.id, first.seq)
    assert h.local.texts("chat-1") == ["hello"]

    # The same batch again, then a new row: the worker takes batches in order, so once
    # the new row is through, the repeat was seen and did nothing.
    await delivery.submit(h.batch(session, [first]))
    await delivery.submit(h.batch(session, [second]))
    await h.progress.wait_through(session.id, second.seq)

    # A restart: a fresh actor on the same host.db, fed from the start again.
    third = h.row("third")
    restarted = await h.start_delivery()
    before = len(h.progress.calls)
    await restarted.submit(h.batch(session, [first, second, third]))
    await h.progress.wait_through(session.id, third.seq)
    assert h.local.texts("chat-1") == ["hello", "second", "third"]
    # The adapter never even saw a repeat: the durable record stopped it first.
    assert h.local.attempts[delivery_key(session.id, first.id)] == 1
    assert h.local.attempts[delivery_key(session.id, second.id)] == 1
    assert h.progress.calls[before:] == [(session.id, third.seq)]
    assert await record_status(h, session.id, first.id) == ("delivered", 1)
    assert len(h.events.of(Delivered)) == 3


async def test_failing_send_is_retried_then_dead_lettered_while_later_rows_flow(
        h: Harness, mock_clock: trio.testing.MockClock) -> None:
    session = await h.session("g1", "chat-1")
    h.local.failing["boom"] = DeliveryFailed("platform down", retryable=True)
    delivery = await h.start_delivery(DeliveryPolicy(max_attempts=4))
    bad, good, later = h.row("boom"), h.row("fine"), h.row("also fine")
    start = h.clock.now_us()
    await delivery.submit(h.batch(session, [bad, good]))
    await delivery.submit(h.batch(session, [later]))
    await h.events.wait_for(Delivered, 2)
    # Time has not moved: the later rows went out while the first waits to retry.
    assert h.local.texts("chat-1") == ["fine", "also fine"]
    assert h.events.of(DeadLettered) == []
    assert [e.attempt for e in h.events.of(DeliveryRetrying)] == [1]
    assert h.progress.of(session.id) == []  # the watermark stays below the failing row
    assert await record_status(h, session.id, bad.id) == ("retrying", 1)

    mock_clock.autojump_threshold = 0
    (dead,) = await h.events.wait_for(DeadLettered)
    await h.progress.wait_through(session.id, later.seq)
    assert (dead.outbound_id, dead.attempts) == (bad.id, 4)
    assert "platform down" in dead.reason
    assert h.local.attempts[delivery_key(session.id, bad.id)] == 4
    assert [e.retry_in for e in h.events.of(DeliveryRetrying)] == [1.0, 2.0, 4.0]
    assert h.clock.now_us() - start >= 7_000_000  # the backoff was really waited out
    assert await record_status(h, session.id, bad.id) == ("dead", 4)
    assert h.local.texts("chat-1") == ["fine", "also fine"]


async def test_retry_after_is_honoured_and_a_permanent_failure_dead_letters_at_once(
        h: Harness, mock_clock: trio.testing.MockClock) -> None:
    session = await h.session("g1", "chat-1")
    h.local.failing["slow down"] = DeliveryFailed("429", retryable=True, retry_after=30.0)
    h.local.failing["never"] = DeliveryFailed("chat deleted", retryable=False)
    delivery = await h.start_delivery()
    limited, doomed = h.row("slow down"), h.row("never")
    await delivery.submit(h.batch(session, [limited, doomed]))
    (dead,) = await h.events.wait_for(DeadLettered)
    assert (dead.outbound_id, dead.attempts) == (doomed.id, 1)
    (retrying,) = await h.events.wait_for(DeliveryRetrying)
    assert retrying.retry_in == 30.0
    del h.local.failing["slow down"]
    start = h.clock.now_us()
    mock_clock.autojump_threshold = 0
    await h.progress.wait_through(session.id, doomed.seq)
    assert h.local.texts("chat-1") == ["slow down"]
    assert h.clock.now_us() - start >= 30_000_000


async def test_watermark_is_monotonic_and_stops_at_a_retrying_row(
        h: Harness, mock_clock: trio.testing.MockClock) -> None:
    session = await h.session("g1", "chat-1")
    delivery = await h.start_delivery()
    first = h.row("one")
    await delivery.submit(h.batch(session, [first]))
    await h.progress.wait_through(session.id, first.seq)

    h.local.failing["stuck"] = DeliveryFailed("flaky", retryable=True)
    stuck, after1, after2 = h.row("stuck"), h.row("two"), h.row("three")
    await delivery.submit(h.batch(session, [stuck, after1, after2], cursor=after2.seq + 4))
    await h.events.wait_for(Delivered, 3)
    assert h.progress.of(session.id) == [first.seq]  # not past the retrying row

    del h.local.failing["stuck"]
    mock_clock.autojump_threshold = 0
    await h.progress.wait_through(session.id, after2.seq + 4)  # the batch's cursor
    reported = h.progress.of(session.id)
    assert reported == sorted(set(reported))  # strictly rising
    assert reported[-1] == after2.seq + 4
    assert h.local.texts("chat-1") == ["one", "two", "three", "stuck"]


async def test_unreadable_rows_and_foreign_kinds_count_as_handled_with_events(
        h: Harness) -> None:
    session = await h.session("g1", "chat-1")
    delivery = await h.start_delivery()
    ok = h.row("ok")
    odd = h.row("a task?", kind=MessageKind.TASK)
    broken = RowRejection("messages_out", odd.seq + 2, "bad-row", "content: invalid UTF-8")
    await delivery.submit(h.batch(session, [ok, odd], rejections=(broken,)))
    await h.progress.wait_through(session.id, broken.seq or 0)
    rejected = h.events.of(DeliveryRejected)
    assert {(e.outbound_id, e.seq) for e in rejected} == {(odd.id, odd.seq),
                                                         ("bad-row", broken.seq)}
    assert h.local.texts("chat-1") == ["ok"]
    assert await record_status(h, session.id, odd.id) == ("rejected", 1)


async def test_named_and_explicit_targets_need_a_grant(h: Harness) -> None:
    session = await h.session("g1", "chat-1")
    await h.session("g2", "chat-2")
    # g2's grant does not count for g1.
    await h.grant("g2", "ops", type="channel", channel="local", platform_id="ops-room")
    delivery = await h.start_delivery()
    denied = h.row("to ops", destination="ops")
    sneaky = h.row("to a victim", channel_type="local", platform_id="victim-room")
    await delivery.submit(h.batch(session, [denied, sneaky]))
    await h.progress.wait_through(session.id, sneaky.seq)
    assert {e.outbound_id for e in h.events.of(DeliveryDenied)} == {denied.id, sneaky.id}
    assert h.local.conversations() == []
    assert await record_status(h, session.id, denied.id) == ("denied", 1)

    await h.grant("g1", "ops", type="channel", channel="local", platform_id="ops-room")
    rows = [
        h.row("named", destination="ops"),
        h.row("explicit grant", channel_type="local", platform_id="ops-room"),
        h.row("explicit origin", channel_type="local", platform_id="chat-1"),
        h.row("mismatch", destination="ops", platform_id="victim-room"),
        h.row("still a victim", channel_type="local", platform_id="victim-room"),
        h.row("threaded", thread_id="t-9"),
    ]
    await delivery.submit(h.batch(session, rows))
    await h.progress.wait_through(session.id, rows[-1].seq)
    assert h.local.texts("ops-room") == ["named", "explicit grant"]
    assert h.local.texts("chat-1") == ["explicit origin", "threaded"]
    # A thread the agent names is not honoured: the host threads replies itself.
    assert h.local.transcript("chat-1")[-1].thread_id is None
    assert h.local.texts("victim-room") == []
    assert len(h.events.of(DeliveryDenied)) == 4


async def test_agent_to_agent_needs_a_grant_and_wakes_the_target(h: Harness) -> None:
    sender = await h.session("g1", "chat-1")
    target = await h.session("g2", "chat-2")
    delivery = await h.start_delivery()
    ungranted = h.row("hello agent", destination="helper")
    spoofed = h.row("hello agent", channel_type="agent", platform_id="g2")
    await delivery.submit(h.batch(sender, [ungranted, spoofed]))
    await h.progress.wait_through(sender.id, spoofed.seq)
    assert len(h.events.of(DeliveryDenied)) == 2
    assert h.inbound(target.id) == [] and h.wakes.of(target.id) == []

    await h.grant("g1", "helper", type="agent", target_agent_group_id="g2")
    sent = h.row("hello agent", destination="helper")
    await delivery.submit(h.batch(sender, [sent]))
    (event,) = await h.events.wait_for(AgentMessageSent)
    assert (event.target_session_id, event.hops) == (target.id, 1)
    (row,) = h.inbound(target.id)
    assert row.content == f"[a2a from={sender.id} hop=1]\nhello agent"
    assert row.source_session_id == sender.id and row.engages
    assert h.wakes.of(target.id) == ["a2a"]
    assert h.local.conversations() == []  # nothing went to a chat

    # Handled again after a restart: the target does not get it twice.
    again = await h.start_delivery()
    await again.submit(h.batch(sender, [sent]))
    await h.progress.wait_through(sender.id, sent.seq)
    assert len(h.inbound(target.id)) == 1


async def test_agent_to_agent_prefers_the_agent_shared_session(h: Harness) -> None:
    sender = await h.session("g1", "chat-1")
    await h.session("g3", "chat-3")
    shared = await h.session("g3", "chat-4", mode=SessionMode.AGENT_SHARED)
    await h.session("g3", "chat-5")  # more recently active, but not the shared one
    await h.grant("g1", "team", type="agent", target_agent_group_id="g3")
    delivery = await h.start_delivery()
    await delivery.submit(h.batch(sender, [h.row("hi team", destination="team")]))
    (event,) = await h.events.wait_for(AgentMessageSent)
    assert event.target_session_id == shared.id


async def test_agent_chain_stops_at_the_hop_limit(h: Harness) -> None:
    a = await h.session("g1", "chat-1")
    b = await h.session("g2", "chat-2")
    await h.grant("g1", "b", type="agent", target_agent_group_id="g2")
    await h.grant("g2", "a", type="agent", target_agent_group_id="g1")
    delivery = await h.start_delivery(DeliveryPolicy(hop_limit=2))
    await delivery.submit(h.batch(a, [h.row("ping", destination="b")]))
    await h.events.wait_for(AgentMessageSent)
    (at_b,) = h.inbound(b.id)
    reply = h.row("pong", destination="a", in_reply_to=at_b.id)
    await delivery.submit(h.batch(b, [reply]))
    await h.events.wait_for(AgentMessageSent, 2)
    (at_a,) = h.inbound(a.id)
    assert at_a.content.startswith(f"[a2a from={b.id} hop=2]")
    third = h.row("ping again", destination="b", in_reply_to=at_a.id)
    await delivery.submit(h.batch(a, [third]))
    (denied,) = await h.events.wait_for(DeliveryDenied)
    assert denied.outbound_id == third.id and "hop limit" in denied.reason
    assert len(h.inbound(b.id)) == 1


async def test_agent_quota_per_sender_per_minute(
        h: Harness, mock_clock: trio.testing.MockClock) -> None:
    sender = await h.session("g1", "chat-1")
    target = await h.session("g2", "chat-2")
    await h.grant("g1", "helper", type="agent", target_agent_group_id="g2")
    delivery = await h.start_delivery(DeliveryPolicy(a2a_per_minute=3))
    rows = [h.row(f"msg {n}", destination="helper") for n in range(5)]
    await delivery.submit(h.batch(sender, rows))
    await h.progress.wait_through(sender.id, rows[-1].seq)
    assert len(h.inbound(target.id)) == 3
    denied = h.events.of(DeliveryDenied)
    assert [e.outbound_id for e in denied] == [rows[3].id, rows[4].id]
    assert all("quota" in e.reason for e in denied)
    mock_clock.jump(61)
    late = h.row("next minute", destination="helper")
    await delivery.submit(h.batch(sender, [late]))
    await h.progress.wait_through(sender.id, late.seq)
    assert len(h.inbound(target.id)) == 4


async def test_deliver_after_holds_the_row_until_due(
        h: Harness, mock_clock: trio.testing.MockClock) -> None:
    session = await h.session("g1", "chat-1")
    delivery = await h.start_delivery()
    due = h.clock.now_us() + 3_600_000_000
    held = h.row("later", deliver_after=due)
    now = h.row("now")
    too_far = h.row("next year", deliver_after=h.clock.now_us() + 365 * 86_400_000_000)
    await delivery.submit(h.batch(session, [held, now, too_far]))
    (event,) = await h.events.wait_for(DeliveryHeld)
    await h.events.wait_for(Delivered)
    await h.events.wait_for(DeliveryRejected)
    assert event.due_at == due
    assert h.local.texts("chat-1") == ["now"]
    assert h.progress.of(session.id) == []
    mock_clock.autojump_threshold = 0
    await h.progress.wait_through(session.id, too_far.seq)
    assert h.local.texts("chat-1") == ["now", "later"]
    assert h.clock.now_us() >= due


async def test_capability_requests_and_unknown_actions_are_held_never_applied(
        h: Harness) -> None:
    session = await h.session("g1", "chat-1")
    delivery = await h.start_delivery()
    known = h.row(json.dumps({"action": "enabled_tools", "payload": ["fetch"],
                              "reason": "need it"}), kind=MessageKind.SYSTEM)
    unknown = h.row(json.dumps({"action": "install_rootkit", "payload": {"x": 1}}),
                    kind=MessageKind.SYSTEM)
    malformed = h.row('{"action": "packages", "action": "persona"}', kind=MessageKind.SYSTEM)
    await delivery.submit(h.batch(session, [known, unknown, malformed]))
    await h.progress.wait_through(session.id, malformed.seq)

    pending = {c.change.kind: c for c in await h.changes.pending()}
    assert set(pending) == {ChangeKind.ENABLED_TOOLS, ChangeKind.PERMISSIONS}
    tools = pending[ChangeKind.ENABLED_TOOLS]
    assert json.loads(tools.change.after) == ["fetch"]
    # Before is filled from the registry, so the diff shows exactly what would change.
    before = (await h.registry.get_agent_group("g1")).enabled_tools
    assert json.loads(tools.change.before) == list(before) and tools.change.reason == "need it"
    assert tools.change.requested_by == f"session:{session.id}"
    assert json.loads(pending[ChangeKind.PERMISSIONS].change.after) == {
        "action": "install_rootkit", "payload": {"x": 1}}
    for stored in pending.values():
        assert stored.status is ChangeStatus.PENDING and stored.applied_at is None
        assert stored.change.agent_group == "g1"
    assert len(h.events.of(ChangeSubmitted)) == 2
    assert {e.action for e in h.events.of(ActionHandled)} == {"capability_request",
                                                              "unknown_action"}
    (rejected,) = h.events.of(DeliveryRejected)
    assert rejected.outbound_id == malformed.id and "malformed" in rejected.reason
    assert "persona" not in rejected.reason  # input is masked in events
    assert h.local.conversations() == []

    # The same rows handled again (their records lost, say) make no second change.
    await h.store.call(lambda c: c.execute("DELETE FROM delivery_records"))
    again = await h.start_delivery()
    await again.submit(h.batch(session, [known, unknown]))
    await h.progress.wait_through(session.id, unknown.seq)
    await h.events.wait_for(ActionHandled, 4)
    assert len(await h.changes.pending()) == 2


async def test_one_flooding_session_does_not_delay_another(h: Harness) -> None:
    noisy = await h.session("g1", "noisy")
    quiet = await h.session("g2", "quiet")
    delivery = await h.start_delivery()
    flood = [h.row(f"flood {n}") for n in range(500)]
    lone = h.row("me too")

    async def flood_in() -> None:
        for start in range(0, 500, 100):
            await delivery.submit(h.batch(noisy, flood[start:start + 100]))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(flood_in)
        await h.events.wait_for(Delivered, 5)  # the flood is under way
        await delivery.submit(h.batch(quiet, [lone]))
        await h.progress.wait_through(quiet.id, lone.seq)
        await h.progress.wait_through(noisy.id, flood[-1].seq)
    position = h.local.order.index(("quiet", "me too"))
    flood_before = sum(1 for chat, _ in h.local.order[:position] if chat == "noisy")
    # Well before the flood finished: it waited for a handful of rows, not hundreds.
    assert 5 <= flood_before < 100, flood_before
    assert len(h.local.texts("noisy")) == 500
    assert h.events.of(WorkerFailed) == []


async def test_a_batch_after_shutdown_is_left_for_the_next_start(h: Harness) -> None:
    """A tail can hand over a batch while the plane is tearing down; delivery, already
    stopped, leaves it untouched (no error, nothing recorded) so the next start re-reads
    it from the outbound file."""
    session = await h.session("g1", "chat-1")
    row = h.row("late")
    stopped = h.delivery()  # never started: the state delivery is in after shutdown
    await stopped.submit(h.batch(session, [row]))
    assert h.local.texts("chat-1") == []
    assert stopped.reported(session.id) == 0
    assert await stopped.records.lookup([delivery_key(session.id, row.id)]) == {}


async def test_receipts_are_durable_and_name_their_session(tmp_path: Path) -> None:
    """delivery_records is also the channels' ledger: a receipt (of a reply or of one
    part of a split reply) survives a restart and names the session its key names."""
    session, path, db_key = "ses_0123456789abcdef", tmp_path / "host.db", secrets.token_bytes(32)
    key = delivery_key(session, "out_1")
    async with open_host_store(path, db_key) as store:
        records = DeliveryRecords(store)
        assert await records.get(key) is None
        await records.put(DeliveryReceipt(f"{key}#1", "platform-78", duplicate=False))
        await records.put(DeliveryReceipt(key, "platform-77", duplicate=False))
        await records.put(DeliveryReceipt("cmd_0a1b", "platform-79", duplicate=False))
    async with open_host_store(path, db_key) as store:
        records = DeliveryRecords(store)
        assert await records.get(key) == DeliveryReceipt(key, "platform-77", duplicate=True)
        rows = await store.call(lambda c: c.execute(
            "SELECT outbound_id, session_id, attempts FROM delivery_records").fetchall())
    assert sorted(map(tuple, rows)) == [("cmd_0a1b", None, 1), (key, session, 1),
                                        (f"{key}#1", session, 1)]


async def test_a_reply_goes_where_the_host_recorded_its_message_not_where_the_agent_says(
        h: Harness) -> None:
    session = await h.session("g1", "chat-1")
    other = await h.session("g1", "chat-9")
    await h.grant("g1", "ops", type="channel", channel="local", platform_id="ops-room")
    await h.registry.record_origin(session.id, "in-1", InboundOrigin(
        "local", "", "chat-1", "t-1", "m-1"))
    await h.registry.record_origin(other.id, "in-9", InboundOrigin(
        "local", "", "chat-9", "t-9", "m-9"))
    rows = [
        h.row("answer", in_reply_to="in-1"),
        h.row("answer, steered", in_reply_to="in-1", thread_id="t-evil"),
        # Another session's message, named by a hostile agent: nothing is learnt from it.
        h.row("borrowed", in_reply_to="in-9"),
        h.row("of its own", thread_id="t-evil"),
        h.row("to ops", in_reply_to="in-1", destination="ops"),
    ]
    delivery = await h.start_delivery()
    await delivery.submit(h.batch(session, rows))
    await h.progress.wait_through(session.id, rows[-1].seq)
    asked = {d.text: (d.platform_id, d.thread_id, d.in_reply_to) for d in h.local.asked}
    assert asked == {
        "answer": ("chat-1", "t-1", "m-1"),
        "answer, steered": ("chat-1", "t-1", "m-1"),
        "borrowed": ("chat-1", None, None),
        "of its own": ("chat-1", None, None),
        "to ops": ("ops-room", None, None),
    }
    assert h.local.texts("chat-9") == []


@pytest.mark.parametrize("mode", list(SessionMode))
async def test_a_reply_goes_back_to_its_thread_in_every_session_mode(
        h: Harness, mode: SessionMode) -> None:
    thread = "t-1" if mode is SessionMode.PER_THREAD else None
    session = await h.session("g1", "chat-1", thread=thread, mode=mode)
    await h.registry.record_origin(session.id, "in-1", InboundOrigin(
        "local", "", "chat-1", "t-1", "m-1"))
    # An agent-shared session is fed by every chat wired to its group: each gets its
    # own answers.
    await h.registry.record_origin(session.id, "in-2", InboundOrigin(
        "local", "local", "chat-2", "t-2", "m-2"))
    rows = [h.row("first", in_reply_to="in-1"), h.row("proactive")]
    if mode is SessionMode.AGENT_SHARED:
        rows.append(h.row("second", in_reply_to="in-2"))
    delivery = await h.start_delivery()
    await delivery.submit(h.batch(session, rows))
    await h.progress.wait_through(session.id, rows[-1].seq)
    asked = {d.text: (d.platform_id, d.thread_id, d.in_reply_to) for d in h.local.asked}
    assert asked.pop("first") == ("chat-1", "t-1", "m-1")
    assert asked.pop("proactive") == ("chat-1", thread, None)
    if mode is SessionMode.AGENT_SHARED:
        assert asked.pop("second") == ("chat-2", "t-2", "m-2")
    assert asked == {}


async def test_batches_within_the_report_delay_share_one_report(
        h: Harness, mock_clock: trio.testing.MockClock) -> None:
    """A reply never waits on progress: it is reported report_delay after the batch,
    once for every batch handled meanwhile (two commits, not two per batch)."""
    session = await h.session("g1", "chat-1")
    delivery = await h.start_delivery(report_delay=0.5)
    rows = [h.row(f"m{i}") for i in range(3)]
    for row in rows:
        await delivery.submit(h.batch(session, [row]))
    await h.events.wait_for(Delivered, 3)
    assert h.progress.of(session.id) == []  # delivered, not yet reported
    mock_clock.jump(0.5)
    await h.progress.wait_through(session.id, rows[-1].seq)
    assert h.progress.of(session.id) == [rows[-1].seq]
