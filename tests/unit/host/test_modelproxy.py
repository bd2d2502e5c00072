"""The model proxy over real unix sockets, against a real fake provider on loopback."""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from ironclaw.contract.agent_config import MOCK_MODEL_HOST
from ironclaw.contract.ids import new_session_id
from ironclaw.host.modelproxy import (
    ModelCall,
    ModelProxy,
    ProviderEndpoint,
    ProxyLimits,
    Secret,
    ServeProxySession,
    SessionConflict,
    SessionRoute,
    StopProxySession,
    UnsafeSocketPath,
)
from tests.fakes.upstream_llm import FakeUpstream, open_fake_upstream, parse_sse
from tests.support.events import RecordingSink

HOST_SECRET = "sk-ant-api03-HOSTSECRET-" + "q" * 32
OPENAI_SECRET = "sk-proj-OPENAIHOSTSECRET" + "z" * 24
ANTHROPIC = "api.anthropic.com"


@pytest.fixture
def base() -> Iterator[Path]:
    # Short, so socket paths fit sun_path without the /proc/self/fd fallback.
    path = Path(tempfile.mkdtemp(prefix="mp-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    async with open_fake_upstream() as fake:
        yield fake


@asynccontextmanager
async def open_proxy(**kwargs: Any) -> AsyncIterator[tuple[ModelProxy, RecordingSink]]:
    sink = RecordingSink()
    proxy = ModelProxy(events=sink, **kwargs)
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.run)
        yield proxy, sink
        nursery.cancel_scope.cancel()


def make_route(base: Path, provider: ProviderEndpoint, session_id: str | None = None,
               ) -> SessionRoute:
    sid = session_id or new_session_id()
    return SessionRoute(sid, "ag_test", provider, base / "sessions" / sid / "sock" / "model.sock")


def anthropic(upstream: FakeUpstream, secret: str = HOST_SECRET) -> ProviderEndpoint:
    return ProviderEndpoint.anthropic(Secret(secret), base_url=upstream.base_url)


def client(path: Path, host: str = ANTHROPIC) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=str(path)),
                             base_url=f"http://{host}", timeout=10)


async def raw_exchange(path: Path, data: bytes) -> bytes:
    """Send raw bytes, half-close, and read everything until the proxy closes."""
    stream = await trio.open_unix_socket(str(path))
    async with stream:
        await stream.send_all(data)
        await stream.send_eof()
        reply = b""
        while chunk := await stream.receive_some(65536):
            reply += chunk
    return reply


def hello(text: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"model": "m", "max_tokens": 16, "messages": [{"role": "user", "content": text}],
            **extra}


def calls(sink: RecordingSink) -> list[ModelCall]:
    return sink.of("model.call")


