"""One turn: the user's message in, the model and its tools back and forth, a reply out.

The turn touches no queue. It returns the reply and the new transcript, and its tools
fill the context's outbox; the caller commits all of it at once. Tool failures go back
to the model as error results (it can often recover); only the model being unreachable
fails the turn.

Why the model stopped decides what happens next (``StopKind``):
- a reply cut off by the output limit never has its tool calls run (their arguments may
  be cut short yet still parse: a truncated ``write_file`` would write half a file); the
  user is told plainly that the answer was cut off;
- a refusal or a content filter becomes a clear message to the user, never silence;
- an empty answer is said to be empty, so the user is never left with nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

import attrs
import trio

from .diagnostics import describe_failure
from .messages import (
    AssistantMessage,
    Message,
    ModelReply,
    StopKind,
    ToolCall,
    ToolResult,
    ToolResults,
    UserMessage,
)
from .providers import Provider, ToolSpec
from .tools import ToolContext, ToolError, ToolRegistry

log = logging.getLogger(__name__)

# A tool result larger than this is cut before the model sees it; file tools already
# cap what they read, this is the backstop for every other tool.
MAX_TOOL_RESULT_CHARS = 1024 * 1024 + 4096

CUT_OFF_NOTE = "(This answer was cut off: the model reached its output limit.)"
CUT_OFF_CALL_NOTE = ("(The model's answer was cut off by its output limit in the middle "
                     "of a tool call ({names}); the call was not run. Ask again, perhaps "
                     "for a smaller step.)")
REFUSED_NOTE = "(The model declined to answer this.)"
FILTERED_NOTE = "(The model provider's content filter withheld this answer.)"
EMPTY_NOTE = "(The model returned an empty answer.)"


class ToolObserver(Protocol):
    """Told when a tool starts and ends, so the host can see a long call in progress."""

    async def tool_started(self, name: str, declared_timeout_s: float) -> None: ...

    async def tool_finished(self) -> None: ...


@attrs.frozen
class TurnOutcome:
    reply: str
    transcript: list[Message]  # the whole conversation including this turn, unbounded
    tool_rounds: int
    # Why the last model answer of the turn stopped.
    stop: StopKind = StopKind.COMPLETE


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
        final = _final_answer(reply)
        if final is not None:
            # Recorded without its tool calls: none of them runs, and a call without a
            # result would make the transcript invalid for the next turn.
            transcript.append(AssistantMessage(reply.message.text))
            return TurnOutcome(final, transcript, rounds, reply.stop)
        transcript.append(reply.message)
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


def _final_answer(reply: ModelReply) -> str | None:
    """What to tell the user when this answer ends the turn, or None to run its tool
    calls. Only an answer that stopped for its tool calls (or gave no reason) may run
    them."""
    text = reply.message.text
    if reply.stop is StopKind.REFUSED:
        said = reply.refusal or text
        return f"{REFUSED_NOTE}\n\n{said}" if said else REFUSED_NOTE
    if reply.stop is StopKind.FILTERED:
        return f"{text}\n\n{FILTERED_NOTE}" if text else FILTERED_NOTE
    if reply.stop is StopKind.TRUNCATED:
        if reply.tool_calls:
            names = ", ".join(sorted({call.name for call in reply.tool_calls}))
            note = CUT_OFF_CALL_NOTE.format(names=names[:200])
        else:
            note = CUT_OFF_NOTE
        return f"{text}\n\n{note}" if text else note
    if reply.tool_calls:
        return None
    return text if text.strip() else EMPTY_NOTE


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
