"""The conversation, in a shape of our own.

History is stored in ``session_state`` and outlives any one provider: the host may
switch an agent group from one wire format to another between two turns. So the agent
keeps a provider-neutral transcript and each provider translates it at the wire.

A transcript is a list of three kinds of message: what the user said, what the model
answered (text and/or tool calls), and the results of those tool calls.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

# StopKind is re-exported: the turn and the providers take it from here.
from ironclaw.contract.modelwire import StopKind as StopKind
from ironclaw.contract.modelwire import classify_stop

JSONObject = dict[str, Any]


class TranscriptInvalid(ValueError):
    """Stored history did not decode; the caller starts afresh rather than guess."""


@attrs.frozen
class ToolCall:
    id: str
    name: str
    input: JSONObject
    # Set when the model's arguments did not decode (OpenAI sends them as a JSON
    # string); the call is then answered with an error instead of being run.
    input_error: str | None = None


@attrs.frozen
class ToolResult:
    call_id: str
    content: str
    is_error: bool = False


@attrs.frozen
class UserMessage:
    text: str


@attrs.frozen
class AssistantMessage:
    text: str
    tool_calls: tuple[ToolCall, ...] = ()


@attrs.frozen
class ToolResults:
    results: tuple[ToolResult, ...]


Message = UserMessage | AssistantMessage | ToolResults


@attrs.frozen
class ModelReply:
    """One answer from the model, already decoded from its wire shape."""

    message: AssistantMessage
    stop_reason: str
    stop: StopKind = attrs.field(
        default=attrs.Factory(lambda self: classify_stop(self.stop_reason), takes_self=True))
    # What the model said when it declined (OpenAI's ``message.refusal``), if anything.
    refusal: str = ""

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        return self.message.tool_calls


def message_to_json(message: Message) -> JSONObject:
    if isinstance(message, UserMessage):
        return {"role": "user", "text": message.text}
    if isinstance(message, AssistantMessage):
        body: JSONObject = {"role": "assistant", "text": message.text}
        if message.tool_calls:
            body["tool_calls"] = [{"id": c.id, "name": c.name, "input": c.input}
                                  for c in message.tool_calls]
        return body
    return {"role": "tool", "results": [
        {"call_id": r.call_id, "content": r.content, "is_error": r.is_error}
        for r in message.results]}


def message_from_json(raw: object) -> Message:
    if not isinstance(raw, Mapping):
        raise TranscriptInvalid("a message must be an object")
    role = raw.get("role")
    if role == "user":
        return UserMessage(_text(raw, "text"))
    if role == "assistant":
        calls = raw.get("tool_calls", [])
        if not isinstance(calls, list):
            raise TranscriptInvalid("tool_calls must be a list")
        return AssistantMessage(_text(raw, "text"), tuple(_tool_call(c) for c in calls))
    if role == "tool":
        results = raw.get("results")
        if not isinstance(results, list) or not results:
            raise TranscriptInvalid("results must be a non-empty list")
        return ToolResults(tuple(_tool_result(r) for r in results))
    raise TranscriptInvalid(f"unknown role {role!r:.20}")


def transcript_to_json(messages: Sequence[Message]) -> list[JSONObject]:
    return [message_to_json(m) for m in messages]


def transcript_from_json(raw: object) -> list[Message]:
    if not isinstance(raw, list):
        raise TranscriptInvalid("a transcript must be a list")
    return [message_from_json(m) for m in raw]


def _text(raw: Mapping[str, Any], field: str) -> str:
    value = raw.get(field)
    if not isinstance(value, str):
        raise TranscriptInvalid(f"{field} must be a string")
    return value


def _tool_call(raw: object) -> ToolCall:
    if not isinstance(raw, Mapping):
        raise TranscriptInvalid("a tool call must be an object")
    arguments = raw.get("input")
    if not isinstance(arguments, dict):
        raise TranscriptInvalid("a tool call's input must be an object")
    return ToolCall(_text(raw, "id"), _text(raw, "name"), arguments)


def _tool_result(raw: object) -> ToolResult:
    if not isinstance(raw, Mapping):
        raise TranscriptInvalid("a tool result must be an object")
    is_error = raw.get("is_error", False)
    if not isinstance(is_error, bool):
        raise TranscriptInvalid("is_error must be a boolean")
    return ToolResult(_text(raw, "call_id"), _text(raw, "content"), is_error)
