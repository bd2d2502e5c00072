"""OpenAI Chat Completions (``POST /v1/chat/completions``), non-streaming.

Tools are ``{"type": "function", "function": {name, description, parameters}}``; the
model calls them through ``tool_calls`` (arguments as a JSON *string*) and hears back
through one ``role: tool`` message per call. Many self-hosted servers (llama.cpp,
Ollama, vLLM) speak this shape too, each with small differences; the host names them in
the provider's ``quirks`` and this module follows them rather than guess:

- the output cap is ``max_completion_tokens`` for OpenAI itself, ``max_tokens`` for
  servers that know only that;
- a tool-call-only assistant turn carries ``content: null`` (the API's form) or ``""``
  (llama.cpp refuses null).

Whatever the server, ``tool_choice: "auto"`` goes with every list of tools (some servers
never call a tool without it), and an assistant turn with neither text nor tool calls is
never sent (the API documents it as invalid). A refusal (``message.refusal``) is decoded
as one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ironclaw.contract.agent_config import ProviderConfig, ToolCallContent
from ironclaw.contract.jsonvalue import JSONRejected, parse_json

from ..messages import (
    AssistantMessage,
    JSONObject,
    Message,
    ModelReply,
    StopKind,
    ToolCall,
    ToolResults,
    UserMessage,
)
from .client import ModelClient
from .resilience import ProviderProtocolError
from .wire import ToolSpec, bounded_id, bounded_name

COMPLETIONS_PATH = "/v1/chat/completions"
MAX_ARGUMENT_BYTES = 1024 * 1024 + 64 * 1024  # a write_file of the largest allowed file


class OpenAIChat:
    def __init__(self, client: ModelClient, config: ProviderConfig) -> None:
        self._client = client
        self._config = config

    async def complete(self, system: str, messages: Sequence[Message],
                       tools: Sequence[ToolSpec]) -> ModelReply:
        return decode_reply(await self._client.post_json(
            COMPLETIONS_PATH, build_request(self._config, system, messages, tools)))


def build_request(config: ProviderConfig, system: str, messages: Sequence[Message],
                  tools: Sequence[ToolSpec]) -> JSONObject:
    quirks = config.quirks
    body: JSONObject = {
        "model": config.model,
        quirks.max_tokens_field.value: config.max_tokens,
        "messages": encode_messages(system, messages,
                                    tool_call_content=quirks.tool_call_content),
    }
    if tools:
        body["tools"] = [{"type": "function", "function": {
            "name": t.name, "description": t.description, "parameters": t.input_schema,
        }} for t in tools]
        body["tool_choice"] = "auto"
    return body


def encode_messages(system: str, messages: Sequence[Message], *,
                    tool_call_content: ToolCallContent = ToolCallContent.NULL
                    ) -> list[JSONObject]:
    wire: list[JSONObject] = [{"role": "system", "content": system}]
    empty = None if tool_call_content is ToolCallContent.NULL else ""
    for message in messages:
        if isinstance(message, UserMessage):
            wire.append({"role": "user", "content": message.text})
        elif isinstance(message, AssistantMessage):
            if not message.text and not message.tool_calls:
                continue  # an empty assistant turn is invalid; it said nothing anyway
            entry: JSONObject = {"role": "assistant", "content": message.text or empty}
            if message.tool_calls:
                entry["tool_calls"] = [{
                    "id": c.id, "type": "function",
                    "function": {"name": c.name, "arguments": json.dumps(c.input)},
                } for c in message.tool_calls]
            wire.append(entry)
        else:
            assert isinstance(message, ToolResults)
            wire.extend({"role": "tool", "tool_call_id": r.call_id,
                         "content": f"ERROR: {r.content}" if r.is_error else r.content}
                        for r in message.results)
    return wire


def decode_reply(raw: Any) -> ModelReply:
    if not isinstance(raw, dict):
        raise ProviderProtocolError("a chat completion must be an object")
    choices = raw.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ProviderProtocolError("a chat completion needs choices")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise ProviderProtocolError("a choice needs a message")
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        raise ProviderProtocolError("message content must be text or null")
    raw_calls = message.get("tool_calls") or []
    if not isinstance(raw_calls, list):
        raise ProviderProtocolError("tool_calls must be a list")
    calls = tuple(_decode_call(call, index) for index, call in enumerate(raw_calls))
    finish = choice.get("finish_reason")
    stop_reason = finish[:64] if isinstance(finish, str) else "unknown"
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal:
        return ModelReply(AssistantMessage(content or "", calls), stop_reason,
                          StopKind.REFUSED, refusal)
    return ModelReply(AssistantMessage(content or "", calls), stop_reason)


def _decode_call(raw: object, index: int) -> ToolCall:
    if not isinstance(raw, dict) or not isinstance(raw.get("function"), dict):
        raise ProviderProtocolError("a tool call needs a function")
    function = raw["function"]
    call_id = bounded_id(raw.get("id"), index)
    name = bounded_name(function.get("name"))
    arguments = function.get("arguments")
    if arguments is None or arguments == "":
        return ToolCall(call_id, name, {})
    if not isinstance(arguments, str):
        return ToolCall(call_id, name, {}, "the arguments were not a JSON string")
    try:
        decoded = parse_json(arguments, max_bytes=MAX_ARGUMENT_BYTES)
    except JSONRejected as exc:
        return ToolCall(call_id, name, {}, f"the arguments were not valid JSON: {exc}")
    if not isinstance(decoded, dict):
        return ToolCall(call_id, name, {}, "the arguments were not a JSON object")
    return ToolCall(call_id, name, decoded)
