"""A hostile sandbox on the egress socket: malformed HTTP, malformed JSON, oversized
bodies, floods. Every one gets a 4xx (or is cut off), never a crash, and the broker
keeps serving."""

from __future__ import annotations

import json
from pathlib import Path

import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ironclaw.host.egress import EgressLimits
from tests.support.egress import UPSTREAM, open_world, scratch_dir


async def raw_exchange(path: Path, data: bytes) -> bytes:
    """Send raw bytes, half-close, read until the broker closes. A connection the
    broker drops unanswered (or mid-send) reads as what arrived before that."""
    reply = b""
    stream = await trio.open_unix_socket(str(path))
    async with stream:
        try:
            await stream.send_all(data)
            await stream.send_eof()
            while chunk := await stream.receive_some(65536):
                reply += chunk
        except trio.BrokenResourceError:
            pass
    return reply


def status_of(reply: bytes) -> int | None:
    if not reply.startswith(b"HTTP/1.1 "):
        return None
    return int(reply[9:12])


def request(path: str, body: bytes, method: str = "POST", extra: str = "") -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: egress\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n{extra}\r\n").encode() + body


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(payload=st.one_of(
    st.binary(max_size=2048),
    st.builds(lambda m, t, b: m + b" " + t + b" HTTP/1.1\r\nHost: x\r\n\r\n" + b,
              st.sampled_from([b"POST", b"GET", b"PUT", b"CONNECT", b"P\x00ST"]),
              st.sampled_from([b"/v1/fetch", b"/v1/search", b"*", b"/%00", b"/../.."]),
              st.binary(max_size=256)),
    st.builds(lambda body: request("/v1/fetch", body),
              st.one_of(st.binary(max_size=512),
                        st.dictionaries(st.sampled_from(["url", "method", "headers", "body",
                                                         "zzz"]),
                                        st.one_of(st.none(), st.integers(), st.text(max_size=64),
                                                  st.lists(st.integers(), max_size=3)),
                                        max_size=4).map(lambda d: json.dumps(d).encode())))))
async def test_hostile_bytes_never_crash_the_broker(payload: bytes) -> None:
    with trio.fail_after(30):
        with scratch_dir() as base:
            await _exchange_hostile(base, payload)


async def _exchange_hostile(base: Path, payload: bytes) -> None:
    async with open_world(base, UPSTREAM) as world:
        reply = await raw_exchange(world.route.socket_path, payload)
        status = status_of(reply)
        assert status is None or 400 <= status < 500, reply[:200]
        good = request("/v1/fetch", json.dumps({"url": world.url("/echo")}).encode())
        assert status_of(await raw_exchange(world.route.socket_path, good)) == 200
        assert all(e.status == 200 or 400 <= e.status < 500 for e in world.events())


async def test_malformed_requests_are_400_and_the_connection_survives(base: Path) -> None:
    async with open_world(base, UPSTREAM) as world, world.client() as client:
        for body, detail in [(b"not json", "JSON"), (b"[1]", "object"),
                             (b'{"url": 1}', "string"), (b'{"url": "x", "zzz": 1}', "unknown"),
                             (b'{"url": "https://a.example.com/", "method": "DELETE"}', "method"),
                             (b'{"url": "https://a.example.com/", "body": "x"}', "POST"),
                             (b'{"url": "https://a.example.com/", "headers": {"a\\nb": "1"}}',
                              "token"),
                             (b'{"url": "https://a.example.com/", "headers": {"a": "1\\r\\n"}}',
                              "control"),
                             (b'{"url": "https://a.example.com/", "headers": {"A": "1", "a": "2"}}',
                              "twice"),
                             (b'{"url": "u", "url": "v"}', "JSON")]:
            response = await client.post("/v1/fetch", content=body)
            assert response.status_code == 400, (body, response.text)
            assert response.json()["error"] == "bad_request"
            assert detail in response.json()["detail"], (body, response.text)
        for body in [b'{"query": ""}', b'{"query": "x", "max_results": 0}',
                     b'{"query": "x", "max_results": true}', b'{"q": "x"}']:
            assert (await client.post("/v1/search", content=body)).status_code == 400
        assert (await client.get("/v1/fetch")).status_code == 405
        assert (await client.get("/v1/fetch")).headers["allow"] == "POST"
        assert (await client.post("/v1/other", content=b"{}")).status_code == 404
        ok = await client.post("/v1/fetch", json={"url": world.url("/echo")})
        assert ok.status_code == 200
        assert world.upstream.requests and len(world.upstream.requests) == 1


async def test_the_documented_red_team_request_is_refused(base: Path) -> None:
    """docs/egress.md, "For a red team", byte for byte."""
    body = b'{"url": "https://not-approved.example.net/"}'
    raw = (b"POST /v1/fetch HTTP/1.1\r\nHost: egress.ironclaw.invalid\r\n"
           b"Content-Type: application/json\r\nContent-Length: 44\r\n\r\n" + body)
    assert len(body) == 44
    async with open_world(base, UPSTREAM) as world:
        reply = await raw_exchange(world.route.socket_path, raw)
        assert status_of(reply) == 403
        answer = json.loads(reply.partition(b"\r\n\r\n")[2])
        assert answer == {"error": "host_not_allowed",
                          "detail": "host 'not-approved.example.net' is not on this agent "
                                    "group's egress allowlist; a human must approve an "
                                    "'egress' change naming it first"}
        (event,) = world.events()
        assert (event.outcome, event.upstream) == ("host_not_allowed", False)


async def test_oversized_bodies_are_413(base: Path) -> None:
    limits = EgressLimits(rate=1000.0, burst=1000, max_request_bytes=4096, max_body_bytes=100)
    async with open_world(base, UPSTREAM, limits=limits) as world:
        big = await world.fetch(world.url("/echo"), method="POST", body="x" * 101)
        assert big.status_code == 413 and big.json()["error"] == "too_large"
        declared = request("/v1/fetch", b"{}", extra="").replace(
            b"Content-Length: 2", b"Content-Length: 999999")
        assert status_of(await raw_exchange(world.route.socket_path, declared)) == 413
        streamed = await world.post("/v1/fetch", {"url": world.url("/echo"), "pad": "x" * 5000})
        assert streamed.status_code == 413
        assert world.upstream.requests == []


async def test_connection_flood_is_capped_per_session(base: Path) -> None:
    limits = EgressLimits(rate=1000.0, burst=1000, max_connections_per_session=3)
    async with open_world(base, UPSTREAM, limits=limits) as world:
        path = world.route.socket_path
        streams = [await trio.open_unix_socket(str(path)) for _ in range(3)]
        await trio.testing.wait_all_tasks_blocked()
        good = request("/v1/fetch", json.dumps({"url": world.url("/echo")}).encode())
        # Over the cap: not accepted (the kernel's backlog holds it, at no cost to the
        # host) until one of the three ends; then it is served.
        replies: list[bytes] = []
        async with trio.open_nursery() as nursery:
            async def queued() -> None:
                replies.append(await raw_exchange(path, good))

            nursery.start_soon(queued)
            await trio.testing.wait_all_tasks_blocked()
            assert replies == []
            for stream in streams:
                await stream.aclose()
        assert [status_of(reply) for reply in replies] == [200]
