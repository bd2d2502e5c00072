"""The mock model: deterministic, offline, served by the proxy itself.

Pure functions, no I/O, so the behaviour the sandboxed agent is tested against can be
tested here without a socket. The rules, for both wire shapes:

1. The last message carries a tool result (Anthropic: a user message with
   ``tool_result`` blocks; OpenAI: a ``tool`` message) -> text
   ``tool result: <the first result's text, truncated to 500 characters>``, stop.
2. Else the last user message's text (string content, or its text blocks joined with
   ``\\n``) starting ``tool:<name>``, optionally followed by whitespace and a JSON
   object -> one tool call ``<name>`` with that object as input (``{}`` if absent), id
   ``toolu_mock_`` / ``call_mock_`` + the first 12 hex digits of sha256(text). An
   unparseable or non-object argument -> text ``mock: bad tool directive``.
3. Else -> text ``echo: <text>``.

Streaming (``"stream": true``) emits the provider's standard SSE sequence, text and tool
arguments split into 32-character deltas so a client must accumulate them.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import attrs

from ironclaw.contract.jsonvalue import JSONRejected, parse_json

__all__ = ["MockResponse", "ToolCall", "anthropic_events", "anthropic_message",
           "decide", "openai_chunks", "openai_completion", "respond"]

MAX_BODY = 4 * 1024 * 1024
TOOL_RESULT_CHARS = 500
DELTA_CHARS = 32
BAD_DIRECTIVE = "mock: bad tool directive"
_DIRECTIVE = re.compile(r"tool:(\S+)(?:\s+(.*))?", re.DOTALL)


@attrs.frozen
class ToolCall:
    id_hex: str
    name: str
    input: dict[str, Any]


@attrs.frozen
class MockResponse:
    status: int
    content_type: str
    chunks: tuple[bytes, ...]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _text_of(content: object, block_type: str = "text") -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            block["text"] for block in content
            if isinstance(block, dict) and block.get("type") == block_type
            and isinstance(block.get("text"), str)
        )
    return ""


def decide(user_text: str) -> str | ToolCall:
    """Rules 2 and 3: the reply to a user's text."""
    if not user_text.startswith("tool:"):
        return f"echo: {user_text}"
    match = _DIRECTIVE.fullmatch(user_text)
    if match is None:
        return BAD_DIRECTIVE
    argument = (match.group(2) or "").strip()
    tool_input: object = {}
    if argument:
        try:
            tool_input = parse_json(argument, max_bytes=MAX_BODY)
        except JSONRejected:
            return BAD_DIRECTIVE
    if not isinstance(tool_input, dict):
        return BAD_DIRECTIVE
    return ToolCall(_digest(user_text)[:12], match.group(1), tool_input)


def _messages(request: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in request.get("messages", []) if isinstance(m, dict)]


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return _text_of(message.get("content"))
    return ""


def _model(request: dict[str, Any]) -> str:
    model = request.get("model")
    return model if isinstance(model, str) and 0 < len(model) <= 200 else "mock"


