"""Anthropic Messages (``POST /v1/messages``), non-streaming.

Tools are ``{name, description, input_schema}``; the model calls them with
``tool_use`` blocks and hears back through ``tool_result`` blocks in a user message.
The stop reason (``end_turn``, ``tool_use``, ``max_tokens``, ``refusal``, ...) is kept
for the turn to act on; thinking blocks carry nothing the agent acts on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ironclaw.contract.agent_config import ProviderConfig

from ..messages import (
    AssistantMessage,
    JSONObject,
    Message,
    ModelReply,
    ToolCall,
    ToolResults,
    UserMessage,
)
from .client import ModelClient
from .resilience import ProviderProtocolError
from .wire import ToolSpec, bounded_id, bounded_name

ANTHROPIC_VERSION = "2023-06-01"
MESSAGES_PATH = "/v1/messages"


class AnthropicMessages:
    def __init__(self, client: ModelClient, config: ProviderConfig) -> None:
        self._client = client
        self._config = config

    async def complete(self, system: str, messages: Sequence[Message],
                       tools: Sequence[ToolSpec]) -> ModelReply:
        raw = await self._client.post_json(
            MESSAGES_PATH, build_request(self._config, system, messages, tools),
            headers={"anthropic-version": ANTHROPIC_VERSION})
        return decode_reply(raw)


def build_request(config: ProviderConfig, system: str, messages: Sequence[Message],
                  tools: Sequence[ToolSpec]) -> JSONObject:
    body: JSONObject = {
        "model": config.model,
        "max_tokens": config.max_tokens,
        "system": system,
        "messages": encode_messages(messages),
    }
    if tools:
        body["tools"] = [{"name": t.name, "description": t.description,
                          "input_schema": t.input_schema} for t in tools]
    return body


def encode_messages(messages: Sequence[Message]) -> list[JSONObject]:
    """Neutral transcript to wire messages. Consecutive messages of one role are merged:
    the API wants user and assistant to alternate, and our transcript can hold two
    user-side entries in a row (tool results, then the next user message)."""
    wire: list[JSONObject] = []
    for message in messages:
        role, blocks = _encode(message)
        if not blocks:
            continue
        if wire and wire[-1]["role"] == role:
            wire[-1]["content"].extend(blocks)
        else:
            wire.append({"role": role, "content": blocks})
    return wire


def _encode(message: Message) -> tuple[str, list[JSONObject]]:
    if isinstance(message, UserMessage):
        return "user", [{"type": "text", "text": message.text}] if message.text else []
    if isinstance(message, AssistantMessage):
        blocks: list[JSONObject] = []
        if message.text:
            blocks.append({"type": "text", "text": message.text})
        blocks.extend({"type": "tool_use", "id": c.id, "name": c.name, "input": c.input}
                      for c in message.tool_calls)
        return "assistant", blocks
    assert isinstance(message, ToolResults)
    return "user", [{"type": "tool_result", "tool_use_id": r.call_id, "content": r.content,
                     "is_error": r.is_error} for r in message.results]


def decode_reply(raw: Any) -> ModelReply:
    if not isinstance(raw, dict):
        raise ProviderProtocolError("a Messages response must be an object")
    content = raw.get("content")
    if not isinstance(content, list):
        raise ProviderProtocolError("a Messages response needs a content list")
    texts: list[str] = []
    calls: list[ToolCall] = []
    for index, block in enumerate(content):
        if not isinstance(block, dict):
            raise ProviderProtocolError("a content block must be an object")
        kind = block.get("type")
        if kind == "text":
            text = block.get("text")
            if not isinstance(text, str):
                raise ProviderProtocolError("a text block needs text")
            texts.append(text)
        elif kind == "tool_use":
            arguments = block.get("input")
            calls.append(ToolCall(
                id=bounded_id(block.get("id"), index),
                name=bounded_name(block.get("name")),
                input=arguments if isinstance(arguments, dict) else {},
                input_error=None if isinstance(arguments, dict)
                else "the tool input was not a JSON object"))
        # Other block kinds (thinking, ...) carry nothing we act on.
    stop = raw.get("stop_reason")
    return ModelReply(AssistantMessage("".join(texts), tuple(calls)),
                      stop[:64] if isinstance(stop, str) else "unknown")
