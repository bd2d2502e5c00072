"""Shared test helpers for the sandbox agent: the host's side of one session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import trio

from ironclaw.contract.agent_config import AgentConfig
from ironclaw.contract.cipher import SessionKeys
from ironclaw.contract.enums import MessageKind
from ironclaw.contract.ids import MessageId, new_message_id
from ironclaw.contract.queue import InboundWriter, OutboundPoll, OutboundReader, QueueNotReady
from ironclaw.contract.rows import NewInboundMessage, OutboundMessage
from sandbox_agent.agent import AgentOptions

# Retries in tests back off in milliseconds: the behaviour is the same, the wait is not.
# Every turn is claimed before it runs, as a slow turn would be: the tests that kill a
# turn mid-way count on its claim (tests/unit/agent/test_agent_claims.py covers the
# deferred claim of fast turns).
FAST = AgentOptions(backoff_base_s=0.001, backoff_max_s=0.01, claim_after_s=0.0)


@attrs.define
class HostSide:
    """One session's files, and the host's handles on them."""

    root: Path
    socket_dir: Path
    keys: SessionKeys
    config: AgentConfig
    inbound: InboundWriter
    reader: OutboundReader

    @property
    def workspace(self) -> Path:
        return self.config.workspace

    def with_config(self, **changes: Any) -> AgentConfig:
        self.config = attrs.evolve(self.config, **changes)
        return self.config

    def write_config(self) -> Path:
        path = self.root / "agent.json"
        path.write_text(self.config.render())
        return path

    def enqueue(self, text: str, *, engages: bool = True,
                kind: MessageKind = MessageKind.CHAT) -> MessageId:
        row = self.inbound.enqueue(NewInboundMessage(
            id=new_message_id("in"), kind=kind, content=text, engages=engages))
        return row.id

    def outbound(self) -> OutboundPoll:
        return self.reader.poll()

    def replies_to(self, message_id: MessageId) -> list[OutboundMessage]:
        return [m for m in self.outbound().messages if m.in_reply_to == message_id
                and m.kind is MessageKind.CHAT]

    def ack_of(self, message_id: MessageId) -> str | None:
        for ack in self.outbound().acks:
            if ack.message_id == message_id:
                return ack.status.value
        return None

    async def wait_until(self, condition: Callable[[], bool], within_s: float = 10.0) -> None:
        with trio.fail_after(within_s):
            while True:
                try:
                    if condition():
                        return
                except QueueNotReady:
                    pass  # the agent has not created its outbound file yet
                await trio.sleep(0.005)

    async def wait_for_reply(self, message_id: MessageId, within_s: float = 10.0
                             ) -> OutboundMessage:
        await self.wait_until(lambda: self.ack_of(message_id) in ("completed", "failed"),
                              within_s)
        replies = self.replies_to(message_id)
        assert len(replies) == 1, replies
        return replies[0]
