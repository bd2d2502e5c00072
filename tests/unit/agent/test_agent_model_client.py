"""Retries, Retry-After, backoff and the circuit breaker, on a virtual clock.

httpx's MockTransport stands in for the socket so that no real I/O happens and the
autojump clock can skip the waits; what is asserted is how long the agent waited.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import httpx
import pytest
import trio
import trio.testing

from sandbox_agent.providers import (
    BreakerOpen,
    CircuitBreaker,
    HostUnreachable,
    ModelClient,
    ProviderRejected,
    ProviderUnavailable,
    RetryPolicy,
    open_model_client,
)
from sandbox_agent.providers.resilience import BreakerState, parse_retry_after

Reply = Callable[[httpx.Request], httpx.Response]


class Script:
    """Answers requests from a list, and remembers when each came."""

    def __init__(self, answers: list[Reply | Exception]) -> None:
        self._answers: Iterator[Reply | Exception] = iter(answers)
        self.times: list[float] = []
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.times.append(trio.current_time())
        self.requests.append(request)
        answer = next(self._answers)
        if isinstance(answer, Exception):
            raise answer
        return answer(request)


def status(code: int, **headers: str) -> Reply:
    return lambda _request: httpx.Response(code, headers=headers, json={"error": code})


def ok(_request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"ok": True})


def state_of(breaker: CircuitBreaker) -> BreakerState:
    # A call, so the type checker does not carry an earlier narrowing across awaits.
    return breaker.state


def client_for(script: Script, *, retries: int = 4, breaker_failures: int = 100,
               cooldown_s: float = 30.0) -> AbstractAsyncContextManager[ModelClient]:
    return open_model_client(
        socket_path=Path("/nonexistent"), upstream_host="api.example.test",
        policy=RetryPolicy(retries=retries, base_delay_s=1.0, max_delay_s=8.0),
        breaker=CircuitBreaker(failures_to_open=breaker_failures, cooldown_s=cooldown_s),
        transport=httpx.MockTransport(script), rng=random.Random(7))


async def test_retry_after_is_honoured(autojump_clock: trio.testing.MockClock) -> None:
    script = Script([status(429, **{"retry-after": "7"}), ok])
    async with client_for(script) as client:
        assert await client.post_json("/v1/messages", {}) == {"ok": True}
    assert script.times[1] - script.times[0] == pytest.approx(7.0)


async def test_retry_after_is_capped(autojump_clock: trio.testing.MockClock) -> None:
    script = Script([status(429, **{"retry-after": "86400"}), ok])
    async with client_for(script) as client:
        await client.post_json("/v1/messages", {})
    assert script.times[1] - script.times[0] == pytest.approx(60.0)


async def test_backoff_grows_exponentially_with_jitter(
        autojump_clock: trio.testing.MockClock) -> None:
    script = Script([status(500), status(502), status(503), status(504), ok])
    async with client_for(script) as client:
        await client.post_json("/v1/messages", {})
    gaps = [b - a for a, b in zip(script.times, script.times[1:], strict=False)]
    for attempt, gap in enumerate(gaps):
        step = min(8.0, 2.0 ** attempt)
        assert step / 2 <= gap <= step, (attempt, gap)
    assert gaps[3] > gaps[0]


async def test_transport_errors_are_retried(autojump_clock: trio.testing.MockClock) -> None:
    script = Script([httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), ok])
    async with client_for(script) as client:
        assert await client.post_json("/v1/messages", {}) == {"ok": True}
    assert len(script.times) == 3


@pytest.mark.parametrize("broken", [
    httpx.ConnectError("refused"), httpx.ReadError("reset by peer"),
    httpx.RemoteProtocolError("server disconnected without sending a response")],
    ids=["refused", "reset", "closed"])
async def test_a_model_socket_that_breaks_means_the_host_is_away(
        broken: Exception, autojump_clock: trio.testing.MockClock) -> None:
    """A control plane killed mid-call breaks the socket under the request, then nobody
    listens: the host is away, not the model, so no apology may be written (the turn
    stays for the next plane's agent) and the breaker learns nothing of the model."""
    script = Script([httpx.ReadError("reset by peer"), broken, broken])
    async with client_for(script, retries=2, breaker_failures=1) as client:
        with pytest.raises(HostUnreachable):
            await client.post_json("/v1/messages", {})
        assert client.breaker.consecutive_failures == 0


async def test_a_slow_proxy_is_the_model_failing_not_the_host(
        autojump_clock: trio.testing.MockClock) -> None:
    script = Script([httpx.ReadTimeout("slow")] * 2)
    async with client_for(script, retries=1) as client:
        with pytest.raises(ProviderUnavailable):
            await client.post_json("/v1/messages", {})


async def test_retries_run_out(autojump_clock: trio.testing.MockClock) -> None:
    script = Script([status(503)] * 3)
    async with client_for(script, retries=2) as client:
        with pytest.raises(ProviderUnavailable, match="3 attempts"):
            await client.post_json("/v1/messages", {})
    assert len(script.times) == 3


async def test_a_client_error_is_not_retried(autojump_clock: trio.testing.MockClock) -> None:
    script = Script([status(400)])
    async with client_for(script) as client:
        with pytest.raises(ProviderRejected) as caught:
            await client.post_json("/v1/messages", {})
    assert caught.value.status == 400
    assert client.breaker.consecutive_failures == 0  # the provider is up


async def test_requests_carry_no_credentials_and_the_upstream_host(
        autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch) -> None:
    # Proxy and netrc settings in the environment must not leak into the request.
    monkeypatch.setenv("HTTP_PROXY", "http://user:pw@proxy.invalid:3128")
    monkeypatch.setenv("ALL_PROXY", "http://user:pw@proxy.invalid:3128")
    script = Script([ok])
    async with client_for(script) as client:
        await client.post_json("/v1/messages", {"a": 1}, headers={"anthropic-version": "x"})
    (request,) = script.requests
    assert request.url == httpx.URL("http://api.example.test/v1/messages")
    assert request.headers["host"] == "api.example.test"
    assert not {"authorization", "x-api-key", "proxy-authorization"} & {
        k.lower() for k in request.headers}


async def test_breaker_opens_fails_fast_then_half_opens(
        autojump_clock: trio.testing.MockClock) -> None:
    script = Script([status(500), status(500), status(500), ok, ok])
    async with client_for(script, retries=5, breaker_failures=2, cooldown_s=30) as client:
        with pytest.raises(BreakerOpen):
            await client.post_json("/v1/messages", {})
        assert len(script.times) == 2 and client.breaker.state is BreakerState.OPEN
        opened = trio.current_time()

        with pytest.raises(BreakerOpen):  # no request while open
            await client.post_json("/v1/messages", {})
        assert len(script.times) == 2

        await trio.sleep_until(opened + 30)
        # Half-open: one trial; it fails, so the breaker reopens at once.
        with pytest.raises(BreakerOpen):
            await client.post_json("/v1/messages", {})
        assert len(script.times) == 3 and client.breaker.state is BreakerState.OPEN

        await trio.sleep(30)
        assert await client.post_json("/v1/messages", {}) == {"ok": True}
        assert state_of(client.breaker) is BreakerState.CLOSED
        assert client.breaker.consecutive_failures == 0


def test_retry_after_forms() -> None:
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT",
                             now=lambda: 1445412480.0) == pytest.approx(10.0)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=lambda: 1445412490.0) == 0.0
