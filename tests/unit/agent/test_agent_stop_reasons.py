"""Why the model stopped decides what the turn does: a cut-off answer never runs its
tool calls, a refusal or a filter is said plainly, and the user never gets silence."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from ironclaw.contract.agent_config import PersonaDocs
from sandbox_agent.messages import (
    AssistantMessage,
    Message,
    ModelReply,
    StopKind,
    ToolCall,
    ToolResults,
)
from sandbox_agent.providers import ToolSpec
from sandbox_agent.providers import anthropic as anthropic_wire
from sandbox_agent.providers import openai as openai_wire
from sandbox_agent.tools import Tool, ToolContext, ToolRegistry
from sandbox_agent.tools.base import schema
from sandbox_agent.turn import (
    CUT_OFF_NOTE,
    EMPTY_NOTE,
    FILTERED_NOTE,
    REFUSED_NOTE,
    TurnOutcome,
    run_turn,
)
from sandbox_agent.workspace import Workspace


class Recorder:
    def __init__(self) -> None:
        self.runs: list[Mapping[str, Any]] = []

    async def __call__(self, _ctx: ToolContext, args: Mapping[str, Any]) -> str:
        self.runs.append(dict(args))
        return "written"


class OneAnswer:
    def __init__(self, *replies: ModelReply) -> None:
        self.replies = list(replies)

    async def complete(self, system: str, messages: Sequence[Message],
                       tools: Sequence[ToolSpec]) -> ModelReply:
        return self.replies.pop(0)


class Quiet:
    async def tool_started(self, name: str, declared_timeout_s: float) -> None:
        pass

    async def tool_finished(self) -> None:
        pass


async def turn(tmp_path: Path, *replies: ModelReply) -> tuple[TurnOutcome, Recorder]:
    writer = Recorder()
    registry = ToolRegistry([Tool("write_file", "write", schema({}), writer)])
    ctx = ToolContext(workspace=Workspace(tmp_path), persona=PersonaDocs(), destinations=())
    outcome = await run_turn(provider=OneAnswer(*replies), system="S", history=[],
                             user_text="go", registry=registry, ctx=ctx,
                             max_tool_iterations=4, observer=Quiet())
    return outcome, writer


WRITE = ToolCall("c1", "write_file", {"path": "notes.txt", "content": "first half"})


@pytest.mark.parametrize("stop_reason", ["max_tokens", "length"])
async def test_a_truncated_tool_call_is_never_run(tmp_path: Path, stop_reason: str) -> None:
    outcome, writer = await turn(tmp_path, ModelReply(AssistantMessage("", (WRITE,)),
                                                      stop_reason))
    assert writer.runs == []
    assert outcome.stop is StopKind.TRUNCATED
    assert "cut off" in outcome.reply and "write_file" in outcome.reply
    assert "was not run" in outcome.reply
    # The transcript stays valid: no call is left without a result.
    assert not any(isinstance(m, AssistantMessage) and m.tool_calls
                   for m in outcome.transcript)


async def test_a_complete_tool_call_runs(tmp_path: Path) -> None:
    _outcome, writer = await turn(
        tmp_path, ModelReply(AssistantMessage("", (WRITE,)), "tool_use"),
        ModelReply(AssistantMessage("done"), "end_turn"))
    assert writer.runs == [{"path": "notes.txt", "content": "first half"}]


async def test_truncated_text_is_delivered_with_a_plain_note(tmp_path: Path) -> None:
    outcome, _ = await turn(tmp_path, ModelReply(AssistantMessage("The three steps: one,"),
                                                 "length"))
    assert outcome.reply == f"The three steps: one,\n\n{CUT_OFF_NOTE}"


@pytest.mark.parametrize(("reply", "expected"), [
    (ModelReply(AssistantMessage(""), "refusal"), REFUSED_NOTE),
    (ModelReply(AssistantMessage(""), "stop", StopKind.REFUSED, "I can't help with that."),
     f"{REFUSED_NOTE}\n\nI can't help with that."),
    (ModelReply(AssistantMessage(""), "content_filter"), FILTERED_NOTE),
    (ModelReply(AssistantMessage(""), "end_turn"), EMPTY_NOTE),
])
async def test_refusals_filters_and_empty_answers_are_never_silence(
        tmp_path: Path, reply: ModelReply, expected: str) -> None:
    outcome, writer = await turn(tmp_path, reply)
    assert outcome.reply == expected
    assert writer.runs == []


async def test_a_refusal_with_tool_calls_runs_none(tmp_path: Path) -> None:
    outcome, writer = await turn(tmp_path, ModelReply(AssistantMessage("", (WRITE,)),
                                                      "refusal"))
    assert writer.runs == [] and outcome.stop is StopKind.REFUSED
    assert not isinstance(outcome.transcript[-1], ToolResults)


def test_wire_answers_map_to_stop_kinds() -> None:
    def anthropic(stop: str) -> StopKind:
        return anthropic_wire.decode_reply({"content": [], "stop_reason": stop}).stop

    def openai(finish: str, **message: Any) -> ModelReply:
        return openai_wire.decode_reply({"choices": [{"finish_reason": finish, "message": {
            "content": None, **message}}]})

    assert [anthropic(s) for s in ("end_turn", "tool_use", "max_tokens", "refusal",
                                   "pause_turn", "stop_sequence", "weird")] == [
        StopKind.COMPLETE, StopKind.TOOL_USE, StopKind.TRUNCATED, StopKind.REFUSED,
        StopKind.TRUNCATED, StopKind.COMPLETE, StopKind.UNKNOWN]
    assert [openai(s).stop for s in ("stop", "tool_calls", "length", "content_filter")] == [
        StopKind.COMPLETE, StopKind.TOOL_USE, StopKind.TRUNCATED, StopKind.FILTERED]
    refused = openai("stop", refusal="No.")
    assert (refused.stop, refused.refusal) == (StopKind.REFUSED, "No.")
