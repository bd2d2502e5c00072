"""One turn: the user's message in, the model and its tools back and forth, a reply out.

The turn touches no queue. It returns the reply and the new transcript, and its tools
fill the context's outbox; the caller commits all of it at once. Tool failures go back
to the model as error results (it can often recover); only the model being unreachable
fails the turn.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

import attrs
import trio

from .diagnostics import describe_failure
from .messages import Message, ToolCall, ToolResult, ToolResults, UserMessage
from .providers import Provider, ToolSpec
from .tools import ToolContext, ToolError, ToolRegistry

log = logging.getLogger(__name__)

# A tool result larger than this is cut before the model sees it; file tools already
# cap what they read, this is the backstop for every other tool.
MAX_TOOL_RESULT_CHARS = 1024 * 1024 + 4096


class ToolObserver(Protocol):
    """Told when a tool starts and ends, so the host can see a long call in progress."""

    async def tool_started(self, name: str, declared_timeout_s: float) -> None: ...

    async def tool_finished(self) -> None: ...


@attrs.frozen
class TurnOutcome:
    reply: str
    transcript: list[Message]  # the whole conversation including this turn, unbounded
    tool_rounds: int


def tool_specs(registry: ToolRegistry) -> list[ToolSpec]:
    return [ToolSpec(t.name, t.description, t.input_schema) for t in registry]


async def run_turn(*, provider: Provider, system: str, history: Sequence[Message],
                   user_text: str, registry: ToolRegistry, ctx: ToolContext,
                   max_tool_iterations: int, observer: ToolObserver) -> TurnOutcome:
    transcript: list[Message] = [*history, UserMessage(user_text)]
    specs = tool_specs(registry)
    rounds = 0
    while True:
        reply = await provider.complete(system, transcript, specs)
        transcript.append(reply.message)
        if not reply.tool_calls:
            return TurnOutcome(reply.message.text, transcript, rounds)
        if rounds >= max_tool_iterations:
            # Every tool call needs a result or the transcript is invalid for the next
            # turn; answer the unrun ones with an error and stop here.
            transcript.append(ToolResults(tuple(
                ToolResult(c.id, "not run: this turn's tool budget is spent", True)
                for c in reply.tool_calls)))
            note = f"(I stopped after {rounds} rounds of tool use without finishing.)"
            text = f"{reply.message.text}\n\n{note}" if reply.message.text else note
            return TurnOutcome(text, transcript, rounds)
        rounds += 1
        results = [await run_tool_call(registry, ctx, call, observer)
                   for call in reply.tool_calls]
        transcript.append(ToolResults(tuple(results)))


async def run_tool_call(registry: ToolRegistry, ctx: ToolContext, call: ToolCall,
                        observer: ToolObserver) -> ToolResult:
    tool = registry.get(call.name)
    if tool is None:
        return ToolResult(call.id, f"unknown tool {call.name!r:.80}; available: "
                          f"{', '.join(registry.names())}", True)
    if call.input_error is not None:
        return ToolResult(call.id, call.input_error, True)
    await observer.tool_started(tool.name, tool.timeout_s)
    try:
        with trio.fail_after(tool.timeout_s):
            # A copy: a tool must not be able to edit the transcript's record of the call.
            output = await tool.invoke(ctx, dict(call.input))
    except ToolError as exc:
        return ToolResult(call.id, str(exc) or "the tool failed", True)
    except trio.TooSlowError:
        return ToolResult(call.id, f"timed out after {tool.timeout_s:.0f}s", True)
    except Exception as exc:
        # A bug in a tool must not end the conversation; the model hears the type only,
        # never a traceback with paths or data in it.
        log.error("tool %s failed: %s", tool.name, describe_failure(exc))
        return ToolResult(call.id, f"the tool failed unexpectedly ({type(exc).__name__})",
                          True)
    finally:
        with trio.CancelScope(shield=True):
            await observer.tool_finished()
    if len(output) > MAX_TOOL_RESULT_CHARS:
        output = output[:MAX_TOOL_RESULT_CHARS] + "\n[... output cut]"
    return ToolResult(call.id, output)
