"""The mock model: the exact behaviour the sandboxed agent is built against."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from ironclaw.contract.agent_config import MOCK_MODEL_HOST
from ironclaw.contract.ids import new_session_id
from ironclaw.host.modelproxy import ModelProxy, ProviderEndpoint, SessionRoute, mock
from tests.fakes.upstream_llm import parse_sse
from tests.support.events import RecordingSink


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def anthropic(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return mock.anthropic_message({"model": "claude-x", "messages": list(messages), **extra})


def tool_id(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# -- Anthropic shape ------------------------------------------------------------------

def test_echo_from_string_or_text_blocks() -> None:
    reply = anthropic(user("hello"))
    assert reply["content"] == [{"type": "text", "text": "echo: hello"}]
    assert reply["stop_reason"] == "end_turn"
    assert (reply["type"], reply["role"], reply["model"]) == ("message", "assistant", "claude-x")
    assert reply["id"].startswith("msg_mock_")
    assert set(reply["usage"]) == {"input_tokens", "output_tokens"}
    blocks = [{"type": "text", "text": "a"}, {"type": "image", "source": {}},
              {"type": "text", "text": "b"}]
    assert anthropic(user(blocks))["content"][0]["text"] == "echo: a\nb"


def test_echo_uses_the_last_user_message() -> None:
    reply = anthropic(user("first"), {"role": "assistant", "content": "x"}, user("second"))
    assert reply["content"][0]["text"] == "echo: second"
    assert anthropic(user("u"), {"role": "assistant", "content": "a"})[
        "content"][0]["text"] == "echo: u"
    assert anthropic()["content"][0]["text"] == "echo: "


def test_deterministic() -> None:
    assert anthropic(user("same")) == anthropic(user("same"))
    assert anthropic(user("same"))["id"] != anthropic(user("other"))["id"]


@pytest.mark.parametrize(("text", "name", "tool_input"), [
    ('tool:web_search {"q": "trio"}', "web_search", {"q": "trio"}),
    ("tool:now", "now", {}),
    ("tool:now   ", "now", {}),
    ('tool:write\n{"path": "a", "n": [1, 2]}', "write", {"path": "a", "n": [1, 2]}),
])
def test_tool_directive(text: str, name: str, tool_input: dict[str, Any]) -> None:
    reply = anthropic(user(text))
    assert reply["content"] == [{"type": "tool_use", "id": "toolu_mock_" + tool_id(text),
                                 "name": name, "input": tool_input}]
    assert reply["stop_reason"] == "tool_use"


@pytest.mark.parametrize("text", ["tool:x {not json", "tool:x [1, 2]", "tool:x 42",
                                  "tool:", "tool: x", 'tool:x {"a": 1, "a": 2}'])
def test_bad_tool_directive(text: str) -> None:
    reply = anthropic(user(text))
    assert reply["content"] == [{"type": "text", "text": "mock: bad tool directive"}]
    assert reply["stop_reason"] == "end_turn"


def test_tool_result_path() -> None:
    call = {"role": "assistant", "content": [
        {"type": "tool_use", "id": "toolu_1", "name": "t", "input": {}}]}
    as_string = user([{"type": "tool_result", "tool_use_id": "toolu_1", "content": "42"}])
    reply = anthropic(user("tool:t"), call, as_string)
    assert reply["content"] == [{"type": "text", "text": "tool result: 42"}]
    assert reply["stop_reason"] == "end_turn"
    as_blocks = user([
        {"type": "tool_result", "tool_use_id": "toolu_1",
         "content": [{"type": "text", "text": "x" * 600}]},
        {"type": "tool_result", "tool_use_id": "toolu_2", "content": "second"},
    ])
    text = anthropic(user("tool:t"), call, as_blocks)["content"][0]["text"]
    assert text == "tool result: " + "x" * 500


def test_anthropic_stream_events() -> None:
    message = anthropic(user("a fairly long message so the text needs several deltas"))
    events = mock.anthropic_events(message)
    names = [name for name, _ in events]
    assert names[:2] == ["message_start", "content_block_start"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert names.count("content_block_delta") > 1
    assert all(data["type"] == name for name, data in events)
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    assert text == message["content"][0]["text"]
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn"


def test_anthropic_stream_tool_use() -> None:
    message = anthropic(user('tool:search {"query": "' + "q" * 50 + '"}'))
    events = mock.anthropic_events(message)
    opening = events[1][1]["content_block"]
    assert opening == dict(message["content"][0], input={})
    partial = "".join(d["delta"]["partial_json"] for n, d in events
                      if n == "content_block_delta")
    assert all(d["delta"]["type"] == "input_json_delta" for n, d in events
               if n == "content_block_delta")
    assert json.loads(partial) == {"query": "q" * 50}
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


# -- OpenAI shape ---------------------------------------------------------------------

def openai(*messages: dict[str, Any]) -> dict[str, Any]:
    return mock.openai_completion({"model": "gpt-x", "messages": list(messages)})


def test_openai_echo_and_tool_calls() -> None:
    reply = openai({"role": "system", "content": "s"}, user("hi"))
    choice = reply["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "echo: hi"}
    assert choice["finish_reason"] == "stop" and reply["object"] == "chat.completion"
    text = 'tool:lookup {"id": 7}'
    choice = openai(user(text))["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    [call] = choice["message"]["tool_calls"]
    assert call["id"] == "call_mock_" + tool_id(text)
    assert call["function"] == {"name": "lookup", "arguments": '{"id": 7}'}
    assert json.loads(call["function"]["arguments"]) == {"id": 7}
    tool = {"role": "tool", "tool_call_id": call["id"], "content": "y" * 700}
    assert openai(user(text), {"role": "assistant", **choice["message"]}, tool)[
        "choices"][0]["message"]["content"] == "tool result: " + "y" * 500


def test_openai_stream_chunks() -> None:
    completion = openai(user('tool:lookup {"id": "' + "z" * 40 + '"}'))
    chunks = mock.openai_chunks(completion)
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    args = "".join(c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                   for c in chunks if "tool_calls" in c["choices"][0]["delta"])
    assert json.loads(args) == {"id": "z" * 40}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


# -- HTTP entry point -----------------------------------------------------------------

def test_respond_rejects_bad_bodies_and_routes() -> None:
    assert mock.respond("POST", "/v1/messages", b"{").status == 400
    assert mock.respond("POST", "/v1/messages", b"[]").status == 400
    assert mock.respond("POST", "/v1/messages", b'{"messages": 3}').status == 400
    assert mock.respond("POST", "/v1/messages", b"[" * 100_000).status == 400
    assert mock.respond("PUT", "/v1/messages", b"{}").status == 404
    assert mock.respond("GET", "/v1/models", b"").status == 200


def test_respond_streams_openai_with_done() -> None:
    reply = mock.respond("POST", "/v1/chat/completions",
                         json.dumps({"messages": [user("x")], "stream": True}).encode())
    assert reply.content_type == "text/event-stream"
    assert reply.chunks[-1] == b"data: [DONE]\n\n"


async def test_mock_through_the_proxy_socket_stream_and_not() -> None:
    base = Path(tempfile.mkdtemp(prefix="mpm-", dir="/tmp"))
    sink = RecordingSink()
    proxy = ModelProxy(events=sink)
    sid = new_session_id()
    route = SessionRoute(sid, "ag", ProviderEndpoint.mock(), base / sid / "model.sock")
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(proxy.run)
            path = await proxy.serve_session(route)
            transport = httpx.AsyncHTTPTransport(uds=str(path))
            async with httpx.AsyncClient(transport=transport,
                                         base_url=f"http://{MOCK_MODEL_HOST}") as c:
                plain = await c.post("/v1/messages", json={"messages": [user("hi")]})
                streamed = await c.post("/v1/messages",
                                        json={"messages": [user("tool:t")], "stream": True})
                chat = await c.post("/v1/chat/completions",
                                    json={"messages": [user("yo")], "stream": True})
            nursery.cancel_scope.cancel()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    assert plain.json()["content"][0]["text"] == "echo: hi"
    events = parse_sse(streamed.content)
    assert streamed.headers["content-type"] == "text/event-stream"
    assert [name for name, _ in events] == [
        "message_start", "content_block_start", "content_block_delta",
        "content_block_stop", "message_delta", "message_stop"]
    assert json.loads(events[1][1])["content_block"]["name"] == "t"
    data = [d for _, d in parse_sse(chat.content)]
    assert data[-1] == "[DONE]"
    assert "".join(json.loads(d)["choices"][0]["delta"].get("content") or ""
                   for d in data[:-1]) == "echo: yo"
    assert [c.provider for c in sink.of("model.call")] == ["mock"] * 3
    assert [c.host for c in sink.of("model.call")] == [MOCK_MODEL_HOST] * 3
