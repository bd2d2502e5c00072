"""The fake model behaves as the mock model is specified, so the agent's tests against
it say something about the real thing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from tests.fakes.model_server import FakeModelServer, mock_chat_reply, mock_messages_reply


def user(content: object) -> dict[str, object]:
    return {"role": "user", "content": content}


def test_messages_echo_and_text_blocks() -> None:
    reply = mock_messages_reply({"model": "mock", "messages": [user("hi")]})
    assert reply["content"] == [{"type": "text", "text": "echo: hi"}]
    assert reply["stop_reason"] == "end_turn"
    assert (reply["type"], reply["role"], reply["model"]) == ("message", "assistant", "mock")
    assert set(reply["usage"]) == {"input_tokens", "output_tokens"}
    blocks = [{"type": "text", "text": "a"}, {"type": "image"}, {"type": "text", "text": "b"}]
    assert mock_messages_reply({"messages": [user(blocks)]})["content"][0]["text"] == (
        "echo: a\nb")


def test_messages_tool_directive() -> None:
    text = 'tool:read_file {"path": "notes.txt"}'
    reply = mock_messages_reply({"messages": [user(text)]})
    assert reply["stop_reason"] == "tool_use"
    assert reply["content"] == [{
        "type": "tool_use", "name": "read_file", "input": {"path": "notes.txt"},
        "id": "toolu_mock_" + hashlib.sha256(text.encode()).hexdigest()[:12]}]
    bare = mock_messages_reply({"messages": [user("tool:list_dir")]})
    assert bare["content"][0]["input"] == {}
    for bad in ("tool:x {nope", "tool:x [1, 2]"):
        broken = mock_messages_reply({"messages": [user(bad)]})
        assert broken["content"] == [{"type": "text", "text": "mock: bad tool directive"}]


def test_messages_tool_result_is_truncated() -> None:
    result = {"type": "tool_result", "tool_use_id": "t", "content": "r" * 900}
    reply = mock_messages_reply({"messages": [user("q"), user([result])]})
    assert reply["content"][0]["text"] == "tool result: " + "r" * 500
    assert reply["stop_reason"] == "end_turn"


def test_chat_completions_analogue() -> None:
    echo = mock_chat_reply({"messages": [{"role": "system", "content": "s"}, user("yo")]})
    assert echo["choices"][0]["message"]["content"] == "echo: yo"
    assert echo["choices"][0]["finish_reason"] == "stop"
    call = mock_chat_reply({"messages": [user('tool:write_file {"path": "a"}')]})
    message = call["choices"][0]["message"]
    assert call["choices"][0]["finish_reason"] == "tool_calls"
    assert json.loads(message["tool_calls"][0]["function"]["arguments"]) == {"path": "a"}
    tool = mock_chat_reply({"messages": [user("q"), {"role": "tool", "tool_call_id": "c",
                                                     "content": "done"}]})
    assert tool["choices"][0]["message"]["content"] == "tool result: done"


async def test_served_over_a_unix_socket_with_faults(short_dir: Path,
                                                     nursery: trio.Nursery) -> None:
    server = FakeModelServer()
    path = short_dir / "model.sock"
    await nursery.start(server.serve, path)
    server.fail_next(429, retry_after="3")
    transport = httpx.AsyncHTTPTransport(uds=str(path))
    async with httpx.AsyncClient(transport=transport, base_url="http://m.test") as client:
        limited = await client.post("/v1/messages", json={"messages": [user("x")]})
        assert (limited.status_code, limited.headers["retry-after"]) == (429, "3")
        fine = await client.post("/v1/messages", json={"messages": [user("x")]})
        assert fine.json()["content"][0]["text"] == "echo: x"
        missing = await client.post("/v2/other", json={})
        assert missing.status_code == 404
    assert [r.headers["host"] for r in server.requests] == ["m.test"] * 3


MESSAGE_TEXT = st.sampled_from([
    "hello", "", "tool:read_file", 'tool:read_file {"path": "a"}', "tool:x\n{\"k\": 1}",
    "tool:", "tool: {}", "tool:x {bad", "tool:x [1]", 'tool:x {"a": 1, "a": 2}',
    "tool:x NaN", "  tool:x {}", "tool:ünï {}"])
CONTENT = MESSAGE_TEXT | st.lists(
    st.fixed_dictionaries({"type": st.sampled_from(["text", "image"]), "text": MESSAGE_TEXT}),
    max_size=3)
TOOL_RESULT = st.fixed_dictionaries({
    "type": st.just("tool_result"), "tool_use_id": st.just("t"),
    "content": CONTENT | st.text(max_size=700)})
MESSAGE = st.one_of(
    st.fixed_dictionaries({"role": st.just("user"), "content": CONTENT}),
    st.fixed_dictionaries({"role": st.just("user"), "content": st.lists(
        TOOL_RESULT | st.fixed_dictionaries({"type": st.just("text"), "text": MESSAGE_TEXT}),
        min_size=1, max_size=3)}),
    st.fixed_dictionaries({"role": st.just("assistant"), "content": CONTENT}),
    st.fixed_dictionaries({"role": st.just("tool"), "tool_call_id": st.just("c"),
                           "content": CONTENT}),
    st.just("not a message"))
BODY = st.fixed_dictionaries({"model": st.sampled_from(["mock", "", "x" * 300]),
                              "messages": st.lists(MESSAGE, max_size=4)})


@given(body=BODY)
def test_the_fake_answers_exactly_as_the_real_mock(body: dict[str, Any]) -> None:
    real = pytest.importorskip("ironclaw.host.modelproxy.mock",
                               reason="the host's mock model is not in this tree")
    assert mock_messages_reply(body) == real.anthropic_message(body)
    assert mock_chat_reply(body) == real.openai_completion(body)
