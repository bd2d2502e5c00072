"""One pass over inbound: every pending row answered exactly once.

The guarantee rests on one rule: whatever a turn produces (its reply, the messages and
requests its tools queued, the new history, and the ``completed`` ack) commits in ONE
outbound transaction. A crash before that commit leaves the row pending (acked at most
``processing``), so the next start runs it again from the same history and nothing of
the first attempt was ever visible; a crash after it leaves the row acked, and the
next pass drops it. Nothing in between exists.

A turn cut short by the host rather than by the message (the control plane stopped
the sandbox, or died; the model socket is gone) is not the message's fault: the host
says so at launch (``AgentConfig.previous_run_blameless``), and the model socket
refusing us ends the pass without a commit (``HostUnreachable``). Only the other
interruptions count towards ``MAX_TURN_ATTEMPTS``.

Everything a turn writes carries an id derived from the inbound row it answers
(``tools.turn_row_id``), so a turn run again after a restart sends under the same
delivery keys as any earlier run.

A turn's claim (the ``processing`` ack and the attempt count) commits only once the
turn proves slow: ``claim_after_s`` into it, or with its first tool call's marker,
whichever comes first. A turn that ends sooner commits once, its ``completed`` ack
and everything else together, and was never claimed. So a turn killed before its
claim (within that first moment, before any tool ran) is not counted towards
``MAX_TURN_ATTEMPTS``; a message that kills its sandbox that fast every time meets
the host's supervisor instead, which parks the session after repeated crashes.

Rows with ``engages = 0`` are context: they ride along in the next engaging row's
turn and are acked with it. Until then they simply stay pending in inbound, which is
therefore the agent's buffer; there is no second copy to keep in step.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence

import trio

from ironclaw.contract.agent_config import AgentConfig
from ironclaw.contract.clock import now_us
from ironclaw.contract.enums import AckStatus, MessageKind
from ironclaw.contract.ids import MessageId
from ironclaw.contract.jsonvalue import JSONRejected, parse_json
from ironclaw.contract.queue import OutboundBatch, QueueWriteRefused
from ironclaw.contract.rows import (
    MAX_CONTENT_BYTES,
    MAX_STATE_VALUE_BYTES,
    Destination,
    InboundMessage,
    NewOutboundMessage,
)

from .commands import parse_command, run_command
from .diagnostics import describe_failure
from .history import HISTORY_KEY, bound_history, decode_history, encode_history
from .messages import Message
from .mounts import Mounts
from .providers import HostUnreachable, Provider, ProviderError
from .queue_io import AgentQueues
from .tools import ToolContext, ToolRegistry, turn_row_id
from .tools.mcp import McpTools
from .turn import TurnOutcome, run_turn
from .workspace import Workspace

log = logging.getLogger(__name__)

FINISHED = (AckStatus.COMPLETED, AckStatus.FAILED)
# A row whose turn was interrupted this many times (the sandbox killed for memory, a
# hang the host put down) is failed rather than run again: one poisonous message must
# not take the session down in a restart loop.
MAX_TURN_ATTEMPTS = 3
# A turn still running this long after it started commits its claim; a faster one
# never does (its completed ack rides with its reply).
CLAIM_AFTER_S = 1.0
ATTEMPTS_KEY = "turn_attempts"
MAX_CONTEXT_CHARS = 32 * 1024
APOLOGY = ("Sorry, I could not reach my language model just now, so I cannot answer "
           "this message. Please try again in a little while.")
APOLOGY_INTERNAL = ("Sorry, something went wrong on my side while answering this "
                    "message. Please try again.")


class TurnProcessor:
    def __init__(self, *, config: AgentConfig, queues: AgentQueues, provider: Provider,
                 registry: ToolRegistry, system_prompt: str,
                 mcp: McpTools | None = None,
                 claim_after_s: float = CLAIM_AFTER_S) -> None:
        self._config = config
        self._mcp = mcp
        self._claim_after_s = claim_after_s
        # The running turn's claim while it is not yet committed.
        self._unclaimed: Callable[[OutboundBatch], None] | None = None
        self._queues = queues
        self._provider = provider
        self._registry = registry
        self._system_prompt = system_prompt
        self._workspace = Workspace(config.workspace)
        self._mounts = Mounts(config.mounts)
        self.history: list[Message] = []
        self._attempts: dict[str, int] = {}

    async def start(self) -> None:
        """Load the conversation, and clear a tool marker a crashed run left behind."""
        self.history = decode_history(await self._queues.get_state(HISTORY_KEY))
        self._attempts = decode_attempts(await self._queues.get_state(ATTEMPTS_KEY))
        if self._config.previous_run_blameless:
            # The host ended the last run (or died): the turn that run left unfinished
            # was not the message's doing. One turn runs at a time, so each claimed row
            # lost at most that one attempt. Written with the next claim.
            self._attempts = {row: n - 1 for row, n in self._attempts.items() if n > 1}
        await self._queues.commit(lambda batch: batch.set_container_state())

    async def process_pending(self) -> None:
        view = await self._queues.pending()
        statuses = view.statuses
        if view.rejected_ids:
            await self._fail_unreadable(view.rejected_ids, statuses)
        if not view.messages:
            return
        # Only rows still in flight need a count; forget the rest.
        in_flight = {m.id for m in view.messages}
        self._attempts = {i: n for i, n in self._attempts.items() if i in in_flight}
        context: list[InboundMessage] = []
        for row in view.messages:
            if statuses.get(row.id) in FINISHED:
                continue
            if not row.engages:
                context.append(row)
                continue
            if await self._handle(row, context, view.destinations):
                context = []

    async def _handle(self, row: InboundMessage, context: list[InboundMessage],
                      destinations: Sequence[Destination]) -> bool:
        """Answer one engaging row. Returns whether the context rows were settled with
        it; if not, they stay pending and go with the next engaging row."""
        command = parse_command(row.content) if row.kind is MessageKind.CHAT else None
        if command is not None:
            return await self._answer_command(row, context, command)
        tried = self._attempts.get(row.id, 0)
        if tried >= MAX_TURN_ATTEMPTS:
            log.warning("failing %s after %d interrupted attempts", row.id, tried)
            await self._fail(row, APOLOGY_INTERNAL)
            return False
        self._attempts[row.id] = tried + 1
        row_ids = [*(c.id for c in context), row.id]
        attempts = json.dumps(self._attempts)

        def claim(batch: OutboundBatch) -> None:
            batch.ack(row_ids, AckStatus.PROCESSING)
            batch.put_state(ATTEMPTS_KEY, attempts)

        ctx = ToolContext(workspace=self._workspace, persona=self._config.persona,
                          destinations=destinations, turn=row.id, mounts=self._mounts)
        try:
            outcome = await self._run_claimed_if_slow(claim, row, context, ctx)
        except HostUnreachable:
            # Nobody serves us: leave the row unanswered (claimed, if the turn got that
            # far) for whichever agent the next control plane runs, and take back this
            # attempt.
            self._attempts[row.id] = tried
            raise
        except ProviderError as exc:
            log.warning("turn for %s failed: %s", row.id, type(exc).__name__)
            await self._fail(row, APOLOGY)
            return False
        except Exception as exc:
            log.error("turn for %s crashed: %s", row.id, describe_failure(exc))
            await self._fail(row, APOLOGY_INTERNAL)
            return False
        limits = self._config.limits
        history = bound_history(outcome.transcript, max_messages=limits.history_max_messages,
                                max_bytes=limits.history_max_bytes)
        reply = clip_to_content_cap(outcome.reply)
        attempts = self._settle_attempts(row.id)

        def write(batch: OutboundBatch) -> None:
            for queued in ctx.outbox:
                batch.send(queued)
            if reply.strip():
                batch.send(chat_reply(row.id, reply))
            batch.put_state(HISTORY_KEY, encode_history(history))
            batch.put_state(ATTEMPTS_KEY, attempts)
            batch.ack(row_ids, AckStatus.COMPLETED)

        try:
            await self._queues.commit(write)
        except QueueWriteRefused as exc:
            log.warning("turn for %s could not be written: %s", row.id, describe_failure(exc))
            await self._fail(row, APOLOGY_INTERNAL)
            return False
        self.history = history
        log.info("answered %s (%d context rows, %d tool rounds, %d queued rows)", row.id,
                 len(context), outcome.tool_rounds, len(ctx.outbox))
        return True

    async def _turn_registry(self) -> ToolRegistry:
        """The compiled-in tools, plus the MCP tools granted now (listed every turn, so a
        revocation hides a tool from the next turn on)."""
        if self._mcp is None:
            return self._registry
        registry, refused = self._registry.extended(await self._mcp.list_tools())
        if refused:
            log.warning("MCP tools left out (name taken or refused): %s",
                        ", ".join(refused[:10]))
        return registry

    async def _run_claimed_if_slow(self, claim: Callable[[OutboundBatch], None],
                                   row: InboundMessage, context: list[InboundMessage],
                                   ctx: ToolContext) -> TurnOutcome:
        """Run the turn while a timer stands ready to commit its claim."""
        if self._claim_after_s <= 0:
            await self._queues.commit(claim)
        else:
            self._unclaimed = claim
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._claim_when_slow)
                registry = await self._turn_registry()
                outcome = await run_turn(
                    provider=self._provider, system=self._system_prompt,
                    history=self.history, user_text=compose_user_text(row, context),
                    registry=registry, ctx=ctx,
                    max_tool_iterations=self._config.limits.max_tool_iterations,
                    observer=self)
                # A claim already being written finishes first (a thread is never
                # abandoned), so the reply's commit always lands after it.
                nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            raise first_leaf(group) from None
        finally:
            self._unclaimed = None
        return outcome

    async def _claim_when_slow(self) -> None:
        await trio.sleep(self._claim_after_s)
        claim, self._unclaimed = self._unclaimed, None
        if claim is not None:
            await self._queues.commit(claim)

    async def _answer_command(self, row: InboundMessage, context: list[InboundMessage],
                              command: str) -> bool:
        outcome = run_command(command, config=self._config,
                              history_messages=len(self.history),
                              tool_names=self._registry.names())
        # A reset also settles the context waiting before it: it belongs to the
        # conversation being forgotten. Other commands leave it for the next turn.
        done = [row.id, *(c.id for c in context)] if outcome.reset_history else [row.id]

        def write(batch: OutboundBatch) -> None:
            batch.send(chat_reply(row.id, outcome.reply))
            if outcome.reset_history:
                batch.put_state(HISTORY_KEY, encode_history([]))
            batch.ack(done, AckStatus.COMPLETED)

        await self._queues.commit(write)
        if outcome.reset_history:
            self.history = []
        log.info("answered %s with %s", row.id, command)
        return outcome.reset_history

    async def _fail(self, row: InboundMessage, apology: str) -> None:
        """Tell the user, and settle the row as failed, in one commit. Context rows stay
        pending: they were not the problem, and the next turn still wants them."""
        attempts = self._settle_attempts(row.id)

        def write(batch: OutboundBatch) -> None:
            batch.send(chat_reply(row.id, apology))
            batch.put_state(ATTEMPTS_KEY, attempts)
            batch.ack([row.id], AckStatus.FAILED)

        await self._queues.commit(write)

    def _settle_attempts(self, row_id: MessageId) -> str:
        self._attempts.pop(row_id, None)
        return json.dumps(self._attempts)

    async def _fail_unreadable(self, ids: list[MessageId],
                               statuses: dict[MessageId, AckStatus]) -> None:
        unsettled = [i for i in ids if statuses.get(i) not in FINISHED]
        if unsettled:
            log.warning("failing %d inbound rows that did not validate", len(unsettled))
            await self._queues.commit(lambda b: b.ack(unsettled, AckStatus.FAILED))

    async def prune(self, *, retention_s: float) -> int:
        """Drop outbound rows the host has handled and acks it no longer needs. The live
        ids are read here, after every ack so far was committed and before any new one,
        so an ack is only dropped once its inbound row is really gone."""
        view = await self._queues.pending(with_live_ids=True)
        return await self._queues.prune(
            handled_through=view.outbound_handled_through,
            sent_before=now_us() - int(retention_s * 1_000_000),
            live_inbound_ids=view.live_ids or frozenset())

    # ToolObserver: the host reads these from container_state to tell a long tool call
    # from a stuck agent.

    async def tool_started(self, name: str, declared_timeout_s: float) -> None:
        started = now_us()
        # A turn that reaches a tool is claimed now if it was not yet, in this commit.
        claim, self._unclaimed = self._unclaimed, None

        def write(batch: OutboundBatch) -> None:
            if claim is not None:
                claim(batch)
            batch.set_container_state(
                current_tool=name, tool_declared_timeout_ms=int(declared_timeout_s * 1000),
                tool_started_at=started)

        await self._queues.commit(write)

    async def tool_finished(self) -> None:
        await self._queues.commit(lambda b: b.set_container_state())


def first_leaf(group: BaseExceptionGroup) -> BaseException:
    """The exception a turn's nursery wrapped: callers handle the bare types."""
    inner = group.exceptions[0]
    return first_leaf(inner) if isinstance(inner, BaseExceptionGroup) else inner