async def test_credential_injected_and_sandbox_auth_never_forwarded(
        base: Path, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    # Loading a chat adapter holds httpx at WARNING (URLs can carry tokens); this test
    # wants its debug lines, to show the credential is absent from them.
    caplog.set_level(logging.DEBUG, logger="httpx")
    caplog.set_level(logging.DEBUG, logger="httpcore")
    async with open_proxy() as (proxy, sink):
        route = make_route(base, anthropic(upstream))
        path = await proxy.serve_session(route)
        sandbox_headers = {
            "authorization": "Bearer sandbox-made-up-token",
            "x-api-key": "sandbox-key",
            "proxy-authorization": "Basic Zm9vOmJhcg==",
            "cookie": "session=stolen",
            "x-ironclaw-session": new_session_id(),
            "x-custom-token": "t",
            "x-goog-api-key": "g",
            "anthropic-beta": "tools-2024-04-04",
        }
        async with client(path) as c:
            response = await c.post("/v1/messages", json=hello("hi"), headers=sandbox_headers)
        assert response.status_code == 200
        assert response.json()["content"][0]["text"] == "upstream: hi"
    [seen] = upstream.requests
    assert seen.path == "/v1/messages"
    assert seen.header("x-api-key") == [HOST_SECRET]
    assert seen.header("anthropic-version") == ["2023-06-01"]
    assert seen.header("anthropic-beta") == ["tools-2024-04-04"]
    for name in ("authorization", "proxy-authorization", "cookie", "x-ironclaw-session",
                 "x-custom-token", "x-goog-api-key"):
        assert seen.header(name) == [], name
    assert not any("sandbox" in value for _, value in seen.headers)
    [call] = calls(sink)
    assert (call.session_id, call.status, call.host, call.path) == (
        route.session_id, 200, ANTHROPIC, "/v1/messages")
    assert call.request_bytes == len(seen.body) > 0
    assert call.response_bytes > 0 and call.redactions == 0
    assert HOST_SECRET not in repr(call)
    assert caplog.records and HOST_SECRET not in caplog.text  # httpx/httpcore debug logs


async def test_sandbox_anthropic_version_is_kept_not_duplicated(
        base: Path, upstream: FakeUpstream) -> None:
    async with open_proxy() as (proxy, _):
        path = await proxy.serve_session(make_route(base, anthropic(upstream)))
        async with client(path) as c:
            response = await c.post("/v1/messages", json=hello(),
                                    headers={"anthropic-version": "2099-01-01"})
    assert response.status_code == 200
    assert upstream.requests[0].header("anthropic-version") == ["2099-01-01"]


async def test_odd_but_legal_bytes_are_forwarded_exactly(base: Path,
                                                         upstream: FakeUpstream) -> None:
    body = json.dumps(hello()).encode()
    async with open_proxy() as (proxy, _):
        path = await proxy.serve_session(make_route(base, anthropic(upstream)))
        reply = await raw_exchange(path, (
            b"POST /v1/messages?beta=true&x=%zz HTTP/1.1\r\nHost: api.anthropic.com\r\n"
            b"User-Agent: caf\xe9 \xff\r\nContent-Length: " + str(len(body)).encode()
            + b"\r\n\r\n" + body))
    assert reply.startswith(b"HTTP/1.1 200 ")
    [seen] = upstream.requests
    assert seen.query == b"beta=true&x=%zz"
    assert seen.header("user-agent") == ["caf\xe9 \xff"]


async def test_openai_bearer_injected(base: Path, upstream: FakeUpstream) -> None:
    endpoint = ProviderEndpoint.openai(Secret(OPENAI_SECRET), base_url=upstream.base_url)
    async with open_proxy() as (proxy, _):
        path = await proxy.serve_session(make_route(base, endpoint))
        async with client(path, "api.openai.com") as c:
            response = await c.post("/v1/chat/completions", json=hello("yo"),
                                    headers={"authorization": "Bearer sandbox"})
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "upstream: yo"
    assert upstream.requests[0].header("authorization") == [f"Bearer {OPENAI_SECRET}"]


async def test_openrouter_prefix_and_local_without_key(base: Path,
                                                      upstream: FakeUpstream) -> None:
    router = ProviderEndpoint.openrouter(Secret("sk-or-v1-" + "r" * 30),
                                         base_url=upstream.base_url + "/api")
    local = ProviderEndpoint.local(upstream.base_url)
    local_host = upstream.base_url.removeprefix("http://")
    async with open_proxy() as (proxy, _):
        path_r = await proxy.serve_session(make_route(base, router))
        path_l = await proxy.serve_session(make_route(base, local))
        async with client(path_r, "openrouter.ai") as r, client(path_l, local_host) as lo:
            assert (await r.post("/v1/chat/completions", json=hello())).status_code == 200
            answer = await lo.post("/v1/chat/completions", json=hello("local"),
                                   headers={"authorization": "Bearer sandbox"})
    assert answer.json()["choices"][0]["message"]["content"] == "upstream: local"
    via_router, via_local = upstream.requests
    assert via_router.path == "/api/v1/chat/completions"
    assert via_router.header("authorization") == ["Bearer sk-or-v1-" + "r" * 30]
    assert via_local.header("authorization") == []


@pytest.mark.parametrize("host", ["evil.example.com", "api.openai.com",
                                  "api.anthropic.com.evil.com", "127.0.0.1"])
async def test_host_outside_allowlist_is_403_and_nothing_reaches_upstream(
        base: Path, upstream: FakeUpstream, host: str) -> None:
    async with open_proxy() as (proxy, sink):
        path = await proxy.serve_session(make_route(base, anthropic(upstream)))
        async with client(path, host) as c:
            response = await c.post("/v1/messages", json=hello())
    assert response.status_code == 403
    assert response.json()["error"] == "host_not_allowed"
    assert set(response.json()) == {"error", "detail"}
    assert upstream.requests == []
    [call] = calls(sink)
    assert (call.status, call.outcome) == (403, "host_not_allowed")


async def test_host_with_port_and_case_is_allowed(base: Path, upstream: FakeUpstream) -> None:
    async with open_proxy() as (proxy, _):
        path = await proxy.serve_session(make_route(base, anthropic(upstream)))
        async with client(path, "API.Anthropic.com:443") as c:
            response = await c.post("/v1/messages", json=hello())
    assert response.status_code == 200


@pytest.mark.parametrize(("method", "url"), [
    ("POST", "/v1/complete"), ("GET", "/v1/messages"), ("POST", "/v1/../v1/messages"),
    ("POST", "/v1/chat/completions"), ("DELETE", "/v1/models"), ("POST", "/v1/messages/"),
])
async def test_unknown_route_is_404(base: Path, upstream: FakeUpstream, method: str,
                                    url: str) -> None:
    async with open_proxy() as (proxy, sink):
        path = await proxy.serve_session(make_route(base, anthropic(upstream)))
        reply = await raw_exchange(path, (
            f"{method} {url} HTTP/1.1\r\nHost: {ANTHROPIC}\r\nContent-Length: 2\r\n"
            "\r\n{}").encode())
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404 ")
    assert json.loads(body)["error"] == "route_not_found"
    assert upstream.requests == []
    assert calls(sink)[0].path == "<other>"


async def test_models_listing_is_forwarded(base: Path, upstream: FakeUpstream) -> None:
    async with open_proxy() as (proxy, _):
        path = await proxy.serve_session(make_route(base, anthropic(upstream)))
        async with client(path) as c:
            response = await c.get("/v1/models")
    assert response.status_code == 200
    assert upstream.requests[0].method == "GET"


async def test_body_cap_gives_413_declared_or_chunked(base: Path,
                                                      upstream: FakeUpstream) -> None:
    chunk = b"12c\r\n" + b"x" * 300 + b"\r\n"
    async with open_proxy(limits=ProxyLimits(max_request_bytes=1024)) as (proxy, _):
        path = await proxy.serve_session(make_route(base, anthropic(upstream)))
        async with client(path) as c:
            declared = await c.post("/v1/messages", content=b"x" * 1025)
            fits = await c.post("/v1/messages", json=hello())
        streamed = await raw_exchange(path, (
            f"POST /v1/messages HTTP/1.1\r\nHost: {ANTHROPIC}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode() + chunk * 10 + b"0\r\n\r\n")
    assert declared.status_code == 413 and declared.json()["error"] == "too_large"
    assert streamed.startswith(b"HTTP/1.1 413 ")
    assert fits.status_code == 200
    assert len(upstream.requests) == 1


async def test_rate_cap_gives_429_with_retry_after_per_session(base: Path) -> None:
    limits = ProxyLimits(rate=0.001, burst=3)
    async with open_proxy(limits=limits) as (proxy, sink):
        path_a = await proxy.serve_session(make_route(base, ProviderEndpoint.mock()))
        path_b = await proxy.serve_session(make_route(base, ProviderEndpoint.mock()))
        async with client(path_a, MOCK_MODEL_HOST) as a, client(path_b, MOCK_MODEL_HOST) as b:
            statuses = [(await a.post("/v1/messages", json=hello())).status_code
                        for _ in range(3)]
            limited = await a.post("/v1/messages", json=hello())
            other = await b.post("/v1/messages", json=hello())
    assert statuses == [200, 200, 200]
    assert limited.status_code == 429
    assert limited.json()["error"] == "rate_limited"
    assert int(limited.headers["retry-after"]) >= 1
    assert other.status_code == 200
    assert [c.status for c in calls(sink)].count(429) == 1


async def test_rate_bucket_refills_with_time(base: Path, autojump_clock: trio.abc.Clock
                                             ) -> None:
    limits = ProxyLimits(rate=1.0, burst=2)
    async with open_proxy(limits=limits) as (proxy, _):
        path = await proxy.serve_session(make_route(base, ProviderEndpoint.mock()))
        async with client(path, MOCK_MODEL_HOST) as c:
            first = [(await c.post("/v1/messages", json=hello())).status_code
                     for _ in range(3)]
            retry_after = int((await c.post("/v1/messages", json=hello())).headers[
                "retry-after"])
            await trio.sleep(retry_after)
            after = await c.post("/v1/messages", json=hello())
    assert first == [200, 200, 429]
    assert retry_after == 1
    assert after.status_code == 200


async def test_secret_echoed_in_json_body_and_header_is_redacted(
        base: Path, upstream: FakeUpstream) -> None:
    upstream.script.text = f"your key is {HOST_SECRET}; another: sk-ant-api03-{'k7Q' * 14}"
    upstream.script.headers = [("x-echo", f"Bearer {HOST_SECRET}")]
    async with open_proxy() as (proxy, sink):
        path = await proxy.serve_session(make_route(base, anthropic(upstream)))
        async with client(path) as c:
            response = await c.post("/v1/messages", json=hello())
    assert response.status_code == 200
    assert HOST_SECRET not in response.text and "k7Q" * 14 not in response.text
    assert response.json()["content"][0]["text"] == (
        "your key is [REDACTED]; another: [REDACTED]")
    assert response.headers["x-echo"] == "Bearer [REDACTED]"
    assert calls(sink)[0].redactions == 3


async def test_secret_split_across_sse_chunks_is_redacted(
        base: Path, upstream: FakeUpstream) -> None:
    upstream.script.text = f"the key: {HOST_SECRET} (end)"
    upstream.script.chunk_size = 7
    async with open_proxy() as (proxy, sink):
        path = await proxy.serve_session(make_route(base, anthropic(upstream)))
        received: list[bytes] = []
        async with client(path) as c, c.stream(
                "POST", "/v1/messages", json=hello(stream=True)) as response:
            assert response.headers["content-type"] == "text/event-stream"
            async for piece in response.aiter_raw():
                received.append(piece)
    raw = b"".join(received)
    assert HOST_SECRET.encode() not in raw
    assert HOST_SECRET[10:30].encode() not in raw
    events = parse_sse(raw)
    names = [name for name, _ in events]
    assert (names[0], names[-1]) == ("message_start", "message_stop")
    deltas = [json.loads(data)["delta"]["text"] for name, data in events
              if name == "content_block_delta"]
    assert "".join(deltas) == "the key: [REDACTED] (end)"
    [call] = calls(sink)
    assert call.redactions == 1 and call.status == 200
    assert len(received) > 1  # it really streamed


async def test_two_sockets_are_two_identities(base: Path) -> None:
    async with open_proxy() as (proxy, sink):
        route_a = make_route(base, ProviderEndpoint.mock())
        route_b = make_route(base, ProviderEndpoint.mock())
        path_a = await proxy.serve_session(route_a)
        path_b = await proxy.serve_session(route_b)
        spoof = {"x-ironclaw-session": route_b.session_id, "x-session-id": route_b.session_id,
                 "x-ironclaw-agent-group": "ag_other"}
        async with client(path_a, MOCK_MODEL_HOST) as a:
            ok = await a.post("/v1/messages", json=hello(route_b.session_id), headers=spoof)
        async with client(path_b, MOCK_MODEL_HOST) as b:
            await b.post("/v1/messages", json=hello())
    assert ok.status_code == 200
    assert [c.session_id for c in calls(sink)] == [route_a.session_id, route_b.session_id]
    assert path_a != path_b


async def test_socket_mode_stale_socket_and_cleanup_on_stop(base: Path) -> None:
    route = make_route(base, ProviderEndpoint.mock())
    route.socket_path.parent.mkdir(parents=True, mode=0o755)
    stale = trio.socket.socket(trio.socket.AF_UNIX)
    await stale.bind(str(route.socket_path))
    stale.close()  # leaves a dead socket file behind, as a crash would
    async with open_proxy() as (proxy, _):
        path = await proxy.serve_session(route)
        info = os.lstat(path)
        assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
        assert route.session_id in proxy.sessions
        async with client(path, MOCK_MODEL_HOST) as c:
            assert (await c.get("/v1/models")).status_code == 200
        await proxy.stop_session(route.session_id)
        assert not path.exists()
        assert proxy.sessions == frozenset()
        with pytest.raises(OSError):
            await trio.open_unix_socket(str(path))
        await proxy.stop_session(route.session_id)  # idempotent


async def test_stop_closes_in_flight_calls(base: Path, upstream: FakeUpstream) -> None:
    upstream.script.hang = True
    async with open_proxy() as (proxy, _):
        route = make_route(base, anthropic(upstream))
        path = await proxy.serve_session(route)
        outcome: list[BaseException] = []

        async def call() -> None:
            async with client(path) as c:
                try:
                    await c.post("/v1/messages", json=hello())
                except httpx.HTTPError as exc:
                    outcome.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call)
            await upstream.received.wait()
            await proxy.stop_session(route.session_id)
        assert outcome and isinstance(outcome[0], httpx.RemoteProtocolError)
        assert not path.exists()


async def test_cancellation_removes_every_socket(base: Path) -> None:
    paths = []
    async with open_proxy() as (proxy, _):
        for _ in range(3):
            paths.append(await proxy.serve_session(make_route(base, ProviderEndpoint.mock())))
        assert all(p.exists() for p in paths)
    assert not any(p.exists() for p in paths)
    with pytest.raises(RuntimeError):
        await proxy.serve_session(make_route(base, ProviderEndpoint.mock()))


async def test_unsafe_socket_paths_are_refused_and_proxy_keeps_serving(base: Path) -> None:
    async with open_proxy() as (proxy, _):
        squatted = make_route(base, ProviderEndpoint.mock())
        squatted.socket_path.parent.mkdir(parents=True)
        squatted.socket_path.write_text("not a socket")
        with pytest.raises(UnsafeSocketPath):
            await proxy.serve_session(squatted)
        assert squatted.socket_path.read_text() == "not a socket"
        open_dir = make_route(base, ProviderEndpoint.mock())
        open_dir.socket_path.parent.mkdir(parents=True)
        os.chmod(open_dir.socket_path.parent, 0o777)
        with pytest.raises(UnsafeSocketPath):
            await proxy.serve_session(open_dir)
        good = await proxy.serve_session(make_route(base, ProviderEndpoint.mock()))
        async with client(good, MOCK_MODEL_HOST) as c:
            assert (await c.get("/v1/models")).status_code == 200


async def test_same_route_is_idempotent_other_route_conflicts(base: Path) -> None:
    async with open_proxy() as (proxy, _):
        route = make_route(base, ProviderEndpoint.mock())
        assert await proxy.serve_session(route) == await proxy.serve_session(route)
        other = SessionRoute(route.session_id, "ag_other", route.provider, route.socket_path)
        with pytest.raises(SessionConflict):
            await proxy.serve_session(other)
        thief = make_route(base, ProviderEndpoint.mock())
        thief = SessionRoute(thief.session_id, "ag", thief.provider, route.socket_path)
        with pytest.raises(SessionConflict):
            await proxy.serve_session(thief)


async def test_long_socket_path_binds_through_proc_fd(base: Path) -> None:
    sid = "ses_" + "a" * 64
    deep = base / ("d" * 60)
    route = SessionRoute(sid, "ag", ProviderEndpoint.mock(), deep / sid / "sock" / "model.sock")
    assert len(str(route.socket_path)) > 108
    async with open_proxy() as (proxy, _):
        path = await proxy.serve_session(route)
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
        fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
        try:
            stream = await trio.open_unix_socket(f"/proc/self/fd/{fd}/model.sock")
        finally:
            os.close(fd)
        async with stream:
            await stream.send_all(
                f"GET /v1/models HTTP/1.1\r\nHost: {MOCK_MODEL_HOST}\r\n"
                "Connection: close\r\n\r\n".encode())
            reply = b""
            while chunk := await stream.receive_some(65536):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 200 ")
    assert not path.exists()


async def test_upstream_timeout_is_504(base: Path, upstream: FakeUpstream) -> None:
    upstream.script.hang = True
    async with open_proxy(limits=ProxyLimits(read_timeout=0.2)) as (proxy, sink):
        path = await proxy.serve_session(make_route(base, anthropic(upstream)))
        async with client(path) as c:
            response = await c.post("/v1/messages", json=hello())
    assert response.status_code == 504
    assert response.json() == {"error": "upstream_timeout",
                               "detail": "the model provider did not answer in time"}
    assert calls(sink)[0].outcome == "upstream_timeout"


async def test_upstream_unreachable_is_502(base: Path) -> None:
    probe = trio.socket.socket()
    await probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    endpoint = ProviderEndpoint.anthropic(Secret(HOST_SECRET),
                                          base_url=f"http://127.0.0.1:{port}")
    async with open_proxy() as (proxy, _):
        path = await proxy.serve_session(make_route(base, endpoint))
        async with client(path) as c:
            response = await c.post("/v1/messages", json=hello())
    assert response.status_code == 502
    assert response.json()["error"] == "upstream_unreachable"
    assert "Traceback" not in response.text and str(port) not in response.text


async def test_upstream_cookies_are_neither_relayed_nor_replayed(
        base: Path, upstream: FakeUpstream) -> None:
    upstream.script.headers = [("set-cookie", "tracker=abc; Path=/")]
    async with open_proxy() as (proxy, _):
        path_a = await proxy.serve_session(make_route(base, anthropic(upstream)))
        path_b = await proxy.serve_session(make_route(base, anthropic(upstream)))
        async with client(path_a) as a, client(path_b) as b:
            first = await a.post("/v1/messages", json=hello())
            await b.post("/v1/messages", json=hello())
    assert "set-cookie" not in first.headers
    assert upstream.requests[1].header("cookie") == []


async def test_malformed_request_gets_400_and_is_reported(base: Path) -> None:
    async with open_proxy() as (proxy, sink):
        path = await proxy.serve_session(make_route(base, ProviderEndpoint.mock()))
        reply = await raw_exchange(
            path, b"POST /v1/messages HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400 ")
    [call] = calls(sink)
    assert (call.status, call.host, call.method, call.outcome) == (
        400, "<invalid>", "<other>", "bad_request")


async def test_cheap_rejections_are_reported_at_a_bounded_rate(base: Path) -> None:
    limits = ProxyLimits(reject_reports_per_s=0.001)  # one report, then counting
    async with open_proxy(limits=limits) as (proxy, sink):
        path = await proxy.serve_session(make_route(base, ProviderEndpoint.mock()))
        async with client(path, "evil.example.com") as bad:
            for _ in range(6):
                assert (await bad.post("/v1/messages", json=hello())).status_code == 403
        async with client(path, MOCK_MODEL_HOST) as good:
            assert (await good.post("/v1/messages", json=hello())).status_code == 200
    reported = calls(sink)
    assert [(c.status, c.suppressed) for c in reported] == [(403, 0), (200, 5)]


async def test_the_mailbox_is_the_interface(base: Path) -> None:
    async with open_proxy() as (proxy, _):
        route = make_route(base, ProviderEndpoint.mock())
        msg = ServeProxySession(route)
        await proxy.mailbox.send(msg)
        assert await msg.reply.wait() == route.socket_path
        assert route.socket_path.exists()
        stop = StopProxySession(route.session_id)
        await proxy.mailbox.send(stop)
        await stop.reply.wait()
        assert not route.socket_path.exists()


async def test_pending_requests_are_answered_when_the_proxy_stops(base: Path) -> None:
    proxy = ModelProxy()
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.run)
        route = make_route(base, ProviderEndpoint.mock())
        await proxy.serve_session(route)
        nursery.cancel_scope.cancel()
        stop = StopProxySession(route.session_id)
        serve = ServeProxySession(make_route(base, ProviderEndpoint.mock()))
        proxy.mailbox.send_nowait(stop)
        proxy.mailbox.send_nowait(serve)
    with trio.fail_after(5):
        await stop.reply.wait()
        with pytest.raises(RuntimeError):
            await serve.reply.wait()
    assert not route.socket_path.exists()


async def test_a_failing_listener_ends_only_its_session(
        base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    doomed = make_route(base, ProviderEndpoint.mock())
    real_accept = trio.SocketListener.accept

    async def accept(self: trio.SocketListener) -> trio.SocketStream:
        if self.socket.getsockname() == str(doomed.socket_path):
            raise OSError(9, "simulated listener failure")
        return await real_accept(self)

    monkeypatch.setattr(trio.SocketListener, "accept", accept)
    async with open_proxy() as (proxy, sink):
        healthy = await proxy.serve_session(make_route(base, ProviderEndpoint.mock()))
        await proxy.serve_session(doomed)
        await trio.testing.wait_all_tasks_blocked()
        assert doomed.session_id not in proxy.sessions
        assert not doomed.socket_path.exists()
        [failed] = sink.of("modelproxy.session_failed")
        assert (failed.session_id, failed.error) == (doomed.session_id, "OSError")
        async with client(healthy, MOCK_MODEL_HOST) as c:
            assert (await c.get("/v1/models")).status_code == 200


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError):
        ProxyLimits(rate=0)
    with pytest.raises(ValueError):
        ProxyLimits(max_request_bytes=-1)


async def test_sandbox_hanging_up_mid_stream_is_recorded_and_harmless(
        base: Path, upstream: FakeUpstream) -> None:
    upstream.script.chunk_size = 16
    upstream.script.chunk_pause = 0.01
    async with open_proxy() as (proxy, sink):
        path = await proxy.serve_session(make_route(base, anthropic(upstream)))
        stream = await trio.open_unix_socket(str(path))
        body = json.dumps(hello(stream=True)).encode()
        async with stream:
            await stream.send_all(
                f"POST /v1/messages HTTP/1.1\r\nHost: {ANTHROPIC}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            assert (await stream.receive_some(65536)).startswith(b"HTTP/1.1 200 ")
        with trio.fail_after(10):
            [call] = await sink.wait_for("model.call")
        assert call.outcome == "client_gone"
        async with client(path) as c:
            assert (await c.post("/v1/messages", json=hello())).status_code == 200


async def test_stop_mid_stream_truncates_the_response(base: Path,
                                                     upstream: FakeUpstream) -> None:
    upstream.script.chunk_size = 16
    upstream.script.chunk_pause = 0.05
    async with open_proxy() as (proxy, sink):
        route = make_route(base, anthropic(upstream))
        path = await proxy.serve_session(route)
        got: list[bytes] = []
        async with client(path) as c, c.stream("POST", "/v1/messages",
                                               json=hello(stream=True)) as response:
            with pytest.raises(httpx.RemoteProtocolError):
                async for piece in response.aiter_raw():
                    got.append(piece)
                    if len(got) == 1:
                        await proxy.stop_session(route.session_id)
        assert not path.exists()
    assert b"message_stop" not in b"".join(got)
    [call] = calls(sink)
    assert (call.status, call.outcome) == (200, "cancelled")
