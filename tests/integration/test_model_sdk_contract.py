"""Contract tests against the official ``anthropic`` and ``openai`` SDKs.

Requests: every request the agent can build (plain turns, the compiled-in tools, tool
calls and results, system prompts, each provider's wire quirks) validates against the
SDK's own request type, unknown keys refused.

Responses: bodies built from the SDKs' own response types (text, several tool calls,
thinking blocks, every stop reason the SDK knows, refusals, error bodies, SSE streams)
are served by a real HTTP upstream and relayed by the real model proxy. The SDK itself,
pointed at the proxy's socket, must read back exactly what was sent; the agent's own
client must decode the same meaning; and the proxy's ``model.call`` must name the same
stop reason or failure. Upgrading an SDK that adds a stop reason or an error type fails
here until our vocabulary knows it.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import typing
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
import pydantic
import pytest
import trio
from anthropic.types import Message, RawMessageStreamEvent, StopReason
from anthropic.types.message_create_params import (
    MessageCreateParamsNonStreaming,
)
from anthropic.types.shared import ErrorResponse, ErrorType
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.chat.completion_create_params import (
    CompletionCreateParamsNonStreaming,
)

from ironclaw.contract.agent_config import (
    MaxTokensField,
    ModelApi,
    ProviderConfig,
    ToolCallContent,
    WireQuirks,
)
from ironclaw.contract.ids import new_session_id
from ironclaw.contract.modelwire import (
    _KINDS,
    FailureKind,
    StopKind,
    classify_stop,
)
from ironclaw.host.modelproxy import (
    ModelCall,
    ModelProxy,
    ProviderEndpoint,
    Secret,
    SessionRoute,
)
from sandbox_agent.messages import (
    AssistantMessage,
    ModelReply,
    ToolCall,
    ToolResult,
    ToolResults,
    UserMessage,
)
from sandbox_agent.messages import Message as AgentMessage
from sandbox_agent.providers import (
    AnthropicMessages,
    CircuitBreaker,
    OpenAIChat,
    ProviderRejected,
    ProviderUnavailable,
    RetryPolicy,
    open_model_client,
)
from sandbox_agent.providers import anthropic as anthropic_wire
from sandbox_agent.providers import openai as openai_wire
from sandbox_agent.tools import all_tools
from sandbox_agent.turn import tool_specs
from tests.fakes.upstream_llm import FakeUpstream, open_fake_upstream
from tests.support.events import RecordingSink

SECRET = "sk-ant-api03-CONTRACTSECRET0-" + "Qx7" * 20
ANTHROPIC_HOST = "api.anthropic.com"
OPENAI_HOST = "api.openai.com"

# -- requests --------------------------------------------------------------------------

CALLS = (ToolCall("toolu_01", "write_file", {"path": "task-runner.yaml", "content": "a: 1"}),
         ToolCall("toolu_02", "read_file", {"path": "notes.md"}))
TRANSCRIPTS: dict[str, list[AgentMessage]] = {
    "plain": [UserMessage("hello")],
    "tool round": [UserMessage("write it"), AssistantMessage("On it.", CALLS),
                   ToolResults((ToolResult("toolu_01", "written"),
                                ToolResult("toolu_02", "no such file", True))),
                   AssistantMessage("Done."), UserMessage("thanks")],
    "tool-call-only turn": [UserMessage("go"), AssistantMessage("", CALLS[:1]),
                            ToolResults((ToolResult("toolu_01", "ok"),))],
    "empty assistant turn": [UserMessage("a"), AssistantMessage(""), UserMessage("b")],
}
SPECS = tool_specs(all_tools(Path("/run/ironclaw/sock/egress.sock")))
QUIRKS = [WireQuirks(), WireQuirks(MaxTokensField.MAX_COMPLETION_TOKENS),
          WireQuirks(MaxTokensField.MAX_TOKENS, ToolCallContent.EMPTY)]


def validates_as(params_type: Any, body: dict[str, Any]) -> None:
    """Validate against the SDK's TypedDict, refusing keys it does not define."""

    class Strict(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid")
        body: params_type  # type: ignore[valid-type]

    Strict(body=body)


def test_the_agent_sends_every_compiled_in_tool() -> None:
    assert len(SPECS) >= 16


@pytest.mark.parametrize("name", sorted(TRANSCRIPTS))
@pytest.mark.parametrize("with_tools", [True, False])
def test_every_anthropic_request_validates_against_the_sdk(name: str,
                                                           with_tools: bool) -> None:
    config = ProviderConfig(ModelApi.ANTHROPIC_MESSAGES, ANTHROPIC_HOST, "claude-x", 1024)
    body = anthropic_wire.build_request(config, "You are careful.", TRANSCRIPTS[name],
                                        SPECS if with_tools else [])
    validates_as(MessageCreateParamsNonStreaming, body)


@pytest.mark.parametrize("name", sorted(TRANSCRIPTS))
@pytest.mark.parametrize("quirks", QUIRKS, ids=str)
def test_every_openai_request_validates_against_the_sdk(name: str,
                                                        quirks: WireQuirks) -> None:
    config = ProviderConfig(ModelApi.OPENAI_CHAT, OPENAI_HOST, "gpt-x", 1024, quirks)
    body = openai_wire.build_request(config, "You are careful.", TRANSCRIPTS[name], SPECS)
    validates_as(CompletionCreateParamsNonStreaming, body)
    assert body["tool_choice"] == "auto"
    for message in body["messages"]:
        if message["role"] == "assistant":  # never the invalid empty assistant turn
            assert message["content"] or message.get("tool_calls")


# -- vocabularies ----------------------------------------------------------------------

def test_every_sdk_stop_reason_has_a_meaning() -> None:
    reasons = [*typing.get_args(StopReason),
               *typing.get_args(ChatCompletion.model_fields["choices"].annotation
                                .__args__[0].model_fields["finish_reason"].annotation)]
    assert [r for r in reasons if classify_stop(r) is StopKind.UNKNOWN] == []


def test_every_sdk_error_type_has_a_kind() -> None:
    assert [t for t in typing.get_args(ErrorType) if t not in _KINDS] == []


# -- responses through the real proxy --------------------------------------------------

@pytest.fixture
def base() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="sdk-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Relay:
    """A fake upstream behind the real proxy, one session socket per provider."""

    def __init__(self, upstream: FakeUpstream, sink: RecordingSink,
                 sockets: dict[str, Path]) -> None:
        self.upstream, self.sink, self.sockets = upstream, sink, sockets

    def serve(self, body: bytes, *, status: int = 200,
              content_type: str = "application/json", chunk_size: int | None = None,
              headers: list[tuple[str, str]] | None = None) -> None:
        script = self.upstream.script
        script.body, script.status, script.content_type = body, status, content_type
        script.chunk_size, script.headers = chunk_size, headers or []
        self._calls_before = len(self.sink.of("model.call"))

    async def call(self) -> ModelCall:
        """The proxy's report of the call made since ``serve`` (it is published once
        the last byte went out, which may be just after the client has it all)."""
        with trio.fail_after(10):
            calls = await self.sink.wait_for("model.call", self._calls_before + 1)
        return calls[self._calls_before]


@pytest.fixture
async def relay(base: Path) -> AsyncIterator[Relay]:
    sink = RecordingSink()
    proxy = ModelProxy(events=sink)
    async with open_fake_upstream() as upstream, trio.open_nursery() as nursery:
        await nursery.start(proxy.run)
        sockets = {}
        for host, endpoint in (
                (ANTHROPIC_HOST, ProviderEndpoint.anthropic(Secret(SECRET),
                                                            base_url=upstream.base_url)),
                (OPENAI_HOST, ProviderEndpoint.openai(Secret(SECRET),
                                                      base_url=upstream.base_url))):
            sid = new_session_id()
            sockets[host] = await proxy.serve_session(SessionRoute(
                sid, "ag_sdk", endpoint, base / sid / "model.sock"))
        yield Relay(upstream, sink, sockets)
        nursery.cancel_scope.cancel()


async def in_thread(make: Callable[[Relay], Any], relay: Relay,
                    call: Callable[[Any], Any]) -> Any:
    """Run ``call`` on a fresh SDK client in a worker thread (the SDKs block), and close
    the client and its connections afterwards."""

    def run() -> Any:
        with make(relay) as client:
            return call(client)

    return await trio.to_thread.run_sync(run)


def anthropic_sdk(relay: Relay) -> Any:
    return anthropic.Anthropic(
        api_key="not-a-key: the proxy injects the real one", base_url=f"http://{ANTHROPIC_HOST}",
        http_client=httpx2.Client(transport=httpx2.HTTPTransport(
            uds=str(relay.sockets[ANTHROPIC_HOST]))), max_retries=0)


def openai_sdk(relay: Relay) -> Any:
    return openai.OpenAI(
        api_key="not-a-key", base_url=f"http://{OPENAI_HOST}/v1",
        http_client=httpx2.Client(transport=httpx2.HTTPTransport(
            uds=str(relay.sockets[OPENAI_HOST]))), max_retries=0)


async def agent_reply(relay: Relay, api: ModelApi) -> ModelReply:
    host = ANTHROPIC_HOST if api is ModelApi.ANTHROPIC_MESSAGES else OPENAI_HOST
    config = ProviderConfig(api, host, "model-x", 256)
    async with open_model_client(
            socket_path=relay.sockets[host], upstream_host=host,
            policy=RetryPolicy(retries=0), rng=random.Random(1),
            breaker=CircuitBreaker(failures_to_open=100, cooldown_s=1)) as client:
        provider = (AnthropicMessages(client, config) if api is ModelApi.ANTHROPIC_MESSAGES
                    else OpenAIChat(client, config))
        return await provider.complete("S", [UserMessage("hi")], SPECS[:2])


def anthropic_message(content: list[dict[str, Any]], stop_reason: str) -> Any:
    return Message.model_validate({
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-x",
        "content": content, "stop_reason": stop_reason, "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 34}})


TEXT = {"type": "text", "text": "The file task-runner-configuration.yaml is ready."}
TOOL_USES = [{"type": "tool_use", "id": "toolu_01", "name": "write_file",
              "input": {"path": "disk-partitioning-utility.md", "content": "# Notes"}},
             {"type": "tool_use", "id": "toolu_02", "name": "read_file",
              "input": {"path": "a.txt"}}]
THINKING = {"type": "thinking", "thinking": "The user wants the file.",
            "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3h"}
ANTHROPIC_CASES = {
    "text": ([TEXT], "end_turn"),
    "several tool calls": ([TEXT, *TOOL_USES], "tool_use"),
    "thinking then text": ([THINKING, TEXT], "end_turn"),
    **{f"stop {reason}": ([TEXT], reason) for reason in typing.get_args(StopReason)},
}


@pytest.mark.parametrize("case", sorted(ANTHROPIC_CASES))
async def test_anthropic_answers_survive_the_proxy(relay: Relay, case: str) -> None:
    content, stop_reason = ANTHROPIC_CASES[case]
    sent = anthropic_message(content, stop_reason)
    relay.serve(sent.model_dump_json().encode(), chunk_size=9)
    got = await in_thread(anthropic_sdk, relay, lambda c: c.messages.create(
        model="claude-x", max_tokens=64, messages=[{"role": "user", "content": "hi"}]))
    assert got.model_dump() == sent.model_dump()
    assert (await relay.call()).stop == classify_stop(stop_reason)
    reply = await agent_reply(relay, ModelApi.ANTHROPIC_MESSAGES)
    assert reply.stop is classify_stop(stop_reason)
    assert reply.message.text == "".join(b["text"] for b in content if b["type"] == "text")
    assert [(c.id, c.name, c.input) for c in reply.tool_calls] == [
        (b["id"], b["name"], b["input"]) for b in content if b["type"] == "tool_use"]


def openai_completion(message: dict[str, Any], finish_reason: str) -> Any:
    return ChatCompletion.model_validate({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-x",
        "choices": [{"index": 0, "finish_reason": finish_reason, "logprobs": None,
                     "message": {"role": "assistant", "refusal": None, **message}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}})


TOOL_CALLS = [{"id": "call_1", "type": "function", "function": {
    "name": "write_file", "arguments": json.dumps(TOOL_USES[0]["input"])}},
              {"id": "call_2", "type": "function", "function": {
                  "name": "read_file", "arguments": '{"path": "a.txt"}'}}]
OPENAI_FINISHES = ("stop", "length", "tool_calls", "content_filter", "function_call")
OPENAI_CASES = {
    "text": ({"content": TEXT["text"]}, "stop"),
    "several tool calls": ({"content": None, "tool_calls": TOOL_CALLS}, "tool_calls"),
    "refusal": ({"content": None, "refusal": "I can't help with that."}, "stop"),
    **{f"finish {reason}": ({"content": "partial"}, reason) for reason in OPENAI_FINISHES},
}


@pytest.mark.parametrize("case", sorted(OPENAI_CASES))
async def test_openai_answers_survive_the_proxy(relay: Relay, case: str) -> None:
    message, finish = OPENAI_CASES[case]
    sent = openai_completion(message, finish)
    relay.serve(sent.model_dump_json().encode(), chunk_size=9)
    got = await in_thread(openai_sdk, relay, lambda c: c.chat.completions.create(
        model="gpt-x", messages=[{"role": "user", "content": "hi"}]))
    assert got.model_dump() == sent.model_dump()
    expected = StopKind.REFUSED if message.get("refusal") else classify_stop(finish)
    assert (await relay.call()).stop == expected
    reply = await agent_reply(relay, ModelApi.OPENAI_CHAT)
    assert reply.stop is expected
    assert reply.refusal == (message.get("refusal") or "")
    assert reply.message.text == (message.get("content") or "")
    assert [(c.id, c.name, c.input) for c in reply.tool_calls] == [
        (t["id"], t["function"]["name"], json.loads(t["function"]["arguments"]))
        for t in message.get("tool_calls", [])]


ANTHROPIC_ERRORS = [(529, "overloaded_error", FailureKind.OVERLOADED),
                    (401, "authentication_error", FailureKind.AUTH),
                    (403, "permission_error", FailureKind.PERMISSION),
                    (429, "rate_limit_error", FailureKind.RATE_LIMITED),
                    (400, "invalid_request_error", FailureKind.INVALID_REQUEST),
                    (400, "billing_error", FailureKind.QUOTA),
                    (500, "api_error", FailureKind.SERVER)]


@pytest.mark.parametrize(("status", "error_type", "kind"), ANTHROPIC_ERRORS)
async def test_anthropic_errors_parse_into_their_kinds(relay: Relay, status: int,
                                                       error_type: str,
                                                       kind: FailureKind) -> None:
    sent = ErrorResponse.model_validate({"type": "error", "request_id": "req_1", "error": {
        "type": error_type, "message": f"{error_type} for sk-learn-compatible-estimators"}})
    relay.serve(sent.model_dump_json().encode(), status=status)
    with pytest.raises(anthropic.APIStatusError) as caught:
        await in_thread(anthropic_sdk, relay, lambda c: c.messages.create(
            model="claude-x", max_tokens=8, messages=[{"role": "user", "content": "hi"}]))
    assert caught.value.status_code == status
    assert caught.value.body == sent.model_dump()
    assert (await relay.call()).failure == kind
    with pytest.raises((ProviderRejected, ProviderUnavailable)) as agent_caught:
        await agent_reply(relay, ModelApi.ANTHROPIC_MESSAGES)
    if isinstance(agent_caught.value, ProviderRejected):
        assert agent_caught.value.failure.kind is kind
        assert "sk-learn-compatible-estimators" in agent_caught.value.failure.message


@pytest.mark.parametrize(("status", "error", "kind"), [
    (429, {"type": "insufficient_quota", "code": "insufficient_quota"}, FailureKind.QUOTA),
    (401, {"type": "invalid_request_error", "code": "invalid_api_key"}, FailureKind.AUTH),
    (404, {"type": "invalid_request_error", "code": "model_not_found"},
     FailureKind.NOT_FOUND),
    (400, {"type": "invalid_request_error", "code": None}, FailureKind.INVALID_REQUEST),
])
async def test_openai_errors_parse_into_their_kinds(relay: Relay, status: int,
                                                    error: dict[str, str | None],
                                                    kind: FailureKind) -> None:
    body = {"error": {"message": "You exceeded your current quota.", "param": None, **error}}
    relay.serve(json.dumps(body).encode(), status=status)
    with pytest.raises(openai.APIStatusError) as caught:
        await in_thread(openai_sdk, relay, lambda c: c.chat.completions.create(
            model="gpt-x", messages=[{"role": "user", "content": "hi"}]))
    assert caught.value.status_code == status and caught.value.code == error["code"]
    assert (await relay.call()).failure == kind
    with pytest.raises((ProviderRejected, ProviderUnavailable)) as agent_caught:
        await agent_reply(relay, ModelApi.OPENAI_CHAT)
    if isinstance(agent_caught.value, ProviderRejected):
        assert agent_caught.value.failure.kind is kind


def anthropic_stream(content: list[dict[str, Any]], stop_reason: str) -> bytes:
    start = anthropic_message([], stop_reason).model_dump()
    start["stop_reason"] = None
    events: list[dict[str, Any]] = [{"type": "message_start", "message": start}]
    for index, block in enumerate(content):
        if block["type"] == "text":
            events += [{"type": "content_block_start", "index": index,
                        "content_block": {"type": "text", "text": ""}},
                       {"type": "content_block_delta", "index": index,
                        "delta": {"type": "text_delta", "text": block["text"]}}]
        else:
            events += [{"type": "content_block_start", "index": index, "content_block": {
                "type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}},
                {"type": "content_block_delta", "index": index, "delta": {
                    "type": "input_json_delta", "partial_json": json.dumps(block["input"])}}]
        events.append({"type": "content_block_stop", "index": index})
    events += [{"type": "message_delta", "delta": {"stop_reason": stop_reason,
                                                   "stop_sequence": None},
                "usage": {"output_tokens": 34}},
               {"type": "message_stop"}]
    adapter = pydantic.TypeAdapter(RawMessageStreamEvent)
    return b"".join(
        f"event: {e['type']}\ndata: {adapter.validate_python(e).model_dump_json()}\n\n"
        .encode() for e in events)


@pytest.mark.parametrize(("content", "stop_reason"), [([TEXT, *TOOL_USES], "tool_use"),
                                                      ([TEXT], "refusal")])
async def test_anthropic_sse_streams_survive_the_proxy(
        relay: Relay, content: list[dict[str, Any]], stop_reason: str) -> None:
    relay.serve(anthropic_stream(content, stop_reason), content_type="text/event-stream",
                chunk_size=7)

    def final(client: Any) -> Any:
        with client.messages.stream(
                model="claude-x", max_tokens=64,
                messages=[{"role": "user", "content": "hi"}]) as stream:
            return stream.get_final_message()

    got = await in_thread(anthropic_sdk, relay, final)
    assert got.model_dump() == anthropic_message(content, stop_reason).model_dump()
    assert (await relay.call()).stop == classify_stop(stop_reason)


async def test_openai_sse_streams_survive_the_proxy(relay: Relay) -> None:
    words = ["The file ", "task-runner-", "configuration.yaml", " is ready."]
    chunks = [ChatCompletionChunk.model_validate({
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
        "model": "gpt-x", "choices": [{"index": 0, "delta": {"content": word},
                                       "finish_reason": None}]}) for word in words]
    chunks.append(ChatCompletionChunk.model_validate({
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
        "model": "gpt-x", "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}))
    body = b"".join(f"data: {c.model_dump_json()}\n\n".encode() for c in chunks)
    relay.serve(body + b"data: [DONE]\n\n", content_type="text/event-stream", chunk_size=5)

    def collect(client: Any) -> list[Any]:
        return list(client.chat.completions.create(
            model="gpt-x", messages=[{"role": "user", "content": "hi"}], stream=True))

    got = await in_thread(openai_sdk, relay, collect)
    assert [c.model_dump() for c in got] == [c.model_dump() for c in chunks]
    assert (await relay.call()).stop == StopKind.TRUNCATED