def _tokens(value: object) -> int:
    return max(1, len(json.dumps(value)) // 4)


def _pieces(text: str) -> list[str]:
    return [text[i:i + DELTA_CHARS] for i in range(0, len(text), DELTA_CHARS)] or [""]


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


# -- Anthropic Messages -------------------------------------------------------------

def _anthropic_reply(messages: list[dict[str, Any]]) -> str | ToolCall:
    last = messages[-1] if messages else {}
    content = last.get("content")
    if last.get("role") == "user" and isinstance(content, list):
        for block in content:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                result = _text_of(block.get("content"))
                return f"tool result: {result[:TOOL_RESULT_CHARS]}"
    return decide(_last_user_text(messages))


def anthropic_message(request: dict[str, Any]) -> dict[str, Any]:
    messages = _messages(request)
    reply = _anthropic_reply(messages)
    if isinstance(reply, ToolCall):
        block: dict[str, Any] = {"type": "tool_use", "id": "toolu_mock_" + reply.id_hex,
                                 "name": reply.name, "input": reply.input}
        stop = "tool_use"
    else:
        block, stop = {"type": "text", "text": reply}, "end_turn"
    return {
        "id": "msg_mock_" + _digest(json.dumps(request, sort_keys=True))[:24],
        "type": "message",
        "role": "assistant",
        "model": _model(request),
        "content": [block],
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": _tokens(messages), "output_tokens": _tokens(block)},
    }


def anthropic_events(message: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The SSE events (name, data) that stream ``message``."""
    start = dict(message, content=[], stop_reason=None, stop_sequence=None,
                 usage=dict(message["usage"], output_tokens=1))
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": start})]
    for index, block in enumerate(message["content"]):
        if block["type"] == "tool_use":
            opening = dict(block, input={})
            deltas = [{"type": "input_json_delta", "partial_json": piece}
                      for piece in _pieces(_dumps(block["input"]))]
        else:
            opening = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": piece} for piece in _pieces(block["text"])]
        events.append(("content_block_start", {"type": "content_block_start",
                                               "index": index, "content_block": opening}))
        events.extend(("content_block_delta", {"type": "content_block_delta",
                                               "index": index, "delta": delta})
                      for delta in deltas)
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(("message_delta", {
        "type": "message_delta",
        "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
        "usage": {"output_tokens": message["usage"]["output_tokens"]},
    }))
    events.append(("message_stop", {"type": "message_stop"}))
    return events


# -- OpenAI Chat Completions ----------------------------------------------------------

def _openai_reply(messages: list[dict[str, Any]]) -> str | ToolCall:
    last = messages[-1] if messages else {}
    if last.get("role") == "tool":
        return f"tool result: {_text_of(last.get('content'))[:TOOL_RESULT_CHARS]}"
    return decide(_last_user_text(messages))


def openai_completion(request: dict[str, Any]) -> dict[str, Any]:
    messages = _messages(request)
    reply = _openai_reply(messages)
    message: dict[str, Any] = {"role": "assistant", "content": None}
    if isinstance(reply, ToolCall):
        message["tool_calls"] = [{
            "id": "call_mock_" + reply.id_hex, "type": "function",
            "function": {"name": reply.name, "arguments": json.dumps(reply.input)},
        }]
        finish = "tool_calls"
    else:
        message["content"], finish = reply, "stop"
    prompt, completion = _tokens(messages), _tokens(message)
    return {
        "id": "chatcmpl-mock-" + _digest(json.dumps(request, sort_keys=True))[:24],
        "object": "chat.completion",
        "created": 0,
        "model": _model(request),
        "choices": [{"index": 0, "message": message, "finish_reason": finish,
                     "logprobs": None}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                  "total_tokens": prompt + completion},
    }


def openai_chunks(completion: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``chat.completion.chunk`` objects that stream ``completion``."""
    choice = completion["choices"][0]
    message = choice["message"]

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": completion["id"], "object": "chat.completion.chunk",
                "created": completion["created"], "model": completion["model"],
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    chunks: list[dict[str, Any]] = []
    calls = message.get("tool_calls")
    if calls:
        call = calls[0]
        chunks.append(chunk({"role": "assistant", "content": None, "tool_calls": [{
            "index": 0, "id": call["id"], "type": "function",
            "function": {"name": call["function"]["name"], "arguments": ""}}]}))
        chunks.extend(chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
                      for piece in _pieces(call["function"]["arguments"]))
    else:
        chunks.append(chunk({"role": "assistant", "content": ""}))
        chunks.extend(chunk({"content": piece}) for piece in _pieces(message["content"]))
    chunks.append(chunk({}, choice["finish_reason"]))
    return chunks


# -- HTTP ---------------------------------------------------------------------------

def _json(status: int, value: object) -> MockResponse:
    return MockResponse(status, "application/json", (_dumps(value).encode(),))


def respond(method: str, path: str, body: bytes) -> MockResponse:
    """The whole mock endpoint: one request in, a status and body chunks out."""
    if (method, path) == ("GET", "/v1/models"):
        return _json(200, {"object": "list", "has_more": False, "data": [
            {"id": "mock", "object": "model", "type": "model", "display_name": "Mock"}]})
    if method != "POST" or path not in ("/v1/messages", "/v1/chat/completions"):
        return _json(404, {"error": "not_found", "detail": "no such mock route"})
    try:
        request = parse_json(body, max_bytes=MAX_BODY)
    except JSONRejected:
        return _json(400, {"error": "invalid_request", "detail": "body is not valid JSON"})
    if not isinstance(request, dict) or not isinstance(request.get("messages"), list):
        return _json(400, {"error": "invalid_request",
                           "detail": "body must be an object with a messages list"})
    stream = request.get("stream") is True
    if path == "/v1/messages":
        message = anthropic_message(request)
        if not stream:
            return _json(200, message)
        return MockResponse(200, "text/event-stream", tuple(
            f"event: {name}\ndata: {_dumps(data)}\n\n".encode()
            for name, data in anthropic_events(message)))
    completion = openai_completion(request)
    if not stream:
        return _json(200, completion)
    return MockResponse(200, "text/event-stream", (
        *(f"data: {_dumps(item)}\n\n".encode() for item in openai_chunks(completion)),
        b"data: [DONE]\n\n",
    ))
