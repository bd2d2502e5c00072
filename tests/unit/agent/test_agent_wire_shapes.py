"""The two wire shapes: what the agent sends, and what it makes of any answer."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ironclaw.contract.agent_config import (
    MaxTokensField,
    ModelApi,
    ProviderConfig,
    ToolCallContent,
    WireQuirks,
)
from sandbox_agent.messages import (
    AssistantMessage,
    Message,
    ToolCall,
    ToolResult,
    ToolResults,
    UserMessage,
    transcript_from_json,
    transcript_to_json,
)
from sandbox_agent.providers import ProviderProtocolError, ToolSpec
from sandbox_agent.providers import anthropic as anthropic_wire
from sandbox_agent.providers import openai as openai_wire

CALL = ToolCall("toolu_1", "read_file", {"path": "a.txt"})
TRANSCRIPT: list[Message] = [
    UserMessage("read a.txt"),
    AssistantMessage("Looking.", (CALL,)),
    ToolResults((ToolResult("toolu_1", "contents", False),)),
    AssistantMessage("It says: contents"),
    UserMessage("thanks"),
]


def test_anthropic_encoding_uses_tool_use_and_tool_result_blocks() -> None:
    wire = anthropic_wire.encode_messages(TRANSCRIPT)
    assert [m["role"] for m in wire] == ["user", "assistant", "user", "assistant", "user"]
    assert wire[1]["content"] == [
        {"type": "text", "text": "Looking."},
        {"type": "tool_use", "id": "toolu_1", "name": "read_file", "input": {"path": "a.txt"}}]
    assert wire[2]["content"] == [{"type": "tool_result", "tool_use_id": "toolu_1",
                                   "content": "contents", "is_error": False}]


def test_anthropic_merges_consecutive_user_side_messages() -> None:
    transcript: list[Message] = [UserMessage("a"), AssistantMessage("", (CALL,)),
                  ToolResults((ToolResult("toolu_1", "x", True),)), UserMessage("b")]
    wire = anthropic_wire.encode_messages(transcript)
    assert [m["role"] for m in wire] == ["user", "assistant", "user"]
    assert [b["type"] for b in wire[2]["content"]] == ["tool_result", "text"]


def test_openai_encoding_uses_function_tool_calls_and_tool_messages() -> None:
    wire = openai_wire.encode_messages("SYSTEM", TRANSCRIPT)
    assert wire[0] == {"role": "system", "content": "SYSTEM"}
    assistant = wire[2]
    assert assistant["tool_calls"] == [{"id": "toolu_1", "type": "function", "function": {
        "name": "read_file", "arguments": json.dumps({"path": "a.txt"})}}]
    assert wire[3] == {"role": "tool", "tool_call_id": "toolu_1", "content": "contents"}
    assert wire[-1] == {"role": "user", "content": "thanks"}


def test_openai_bad_arguments_become_an_input_error_not_a_crash() -> None:
    reply = openai_wire.decode_reply({"choices": [{"message": {"content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "read_file",
                                                      "arguments": "{not json"}}]},
        "finish_reason": "tool_calls"}]})
    (call,) = reply.tool_calls
    assert call.input == {} and call.input_error is not None


def test_anthropic_non_object_input_becomes_an_input_error() -> None:
    reply = anthropic_wire.decode_reply({"content": [
        {"type": "tool_use", "id": "t../../1", "name": "x", "input": [1, 2]}],
        "stop_reason": "tool_use"})
    (call,) = reply.tool_calls
    assert call.input_error is not None
    assert call.id == "call_0"  # an unsafe id is replaced, not echoed back


def test_transcript_round_trips_through_json() -> None:
    assert transcript_from_json(json.loads(json.dumps(transcript_to_json(TRANSCRIPT)))) == (
        TRANSCRIPT)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["content", "type", "text", "id", "name", "input",
                                       "choices", "message", "tool_calls", "function",
                                       "arguments", "stop_reason", "finish_reason"]),
                      children, max_size=5),
    max_leaves=25)


@pytest.mark.parametrize("decode", [anthropic_wire.decode_reply, openai_wire.decode_reply])
@given(raw=JSON)
def test_any_answer_decodes_or_raises_a_protocol_error(decode: Any, raw: Any) -> None:
    try:
        reply = decode(raw)
    except ProviderProtocolError:
        return
    assert isinstance(reply.message.text, str)
    for call in reply.tool_calls:
        assert isinstance(call.input, dict) and isinstance(call.name, str)


# -- OpenAI-shaped servers and their quirks ----------------------------------------

def openai_config(quirks: WireQuirks) -> ProviderConfig:
    return ProviderConfig(ModelApi.OPENAI_CHAT, "api.openai.com", "gpt-x", 256, quirks)


SPEC = ToolSpec("read_file", "read", {"type": "object", "properties": {}})


def test_openai_sends_max_completion_tokens_and_tool_choice_auto() -> None:
    config = openai_config(WireQuirks(MaxTokensField.MAX_COMPLETION_TOKENS))
    body = openai_wire.build_request(config, "S", TRANSCRIPT, [SPEC])
    assert body["max_completion_tokens"] == 256 and "max_tokens" not in body
    assert body["tool_choice"] == "auto"
    plain = openai_wire.build_request(config, "S", TRANSCRIPT, [])
    assert "tool_choice" not in plain and "tools" not in plain


def test_tool_call_only_turns_carry_null_or_empty_text_as_the_server_needs() -> None:
    transcript: list[Message] = [UserMessage("read"), AssistantMessage("", (CALL,)),
                                 ToolResults((ToolResult("toolu_1", "x"),))]
    for content, expected in ((ToolCallContent.NULL, None), (ToolCallContent.EMPTY, "")):
        body = openai_wire.build_request(
            openai_config(WireQuirks(MaxTokensField.MAX_TOKENS, content)), "S", transcript,
            [SPEC])
        assert body["max_tokens"] == 256
        assert body["messages"][2]["content"] == expected
        assert body["messages"][2]["tool_calls"][0]["id"] == "toolu_1"


def test_an_empty_assistant_turn_is_never_sent() -> None:
    transcript: list[Message] = [UserMessage("hi"), AssistantMessage(""), UserMessage("?")]
    for encode in (lambda: openai_wire.encode_messages("S", transcript),
                   lambda: anthropic_wire.encode_messages(transcript)):
        assert all(m["role"] != "assistant" for m in encode())
