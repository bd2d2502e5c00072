"""Shared harness for the delivery, scheduling, questions and sweeper tests (no tests).

Everything is real: host.db (SQLCipher), the key store, the sessions' inbound queues,
the ``Channels`` actor with the ``LocalChannel`` adapter, the change store. Only the
sessions side (wake sink, progress, health) is a recorder, because it is another
issue's code and this is its boundary.

The test modules import this one by its basename (pytest's default ``prepend`` import
mode puts this directory on ``sys.path``).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

from ironclaw.contract.clock import MAX_TIMESTAMP_US, now_us
from ironclaw.contract.enums import MessageKind, SessionMode
from ironclaw.contract.ids import MessageId
from ironclaw.contract.queue import InboundReader
from ironclaw.contract.rows import InboundMessage, OutboundMessage, RowRejection
from ironclaw.host.audit import open_audit_log
from ironclaw.host.channels import Channels, DeliveryFailed, InboundEvent, LocalChannel
from ironclaw.host.channels.base import OutboundDelivery
from ironclaw.host.channels.ledger import DeliveryLedger
from ironclaw.host.delivery import Delivery, DeliveryPolicy, DeliveryRecords
from ironclaw.host.gateway import Gateway
from ironclaw.host.inbound import SessionInbox
from ironclaw.host.inbound.queues import SessionQueues
from ironclaw.host.keys import FileMasterKeySource, KeyStore
from ironclaw.host.mailboxes import SessionHealth, TailBatch
from ironclaw.host.questions import Questions
from ironclaw.host.registry import AgentGroup, Registry, RegistryDestination, Session
from ironclaw.host.scheduling import Scheduler
from ironclaw.host.store import HostStore, open_host_store
from ironclaw.host.store.changes import ChangeStore
from ironclaw.runtime import TrioClock, WallClock
from tests.support.events import RecordingSink

# 2025-03-28T12:00:00Z: a Friday, two days before Europe/Berlin springs forward.
EPOCH_US = 1_743_163_200_000_000


class WakeRecorder:
    def __init__(self) -> None:
        self.wakes: list[tuple[str, str]] = []

    async def wake(self, session_id: str, reason: str = "message") -> None:
        await trio.lowlevel.checkpoint()
        self.wakes.append((session_id, reason))

    def of(self, session_id: str) -> list[str]:
        return [reason for sid, reason in self.wakes if sid == session_id]


class ProgressRecorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self._changed = trio.Event()

    async def handled_through(self, session_id: str, seq: int) -> None:
        await trio.lowlevel.checkpoint()
        self.calls.append((session_id, seq))
        self._changed.set()
        self._changed = trio.Event()

    def of(self, session_id: str) -> list[int]:
        return [seq for sid, seq in self.calls if sid == session_id]

    async def wait_through(self, session_id: str, seq: int) -> None:
        while not self.of(session_id) or self.of(session_id)[-1] < seq:
            await self._changed.wait()


class ScriptedLocal(LocalChannel):
    """The real local channel, plus a global delivery order and switchable failures:
    a conversation (or a text) in ``failing`` refuses deliveries with the given error."""

    def __init__(self, ledger: DeliveryLedger) -> None:
        super().__init__(max_text_chars=256 * 1024, ledger=ledger)
        self.order: list[tuple[str, str]] = []  # (conversation, text), as delivered
        self.failing: dict[str, DeliveryFailed] = {}
        self.attempts: dict[str, int] = {}
        self.asked: list[OutboundDelivery] = []  # every delivery, as handed to the channel

    async def deliver(self, delivery: OutboundDelivery):  # type: ignore[no-untyped-def]
        self.attempts[delivery.outbound_id] = self.attempts.get(delivery.outbound_id, 0) + 1
        self.asked.append(delivery)
        error = self.failing.get(delivery.platform_id) or self.failing.get(delivery.text)
        if error is not None:
            await trio.lowlevel.checkpoint()
            raise DeliveryFailed(str(error), retryable=error.retryable,
                                 retry_after=error.retry_after)
        receipt = await super().deliver(delivery)
        if not receipt.duplicate:
            self.order.append((delivery.platform_id, delivery.text))
        return receipt

    def texts(self, conversation: str) -> list[str]:
        return [e.text for e in self.transcript(conversation) if e.role == "agent"]


@attrs.define
class Harness:
    tmp: Path
    store: HostStore
    records: DeliveryRecords
    registry: Registry
    queues: SessionQueues
    local: ScriptedLocal
    channels: Channels
    events: RecordingSink
    wakes: WakeRecorder
    progress: ProgressRecorder
    clock: WallClock
    inbox: SessionInbox
    scheduler: Scheduler
    questions: Questions
    changes: ChangeStore
    gate: Gateway
    nursery: trio.Nursery
    seq: int = 1

    def delivery(self, policy: DeliveryPolicy | None = None, *,
                 report_delay: float = 0.0) -> Delivery:
        # Progress reported after every batch by default: the tests that stop the clock
        # wait for reports (test_delivery.py covers the delayed, shared report).
        policy = attrs.evolve(policy or DeliveryPolicy(), report_delay=report_delay)
        return Delivery(records=self.records, registry=self.registry, channels=self.channels,
                        inbox=self.inbox, progress=self.progress, gate=self.gate,
                        scheduler=self.scheduler, questions=self.questions,
                        events=self.events, policy=policy, clock=self.clock)

    async def start_delivery(self, policy: DeliveryPolicy | None = None, *,
                             report_delay: float = 0.0) -> Delivery:
        delivery = self.delivery(policy, report_delay=report_delay)
        await self.nursery.start(delivery.run)
        return delivery

    async def session(self, group: str, chat: str, *, thread: str | None = None,
                      mode: SessionMode = SessionMode.SHARED) -> Session:
        try:
            await self.registry.get_agent_group(group)
        except LookupError:
            await self.registry.put_agent_group(AgentGroup(id=group, name=group, folder=group))
        messaging = await self.registry.ensure_messaging_group("local", chat)
        return await self.registry.resolve_session(group, messaging.id, thread, mode)

    async def grant(self, group: str, name: str, **fields: Any) -> None:
        await self.registry.put_destination(RegistryDestination(group, name, **fields))

    def row(self, content: str, *, kind: MessageKind = MessageKind.CHAT,
            **fields: Any) -> OutboundMessage:
        seq, self.seq = self.seq, self.seq + 2
        return OutboundMessage(id=MessageId(fields.pop("id", f"out-{seq}")), seq=seq,
                               kind=kind, timestamp=now_us(), content=content, **fields)

    def batch(self, session: Session, rows: list[OutboundMessage],
              rejections: tuple[RowRejection, ...] = (), cursor: int | None = None
              ) -> TailBatch:
        top = max([r.seq for r in rows] + [r.seq or 0 for r in rejections] + [0])
        return TailBatch(session.id, session.agent_group_id, tuple(rows), rejections,
                             top if cursor is None else cursor)

    def inbound(self, session_id: str) -> list[InboundMessage]:
        keys = self.queues.keys(session_id)
        path = self.queues.paths(session_id).inbound_db
        if not path.exists():
            return []
        reader = InboundReader(path, keys.inbound)
        return reader.poll(now=MAX_TIMESTAMP_US).messages


@asynccontextmanager
async def open_harness(tmp: Path, clock: WallClock | None = None, *,
                       max_inbound_bytes: int | None = None) -> AsyncIterator[Harness]:
    state = tmp / "state"
    keystore = KeyStore.open(state, FileMasterKeySource.in_state_dir(state))
    clock = clock or TrioClock(EPOCH_US)
    async with open_host_store(tmp / "host.db", secrets.token_bytes(32)) as store, \
            open_audit_log(state, secrets.token_bytes(32)) as audit:
        registry = Registry(store)
        events, wakes = RecordingSink(), WakeRecorder()
        queues = SessionQueues(state, keystore, max_inbound_bytes=max_inbound_bytes,
                               events=events)
        inbox = SessionInbox(queues, wakes)
        changes = ChangeStore(store)
        # The durable ledger, as the control plane gives every channel adapter.
        records = DeliveryRecords(store)
        local = ScriptedLocal(records)
        router_send, router_receive = trio.open_memory_channel[InboundEvent](100)
        channels = Channels([local], router_send, deliver_timeout=1e9)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(channels.run)
                gate = Gateway(store, audit, events=events, clock=clock)
                await nursery.start(gate.run)
                yield Harness(
                    tmp=tmp, store=store, records=records, registry=registry, queues=queues,
                    local=local,
                    channels=channels, events=events, wakes=wakes,
                    progress=ProgressRecorder(), clock=clock, inbox=inbox,
                    scheduler=Scheduler(store, inbox, events=events, clock=clock),
                    questions=Questions(store, inbox, events=events, clock=clock),
                    changes=changes, gate=gate,
                    nursery=nursery)
                nursery.cancel_scope.cancel()
        finally:
            router_receive.close()
            await queues.aclose()


def health(session_id: str, *, running: bool = True, heartbeat_at: int | None = None,
           oldest_claim_at: int | None = None, tool: str | None = None,
           tool_timeout_ms: int | None = None, launched_at: int | None = None
           ) -> SessionHealth:
    return SessionHealth(session_id=session_id, agent_group_id="g1", running=running,
                         heartbeat_at=heartbeat_at, current_tool=tool,
                         tool_started_at=oldest_claim_at, tool_declared_timeout_ms=tool_timeout_ms,
                         oldest_claim_at=oldest_claim_at, last_activity=heartbeat_at or 0,
                         launched_at=launched_at)
