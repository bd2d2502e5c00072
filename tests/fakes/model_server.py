"""A fake model proxy on a unix socket that answers exactly like the mock model.

The control plane's model proxy serves a "mock" provider for agent groups configured
with it (host ``mock.ironclaw.invalid``). This fake reproduces that behaviour byte for
byte where the agent can see it, so tests against the fake match the real thing:

``POST /v1/messages`` (Anthropic Messages):
- last message is a user message holding tool_result blocks -> text
  ``tool result: <first tool_result's text, first 500 chars>``, stop_reason end_turn;
- else the last user message's text (string content, or its text blocks joined by
  newlines): ``tool:<name>`` optionally followed by whitespace and a JSON object -> one
  tool_use block, id ``toolu_mock_`` + sha256(text)[:12], stop_reason tool_use (a JSON
  that does not parse, strictly, to an object -> text ``mock: bad tool directive``);
- otherwise text ``echo: <text>``, stop_reason end_turn.

``POST /v1/chat/completions`` is the analogue with ``choices[0].message`` (content, or
tool_calls with ``function.arguments`` as a JSON string) and finish_reason
``stop``/``tool_calls``. Only the non-streaming form is faked (the agent does not
stream); ``test_agent_fake_model`` checks the fake against the real mock module.

For tests it also records every request, can fail the next N requests with a status
(and Retry-After), fail every request, or hold requests until released. Served with
trio and h11, keep-alive included, since httpx pools its connections.

Standalone: ``python -m tests.fakes.model_server --socket PATH``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import socket
from collections import deque
from pathlib import Path
from typing import Any

import attrs
import h11
import trio

from ironclaw.contract.jsonvalue import JSONRejected, parse_json

MOCK_HOST = "mock.ironclaw.invalid"
BAD_DIRECTIVE = "mock: bad tool directive"
TOOL_RESULT_CHARS = 500


# --- The mock's behaviour, as pure functions -----------------------------------------

_DIRECTIVE = re.compile(r"tool:(\S+)(?:\s+(.*))?", re.DOTALL)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _blocks_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(b["text"] for b in content if isinstance(b, dict)
                         and b.get("type") == "text" and isinstance(b.get("text"), str))
    return ""


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in body.get("messages", []) if isinstance(m, dict)]


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return _blocks_text(message.get("content"))
    return ""


def parse_directive(text: str) -> tuple[str, dict[str, Any]] | str | None:
    """None: not a directive. A string: the bad-directive reply. Else (name, input)."""
    if not text.startswith("tool:"):
        return None
    match = _DIRECTIVE.fullmatch(text)
    if match is None:
        return BAD_DIRECTIVE
    argument = (match.group(2) or "").strip()
    if not argument:
        return match.group(1), {}
    try:
        # Strict JSON, as the contract parses it: no duplicate keys, no NaN.
        arguments = parse_json(argument, max_bytes=4 * 1024 * 1024)
    except JSONRejected:
        return BAD_DIRECTIVE
    if not isinstance(arguments, dict):
        return BAD_DIRECTIVE
    return match.group(1), arguments


def tool_call_suffix(text: str) -> str:
    return _digest(text)[:12]


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    return model if isinstance(model, str) and 0 < len(model) <= 200 else "mock"


def _tokens(value: object) -> int:
    return max(1, len(json.dumps(value)) // 4)


def _reply_id(body: dict[str, Any]) -> str:
    return _digest(json.dumps(body, sort_keys=True))[:24]


def mock_messages_reply(body: dict[str, Any]) -> dict[str, Any]:
    messages = _messages(body)
    last = messages[-1] if messages else {}
    block: dict[str, Any] | None = None
    if last.get("role") == "user" and isinstance(last.get("content"), list):
        for candidate in last["content"]:
            if isinstance(candidate, dict) and candidate.get("type") == "tool_result":
                text = _blocks_text(candidate.get("content"))[:TOOL_RESULT_CHARS]
                block, stop = {"type": "text", "text": f"tool result: {text}"}, "end_turn"
                break
    if block is None:
        user_text = _last_user_text(messages)
        directive = parse_directive(user_text)
        if isinstance(directive, tuple):
            name, arguments = directive
            block = {"type": "tool_use", "id": "toolu_mock_" + tool_call_suffix(user_text),
                     "name": name, "input": arguments}
            stop = "tool_use"
        else:
            reply = directive if isinstance(directive, str) else f"echo: {user_text}"
            block, stop = {"type": "text", "text": reply}, "end_turn"
    return {
        "id": "msg_mock_" + _reply_id(body), "type": "message", "role": "assistant",
        "model": _model(body), "content": [block], "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": _tokens(messages), "output_tokens": _tokens(block)},
    }


def mock_chat_reply(body: dict[str, Any]) -> dict[str, Any]:
    messages = _messages(body)
    last = messages[-1] if messages else {}
    message: dict[str, Any] = {"role": "assistant", "content": None}
    if last.get("role") == "tool":
        text = _blocks_text(last.get("content"))[:TOOL_RESULT_CHARS]
        message["content"], finish = f"tool result: {text}", "stop"
    else:
        user_text = _last_user_text(messages)
        directive = parse_directive(user_text)
        if isinstance(directive, tuple):
            name, arguments = directive
            message["tool_calls"] = [{
                "id": "call_mock_" + tool_call_suffix(user_text), "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments)}}]
            finish = "tool_calls"
        else:
            reply = directive if isinstance(directive, str) else f"echo: {user_text}"
            message["content"], finish = reply, "stop"
    prompt_tokens, completion_tokens = _tokens(messages), _tokens(message)
    return {
        "id": "chatcmpl-mock-" + _reply_id(body), "object": "chat.completion",
        "created": 0, "model": _model(body),
        "choices": [{"index": 0, "message": message, "finish_reason": finish,
                     "logprobs": None}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


ROUTES = {"/v1/messages": mock_messages_reply, "/v1/chat/completions": mock_chat_reply}


# --- The server ----------------------------------------------------------------------

@attrs.frozen
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: Any


@attrs.frozen
class Fault:
    status: int
    retry_after: str | None = None


class FakeModelServer:
    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._faults: deque[Fault] = deque()
        self.fail_every: Fault | None = None
        self._gate: trio.Event | None = None
        self._changed = trio.Event()

    def fail_next(self, status: int, times: int = 1, retry_after: str | None = None) -> None:
        self._faults.extend(Fault(status, retry_after) for _ in range(times))

    def hold(self) -> None:
        """Park every request until ``release``: a model that is thinking hard."""
        self._gate = trio.Event()

    def release(self) -> None:
        if self._gate is not None:
            self._gate.set()
            self._gate = None

    async def wait_for_requests(self, count: int) -> list[RecordedRequest]:
        while len(self.requests) < count:
            await self._changed.wait()
        return self.requests

    async def serve(self, path: Path, *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            await sock.bind(str(path))
            sock.listen(64)
        except BaseException:
            sock.close()
            raise
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.serve_listeners, self._handle,
                                   [trio.SocketListener(sock)])
                task_status.started()
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    async def _handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        async with stream:
            while True:
                try:
                    request = await _read_request(conn, stream)
                except (h11.RemoteProtocolError, trio.BrokenResourceError):
                    return
                if request is None:
                    return
                status, headers, payload = await self._answer(request)
                try:
                    await stream.send_all(conn.send(h11.Response(
                        status_code=status, headers=[*headers, (
                            "content-length", str(len(payload)))])) or b"")
                    await stream.send_all(conn.send(h11.Data(data=payload)) or b"")
                    await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
                except trio.BrokenResourceError:
                    return
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()

    async def _answer(self, request: RecordedRequest
                      ) -> tuple[int, list[tuple[str, str]], bytes]:
        self.requests.append(request)
        self._changed.set()
        self._changed = trio.Event()
        if self._gate is not None:
            await self._gate.wait()
        fault = self._faults.popleft() if self._faults else self.fail_every
        if fault is not None:
            headers = [("content-type", "application/json")]
            if fault.retry_after is not None:
                headers.append(("retry-after", fault.retry_after))
            return fault.status, headers, json.dumps(
                {"type": "error", "error": {"message": "injected fault"}}).encode()
        route = ROUTES.get(request.path)
        if request.method != "POST" or route is None:
            return 404, [("content-type", "application/json")], b'{"error":"not found"}'
        if not isinstance(request.body, dict) or not isinstance(
                request.body.get("messages"), list):
            return 400, [("content-type", "application/json")], b'{"error":"bad json"}'
        return 200, [("content-type", "application/json")], json.dumps(
            route(request.body)).encode()


async def _read_request(conn: h11.Connection, stream: trio.SocketStream
                        ) -> RecordedRequest | None:
    head: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(65536))
            continue
        if isinstance(event, h11.ConnectionClosed):
            return None
        if isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert head is not None
            try:
                decoded: Any = json.loads(body) if body else None
            except ValueError:
                decoded = None
            return RecordedRequest(
                method=head.method.decode(), path=head.target.decode(),
                headers={k.decode().lower(): v.decode() for k, v in head.headers},
                body=decoded)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", type=Path, required=True)
    args = parser.parse_args()
    trio.run(FakeModelServer().serve, args.socket)


if __name__ == "__main__":
    main()
