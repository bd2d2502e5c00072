"""Retries as the official SDKs do them, and error bodies parsed into their kinds."""

from __future__ import annotations

import httpx
import pytest
import trio
import trio.testing
from test_agent_model_client import Script, client_for, ok, status

from sandbox_agent.providers import FailureKind, ProviderRejected
from sandbox_agent.providers.resilience import parse_failure, parse_retry_after, should_retry


@pytest.mark.parametrize("code", [408, 409, 429, 500, 529])
async def test_the_sdk_retryable_statuses_are_retried(
        autojump_clock: trio.testing.MockClock, code: int) -> None:
    script = Script([status(code), ok])
    async with client_for(script) as client:
        assert await client.post_json("/v1/messages", {}) == {"ok": True}
    assert len(script.times) == 2


async def test_x_should_retry_overrides_the_status(
        autojump_clock: trio.testing.MockClock) -> None:
    script = Script([status(400, **{"x-should-retry": "true"}), ok])
    async with client_for(script) as client:
        assert await client.post_json("/v1/messages", {}) == {"ok": True}
    script = Script([status(503, **{"x-should-retry": "false"})])
    async with client_for(script) as client:
        with pytest.raises(ProviderRejected) as caught:
            await client.post_json("/v1/messages", {})
    assert caught.value.status == 503 and len(script.times) == 1


@pytest.mark.parametrize(("headers", "waited"), [
    ({"retry-after-ms": "1500"}, 1.5),
    ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
    ({"retry-after": "2.5"}, 2.5),
])
async def test_server_delays_in_every_form_are_honoured(
        autojump_clock: trio.testing.MockClock, headers: dict[str, str],
        waited: float) -> None:
    script = Script([status(429, **headers), ok])
    async with client_for(script) as client:
        await client.post_json("/v1/messages", {})
    assert script.times[1] - script.times[0] == pytest.approx(waited)


def test_fractional_and_bad_retry_after_values() -> None:
    assert parse_retry_after("0.75") == 0.75
    assert parse_retry_after("-3") is None and parse_retry_after("nan") is None
    assert should_retry(409, {}) and not should_retry(404, {})


@pytest.mark.parametrize(("status_code", "body", "kind", "message"), [
    (529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
     FailureKind.OVERLOADED, "Overloaded"),
    (401, {"type": "error", "error": {"type": "authentication_error",
                                      "message": "invalid x-api-key"}},
     FailureKind.AUTH, "invalid x-api-key"),
    (429, {"error": {"message": "You exceeded your current quota", "type":
                     "insufficient_quota", "param": None, "code": "insufficient_quota"}},
     FailureKind.QUOTA, "You exceeded your current quota"),
    (400, {"error": {"message": "bad", "type": "invalid_request_error", "code": None}},
     FailureKind.INVALID_REQUEST, "bad"),
    (413, {"error": "too_large", "detail": "the request body exceeds the cap"},
     FailureKind.TOO_LARGE, "the request body exceeds the cap"),
    (502, "<html>bad gateway</html>", FailureKind.SERVER, ""),
    (418, None, FailureKind.UNKNOWN, ""),
])
def test_error_bodies_parse_into_kinds(status_code: int, body: object, kind: FailureKind,
                                       message: str) -> None:
    failure = parse_failure(status_code, body)
    assert (failure.status, failure.kind, failure.message) == (status_code, kind, message)


async def test_a_refused_request_carries_its_parsed_failure(
        autojump_clock: trio.testing.MockClock) -> None:
    body = {"type": "error", "error": {"type": "permission_error", "message": "no"}}
    script = Script([lambda _r: httpx.Response(403, json=body)])
    async with client_for(script) as client:
        with pytest.raises(ProviderRejected) as caught:
            await client.post_json("/v1/messages", {})
    assert caught.value.failure.kind is FailureKind.PERMISSION
