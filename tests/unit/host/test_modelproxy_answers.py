"""What the proxy reads from answers as they pass (stop reasons, failure kinds), and
the operator event when a provider keeps failing."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio

from ironclaw.contract.ids import new_session_id
from ironclaw.host.modelproxy import ModelProxy, ProviderEndpoint, Secret, SessionRoute
from ironclaw.host.modelproxy.answers import MAX_READ, AnswerReader, AnswerSummary
from tests.fakes.upstream_llm import open_fake_upstream
from tests.support.events import RecordingSink


def read(status: int, content_type: str, body: bytes, size: int = 5) -> AnswerSummary:
    reader = AnswerReader(status, content_type)
    for i in range(0, len(body), size):
        reader.feed(body[i:i + size])
    return reader.finish()


def test_completions_errors_and_streams_are_read() -> None:
    anthropic = json.dumps({"type": "message", "content": [], "stop_reason": "max_tokens"})
    assert read(200, "application/json", anthropic.encode()) == AnswerSummary("truncated")
    refusal = {"choices": [{"finish_reason": "stop", "message": {"refusal": "No."}}]}
    assert read(200, "application/json", json.dumps(refusal).encode()).stop == "refused"
    models = json.dumps({"data": [{"id": "m"}]}).encode()
    assert read(200, "application/json; charset=utf-8", models) == AnswerSummary()
    overloaded = json.dumps({"type": "error", "error": {"type": "overloaded_error"}})
    assert read(529, "application/json", overloaded.encode()) == AnswerSummary("", "overloaded")
    assert read(502, "text/html", b"<h1>bad gateway</h1>").failure == "server"
    sse = (b'event: message_start\ndata: {"type":"message_start","message":'
           b'{"stop_reason":null}}\n\nevent: message_delta\ndata: {"type":"message_delta",'
           b'"delta":{"stop_reason":"tool_use"}}\n\n')
    assert read(200, "text/event-stream", sse, size=3).stop == "tool_use"
    chunks = (b'data: {"choices":[{"delta":{"content":"a"},"finish_reason":null}]}\n\n'
              b'data: {"choices":[{"delta":{},"finish_reason":"content_filter"}]}\n\n'
              b"data: [DONE]\n\n")
    assert read(200, "text/event-stream", chunks).stop == "filtered"


def test_reading_memory_is_bounded() -> None:
    reader = AnswerReader(200, "application/json")
    for _ in range(3):
        reader.feed(b" " * MAX_READ)
    assert len(reader._buffer) == 0
    assert reader.finish().stop == "unknown"


@pytest.fixture
def base() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="mpa-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def test_a_provider_that_keeps_failing_is_reported_once_then_its_recovery(
        base: Path) -> None:
    sink = RecordingSink()
    proxy = ModelProxy(events=sink)
    overloaded = json.dumps({"type": "error", "error": {"type": "overloaded_error",
                                                        "message": "Overloaded"}}).encode()
    async with open_fake_upstream() as upstream, trio.open_nursery() as nursery:
        await nursery.start(proxy.run)
        sid = new_session_id()
        path = await proxy.serve_session(SessionRoute(
            sid, "ag_1", ProviderEndpoint.anthropic(Secret("sk-ant-api03-" + "k9X" * 10),
                                                    base_url=upstream.base_url),
            base / sid / "model.sock"))
        async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=str(path)),
                                     base_url="http://api.anthropic.com") as client:
            upstream.script.body, upstream.script.status = overloaded, 529
            for _ in range(4):
                response = await client.post("/v1/messages", json={})
                assert response.status_code == 529
            upstream.script.body, upstream.script.status = None, 200
            assert (await client.post("/v1/messages", json={
                "model": "m", "max_tokens": 5, "messages": []})).status_code == 200
            with trio.fail_after(5):
                await sink.wait_for("model.provider_recovered")
        nursery.cancel_scope.cancel()
    [failing] = sink.of("model.provider_failing")
    assert (failing.provider, failing.failure, failing.consecutive) == (
        "anthropic", "overloaded", 3)
    [recovered] = sink.of("model.provider_recovered")
    assert recovered.failed_calls == 4
    assert [c.failure for c in sink.of("model.call")] == ["overloaded"] * 4 + [""]
    assert sink.of("model.call")[-1].stop == "complete"


def test_metrics_count_each_stop_and_failure_from_closed_sets() -> None:
    from prometheus_client import generate_latest

    from ironclaw.host.api.metrics import ApiMetrics
    from ironclaw.host.modelproxy import ModelCall, ProviderFailing

    metrics = ApiMetrics()

    def call(status: int, stop: str = "", failure: str = "") -> ModelCall:
        return ModelCall("ses_1", "ag", "anthropic", "api.anthropic.com", "POST",
                         "/v1/messages", status, 1, 1, 1.0, 0, stop=stop, failure=failure)

    for event in (call(200, "truncated"), call(200, "refused"), call(200, "refused"),
                  call(529, failure="overloaded"), call(200, stop="made-up-word")):
        metrics.observe("model.call", event)
    metrics.observe("model.provider_failing", ProviderFailing("anthropic", "quota", 3))
    text = generate_latest(metrics.registry).decode()
    assert 'ironclaw_model_stops_total{stop="truncated"} 1.0' in text
    assert 'ironclaw_model_stops_total{stop="refused"} 2.0' in text
    assert 'ironclaw_model_failures_total{kind="overloaded"} 1.0' in text
    assert 'ironclaw_model_provider_failing_total{kind="quota",provider="anthropic"} 1.0' \
        in text
    assert "made-up-word" not in text
