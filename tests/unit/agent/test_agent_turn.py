"""The model/tool loop of one turn, with a scripted model and a virtual clock."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import trio
import trio.testing

from ironclaw.contract.agent_config import PersonaDocs
from sandbox_agent.messages import (
    AssistantMessage,
    Message,
    ModelReply,
    ToolCall,
    ToolResults,
    UserMessage,
)
from sandbox_agent.providers import ToolSpec
from sandbox_agent.tools import Tool, ToolContext, ToolError, ToolRegistry
from sandbox_agent.tools.base import schema
from sandbox_agent.turn import run_turn
from sandbox_agent.workspace import Workspace


class ScriptedModel:
    """Answers each call from a list; records what it was shown."""

    def __init__(self, replies: Sequence[AssistantMessage], *, repeat_last: bool = False
                 ) -> None:
        self._replies = list(replies)
        self._repeat_last = repeat_last
        self.seen: list[list[Message]] = []

    async def complete(self, system: str, messages: Sequence[Message],
                       tools: Sequence[ToolSpec]) -> ModelReply:
        self.seen.append(list(messages))
        reply = self._replies[0] if self._repeat_last and len(self._replies) == 1 \
            else self._replies.pop(0)
        return ModelReply(reply, "tool_use" if reply.tool_calls else "end_turn")


class Observer:
    def __init__(self) -> None:
        self.events: list[str] = []

    async def tool_started(self, name: str, declared_timeout_s: float) -> None:
        self.events.append(f"start {name} {declared_timeout_s:g}")

    async def tool_finished(self) -> None:
        self.events.append("finish")


async def echo(_ctx: ToolContext, args: Mapping[str, Any]) -> str:
    return f"echoed {args.get('x')}"


async def refuse(_ctx: ToolContext, _args: Mapping[str, Any]) -> str:
    raise ToolError("not today")


async def explode(_ctx: ToolContext, _args: Mapping[str, Any]) -> str:
    raise KeyError("/secret/path")


async def dawdle(_ctx: ToolContext, _args: Mapping[str, Any]) -> str:
    await trio.sleep(3600)
    return "late"


REGISTRY = ToolRegistry([
    Tool("echo", "echo", schema({}), echo, timeout_s=5),
    Tool("refuse", "refuse", schema({}), refuse),
    Tool("explode", "explode", schema({}), explode),
    Tool("dawdle", "dawdle", schema({}), dawdle, timeout_s=10),
])


def context(tmp_path: Path) -> ToolContext:
    return ToolContext(workspace=Workspace(tmp_path), persona=PersonaDocs(), destinations=())


def call(name: str, call_id: str, **args: Any) -> ToolCall:
    return ToolCall(call_id, name, args)


async def test_tool_round_then_answer(tmp_path: Path) -> None:
    model = ScriptedModel([AssistantMessage("", (call("echo", "c1", x=1),)),
                           AssistantMessage("done")])
    observer = Observer()
    outcome = await run_turn(provider=model, system="S", history=[UserMessage("old")],
                             user_text="go", registry=REGISTRY, ctx=context(tmp_path),
                             max_tool_iterations=8, observer=observer)
    assert outcome.reply == "done" and outcome.tool_rounds == 1
    results = outcome.transcript[3]
    assert isinstance(results, ToolResults)
    assert results.results[0].content == "echoed 1" and not results.results[0].is_error
    assert observer.events == ["start echo 5", "finish"]
    assert model.seen[0] == [UserMessage("old"), UserMessage("go")]


async def test_tool_rounds_are_capped_and_the_transcript_stays_valid(tmp_path: Path) -> None:
    model = ScriptedModel([AssistantMessage("", (call("echo", "again"),))], repeat_last=True)
    outcome = await run_turn(provider=model, system="S", history=[], user_text="loop",
                             registry=REGISTRY, ctx=context(tmp_path),
                             max_tool_iterations=3, observer=Observer())
    assert outcome.tool_rounds == 3
    assert len(model.seen) == 4  # three rounds, then the call that wanted a fourth
    assert "stopped after 3 rounds" in outcome.reply
    # Every tool call has its result: the next turn can be sent as is.
    for index, message in enumerate(outcome.transcript):
        if isinstance(message, AssistantMessage) and message.tool_calls:
            following = outcome.transcript[index + 1]
            assert isinstance(following, ToolResults)
            assert [r.call_id for r in following.results] == [
                c.id for c in message.tool_calls]
    last = outcome.transcript[-1]
    assert isinstance(last, ToolResults) and last.results[0].is_error


async def test_tool_failures_go_back_to_the_model_as_errors(tmp_path: Path) -> None:
    model = ScriptedModel([
        AssistantMessage("", (call("refuse", "a"), call("explode", "b"), call("nope", "c"))),
        AssistantMessage("ok")])
    outcome = await run_turn(provider=model, system="S", history=[], user_text="try",
                             registry=REGISTRY, ctx=context(tmp_path),
                             max_tool_iterations=8, observer=Observer())
    results = outcome.transcript[2]
    assert isinstance(results, ToolResults)
    refused, exploded, unknown = results.results
    assert (refused.is_error, refused.content) == (True, "not today")
    assert exploded.is_error and "KeyError" in exploded.content
    assert "/secret/path" not in exploded.content
    assert unknown.is_error and "unknown tool" in unknown.content
    assert outcome.reply == "ok"


async def test_a_slow_tool_times_out(tmp_path: Path,
                                     autojump_clock: trio.testing.MockClock) -> None:
    model = ScriptedModel([AssistantMessage("", (call("dawdle", "d"),)),
                           AssistantMessage("gave up")])
    observer = Observer()
    start = trio.current_time()
    outcome = await run_turn(provider=model, system="S", history=[], user_text="wait",
                             registry=REGISTRY, ctx=context(tmp_path),
                             max_tool_iterations=8, observer=observer)
    assert trio.current_time() - start == 10
    results = outcome.transcript[2]
    assert isinstance(results, ToolResults)
    assert results.results[0].is_error and "timed out" in results.results[0].content
    assert observer.events == ["start dawdle 10", "finish"]


async def test_arguments_that_did_not_decode_are_not_run(tmp_path: Path) -> None:
    bad = ToolCall("x1", "echo", {}, input_error="the arguments were not valid JSON")
    model = ScriptedModel([AssistantMessage("", (bad,)), AssistantMessage("sorry")])
    observer = Observer()
    outcome = await run_turn(provider=model, system="S", history=[], user_text="hi",
                             registry=REGISTRY, ctx=context(tmp_path),
                             max_tool_iterations=8, observer=observer)
    results = outcome.transcript[2]
    assert isinstance(results, ToolResults) and results.results[0].is_error
    assert observer.events == []