def decode_attempts(stored: str | None) -> dict[str, int]:
    try:
        raw = parse_json(stored or "{}", max_bytes=MAX_STATE_VALUE_BYTES)
    except JSONRejected:
        return {}
    if not isinstance(raw, dict):
        return {}
    return {k: v for k, v in raw.items() if isinstance(v, int) and not isinstance(v, bool)}


def chat_reply(in_reply_to: MessageId, text: str) -> NewOutboundMessage:
    # Platform, channel, thread and destination stay empty: the host routes a reply to
    # the chat its inbound row came from, which the agent cannot name or forge. The id
    # is the row's: a row is settled by one commit, and its answer (a reply, a command's
    # answer or an apology) has the same id whichever run writes it.
    return NewOutboundMessage(id=turn_row_id("out", in_reply_to, "reply"),
                              kind=MessageKind.CHAT, content=text, in_reply_to=in_reply_to)


def compose_user_text(row: InboundMessage, context: Sequence[InboundMessage]) -> str:
    body = _labelled(row)
    if not context:
        return body
    lines: list[str] = []
    budget = MAX_CONTEXT_CHARS
    for earlier in reversed(context):  # keep the newest when there is too much
        line = f"- {_labelled(earlier)}"
        if len(line) > budget:
            break
        budget -= len(line)
        lines.append(line)
    lines.reverse()
    skipped = len(context) - len(lines)
    header = "Earlier messages in this chat, for context"
    header += f" ({skipped} older ones omitted):" if skipped else ":"
    return f"{header}\n" + "\n".join(lines) + f"\n\n{body}"


def _labelled(row: InboundMessage) -> str:
    return row.content if row.kind is MessageKind.CHAT else f"[{row.kind.value}] {row.content}"


def clip_to_content_cap(text: str) -> str:
    raw = text.encode("utf-8")
    if len(raw) <= MAX_CONTENT_BYTES:
        return text
    marker = "\n[... reply cut: too long]"
    keep = MAX_CONTENT_BYTES - len(marker.encode())
    return raw[:keep].decode("utf-8", "ignore") + marker
