"""A fake model provider on loopback TCP, speaking the Anthropic Messages API.

Served by hypercorn (a real HTTP server) with a bare ASGI app, so the proxy's httpx
client talks to it exactly as it would to ``api.anthropic.com``. It records every request
it receives (method, path, headers, body) and answers as a test scripts it:

- ``POST /v1/messages``: a Messages response whose text is ``script.text`` (default
  ``upstream: <last user text>``); with ``"stream": true`` the standard SSE sequence,
  written in ``script.chunk_size``-byte pieces with a pause between them so that the
  proxy receives them as separate reads.
- ``POST /v1/chat/completions``: the OpenAI analogue (JSON only).
- ``GET /v1/models``: a one-model list.
- ``script.hang``: accept the request and never answer (for timeouts).
- ``script.status``, ``script.headers``: the status and extra response headers.
- ``script.body`` (with ``script.content_type``): answer with exactly these bytes, in
  ``script.chunk_size`` pieces (the SDK contract tests build them from the SDKs' types).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

__all__ = ["FakeUpstream", "Recorded", "Script", "open_fake_upstream",
           "parse_sse"]


@attrs.frozen
class Recorded:
    method: str
    path: str
    query: bytes
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name.lower()]

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@attrs.define
class Script:
    text: str | None = None
    status: int = 200
    headers: list[tuple[str, str]] = attrs.field(factory=list)
    chunk_size: int | None = None
    chunk_pause: float = 0.002
    hang: bool = False
    body: bytes | None = None
    content_type: str = "application/json"


def _last_user_text(request: dict[str, Any]) -> str:
    for message in reversed(request.get("messages", [])):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            return "\n".join(b.get("text", "") for b in content if b.get("type") == "text")
    return ""


def _sse(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


class FakeUpstream:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.script = Script()
        self.base_url = ""
        self.received = trio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = tuple((k.decode("latin-1").lower(), v.decode("latin-1"))
                        for k, v in scope["headers"])
        self.requests.append(Recorded(scope["method"], scope["path"], scope["query_string"],
                                      headers, body))
        self.received.set()
        script = self.script
        if script.hang:
            await trio.sleep_forever()
        await self._answer(scope["method"], scope["path"], body, script, send)

    async def _answer(self, method: str, path: str, body: bytes, script: Script,
                      send: Any) -> None:
        # Suffix matches, so a provider mounted under a prefix (OpenRouter's /api) works.
        if script.body is not None:
            size = script.chunk_size or max(1, len(script.body))
            pieces = [script.body[i:i + size] for i in range(0, len(script.body), size)]
            await self._send(send, script, script.content_type, pieces or [b""])
            return
        if method == "GET" and path.endswith("/v1/models"):
            await self._send(send, script, "application/json",
                             [json.dumps({"data": [{"id": "fake-model"}]}).encode()])
            return
        request = json.loads(body or b"{}")
        text = script.text if script.text is not None else (
            f"upstream: {_last_user_text(request)}")
        if path.endswith("/v1/chat/completions"):
            reply = {"id": "chatcmpl-fake", "object": "chat.completion", "created": 0,
                     "model": request.get("model", "fake"),
                     "choices": [{"index": 0, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": text}}]}
            await self._send(send, script, "application/json", [json.dumps(reply).encode()])
            return
        message = {"id": "msg_fake", "type": "message", "role": "assistant",
                   "model": request.get("model", "fake"),
                   "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                   "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 5}}
        if not request.get("stream"):
            await self._send(send, script, "application/json", [json.dumps(message).encode()])
            return
        stream = b"".join([
            _sse("message_start", {"type": "message_start",
                                   "message": dict(message, content=[], stop_reason=None)}),
            _sse("content_block_start", {"type": "content_block_start", "index": 0,
                                         "content_block": {"type": "text", "text": ""}}),
            _sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                         "delta": {"type": "text_delta", "text": text}}),
            _sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
            _sse("message_delta", {"type": "message_delta",
                                   "delta": {"stop_reason": "end_turn"},
                                   "usage": {"output_tokens": 5}}),
            _sse("message_stop", {"type": "message_stop"}),
        ])
        size = script.chunk_size or len(stream)
        pieces = [stream[i:i + size] for i in range(0, len(stream), size)]
        await self._send(send, script, "text/event-stream", pieces)

    @staticmethod
    async def _send(send: Any, script: Script, content_type: str,
                    pieces: list[bytes]) -> None:
        headers = [(b"content-type", content_type.encode())]
        headers += [(k.encode(), v.encode()) for k, v in script.headers]
        await send({"type": "http.response.start", "status": script.status,
                    "headers": headers})
        for index, piece in enumerate(pieces):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            if index < len(pieces) - 1:
                await trio.sleep(script.chunk_pause)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


@asynccontextmanager
async def open_fake_upstream() -> AsyncIterator[FakeUpstream]:
    """A running fake on 127.0.0.1 (ephemeral port); ``base_url`` says where."""
    fake = FakeUpstream()
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 0.1
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve, fake, config)
        fake.base_url = binds[0]
        try:
            yield fake
        finally:
            nursery.cancel_scope.cancel()


# -- small helpers for tests that talk to the proxy ----------------------------------

def parse_sse(raw: bytes) -> list[tuple[str | None, str]]:
    """``(event name, data)`` for each SSE event in a complete stream."""
    events: list[tuple[str | None, str]] = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        name: str | None = None
        data: list[str] = []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        events.append((name, "\n".join(data)))
    return events
