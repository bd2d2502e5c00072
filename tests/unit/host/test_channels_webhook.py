"""The webhook adapter's parts: the signing scheme (against a vector computed with
openssl), settings, the inbound endpoint's edge cases over real HTTP on loopback (a
router that is behind, hostile bodies that must never cause a 500), and how
outbound answers map to delivery outcomes. End to end: ``tests/channels/test_webhook.py``.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ironclaw.host.channels.adapters import AdapterContext, check_settings
from ironclaw.host.channels.base import (
    DeliveryFailed,
    InboundEvent,
    InboundRefused,
    OutboundDelivery,
)
from ironclaw.host.channels.ledger import MemoryDeliveryLedger
from ironclaw.host.channels.platforms.webhook import WebhookAdapter
from ironclaw.host.channels.platforms.webhook.adapter import WebhookListenFailed
from ironclaw.host.channels.platforms.webhook.config import WebhookConfig
from ironclaw.host.channels.platforms.webhook.signing import sign, signature, verify
from ironclaw.host.channels.settings import ChannelSettings, InvalidChannelSettings
from ironclaw.host.channels.state import ChannelState
from ironclaw.host.store import open_host_store
from tests.fakes.ngircd import free_port
from tests.fakes.webhook_receiver import open_webhook_receiver, signed_headers

SECRET = "whsec-test-0123456789abcdef"
# printf '%s.%s' 1700000000 "$BODY" | openssl dgst -sha256 -hmac "$SECRET" -hex
VECTOR_BODY = b'{"id":"evt-1","chat":"ops","sender":"alice","text":"hello"}'
VECTOR_HEX = "a75c2d65f210859c0d66b89ab35ee29d72e5d5fb58147a081df048bcf5aebb21"
URL_TOKEN = "tok" + secrets.token_hex(8)


# -- signing -----------------------------------------------------------------------------


def test_signature_matches_openssl() -> None:
    assert signature(SECRET.encode(), "1700000000", VECTOR_BODY) == VECTOR_HEX
    headers = sign(SECRET.encode(), VECTOR_BODY, 1700000000.9)
    assert headers == {"X-IronClaw-Timestamp": "1700000000",
                       "X-IronClaw-Signature": f"v1={VECTOR_HEX}"}


@pytest.mark.parametrize(("timestamp", "offered", "now", "ok"), [
    ("1700000000", f"v1={VECTOR_HEX}", 1700000000, True),
    ("1700000000", f"v1={VECTOR_HEX.upper()}", 1700000299, True),
    ("1700000000", f"v1=00, v1={VECTOR_HEX}", 1699999701, True),  # rotation: any of them
    ("1700000000", f"v1={VECTOR_HEX}", 1700000301, False),  # stale
    ("1700000000", f"v1={VECTOR_HEX}", 1699999699, False),  # from the future
    ("1700000001", f"v1={VECTOR_HEX}", 1700000000, False),  # timestamp is signed too
    ("1700000000", VECTOR_HEX, 1700000000, False),  # no version
    ("1700000000", f"v2={VECTOR_HEX}", 1700000000, False),
    ("1700000000", "v1=é" + VECTOR_HEX[2:], 1700000000, False),
    ("17e8", f"v1={VECTOR_HEX}", 1700000000, False),
    ("", f"v1={VECTOR_HEX}", 1700000000, False),
    ("1700000000", None, 1700000000, False),
])
def test_verify(timestamp: str, offered: str | None, now: float, ok: bool) -> None:
    problem = verify(SECRET.encode(), timestamp, offered, VECTOR_BODY, now=now,
                     tolerance=300)
    assert (problem is None) is ok
    assert problem is None or VECTOR_HEX not in problem


# -- settings ----------------------------------------------------------------------------


def _settings(environ: dict[str, str] | None = None, **options: object) -> ChannelSettings:
    return ChannelSettings("webhook", "", {"url": "https://example.net/in", **options},
                           environ={"IRONCLAW_WEBHOOK_SECRET": SECRET} if environ is None
                           else environ)


def test_config() -> None:
    config = WebhookConfig.from_settings(_settings())
    assert config.listen == "127.0.0.1:8790" and config.max_text_chars == 8000
    assert config.outbound_secret.reveal() == SECRET and SECRET not in repr(config)
    both = WebhookConfig.from_settings(_settings({
        "IRONCLAW_WEBHOOK_SECRET": SECRET, "IRONCLAW_WEBHOOK_OUTBOUND_SECRET": "o" * 20}))
    assert both.outbound_secret.reveal() == "o" * 20
    for bad in ({"url": "ftp://x"}, {"listen": "localhost:80"}, {"listen": "1.2.3.4"},
                {"max_text_chars": 3}, {"accept_timeout": 0}):
        with pytest.raises(InvalidChannelSettings):
            WebhookConfig.from_settings(_settings(**bad))
    with pytest.raises(InvalidChannelSettings, match="at least 16"):
        WebhookConfig.from_settings(_settings({"IRONCLAW_WEBHOOK_SECRET": "short"}))
    with pytest.raises(InvalidChannelSettings, match="IRONCLAW_WEBHOOK_SECRET"):
        WebhookConfig.from_settings(_settings({}))


def test_check_settings() -> None:
    assert check_settings(_settings()) == []
    assert any("clear text" in p for p in check_settings(_settings(url="http://example.net")))
    assert check_settings(_settings(url="http://127.0.0.1:9/x")) == []
    assert any("beyond this machine" in p for p in check_settings(_settings(listen="0.0.0.0:1")))
    assert any("no url" in p for p in check_settings(_settings(url="")))
    assert any("secret" in p for p in check_settings(_settings({})))


# -- the endpoint, served for real on loopback ------------------------------------------------


class Endpoint:
    def __init__(self, adapter: WebhookAdapter, client: httpx.AsyncClient) -> None:
        self.adapter = adapter
        self.client = client
        self.url = adapter.bound[0] + "/hooks/default"
        self.routed: list[InboundEvent] = []
        self.held: list[InboundEvent] = []  # given to the router, not yet committed
        self.hold = False
        self.refuse = False  # answer as the router does for a full inbound queue

    async def route(self, receive: trio.MemoryReceiveChannel[InboundEvent]) -> None:
        async for event in receive:
            self.routed.append(event)
            if self.hold:
                self.held.append(event)
            else:
                self._answer(event)

    def _answer(self, event: InboundEvent) -> None:
        assert event.accepted is not None
        if self.refuse:
            event.accepted.fail(InboundRefused("the session's inbound queue is full"))
        else:
            event.accepted.ok(None)

    def release(self) -> None:
        self.hold = False
        for event in self.held:
            self._answer(event)
        self.held.clear()

    async def post(self, body: bytes, headers: dict[str, str] | None = None
                   ) -> httpx.Response:
        return await self.client.post(self.url, content=body,
                                      headers=headers or signed_headers(SECRET.encode(), body))


@contextlib.asynccontextmanager
async def open_endpoint(tmp_path: Path, http: httpx.AsyncClient | None = None,
                        **options: object) -> AsyncIterator[Endpoint]:
    settings_ = _settings(**{"listen": "127.0.0.1:0", **options})
    async with open_host_store(tmp_path / "host.db", secrets.token_bytes(32)) as store, \
            httpx.AsyncClient(timeout=10) as client, trio.open_nursery() as nursery:
        context = AdapterContext(state=ChannelState(store, "webhook", ""),
                                 ledger=MemoryDeliveryLedger(), http=http or client)
        adapter = WebhookAdapter(WebhookConfig.from_settings(settings_), context)
        send, receive = trio.open_memory_channel[InboundEvent](0)
        await nursery.start(adapter.serve, send)
        endpoint = Endpoint(adapter, client)
        nursery.start_soon(endpoint.route, receive)
        yield endpoint
        nursery.cancel_scope.cancel()


def _event(event_id: str = "e-1", **extra: Any) -> bytes:
    return json.dumps({"id": event_id, "chat": "c", "sender": "s", "text": "hi", **extra}
                      ).encode()


async def test_a_router_that_is_behind_gets_503_and_the_retry_is_a_duplicate(
        tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with open_endpoint(tmp_path, accept_timeout=0.3) as endpoint:
            endpoint.hold = True
            first = await endpoint.post(_event("slow-1"))
            assert first.status_code == 503 and first.headers["Retry-After"] == "5"
            # Retried while the first hand-over is still waiting: joins it, no new event.
            second = await endpoint.post(_event("slow-1"))
            assert second.status_code == 503
            assert len(endpoint.routed) == 1
            endpoint.release()
            third = await endpoint.post(_event("slow-1"))
            assert third.json() == {"accepted": True, "duplicate": True}
            assert len(endpoint.routed) == 1


async def test_an_event_refused_for_a_full_inbound_gets_503_and_is_routed_again(
        tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with open_endpoint(tmp_path) as endpoint:
            endpoint.refuse = True
            refused = await endpoint.post(_event("full-1"))
            assert refused.status_code == 503 and refused.headers["Retry-After"] == "5"
            assert "inbound queue is full" in refused.json()["detail"]
            # Nothing was committed, so the retry is no duplicate: it is routed afresh.
            endpoint.refuse = False
            retried = await endpoint.post(_event("full-1"))
            assert retried.json() == {"accepted": True, "duplicate": False}
            assert len(endpoint.routed) == 2


async def test_a_chunked_body_over_the_cap_is_413(tmp_path: Path) -> None:
    async with open_endpoint(tmp_path, max_body_bytes=1024) as endpoint:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(8):
                yield b"x" * 512

        answer = await endpoint.client.post(endpoint.url, content=chunks(),
                                            headers=signed_headers(SECRET.encode(), b""))
        assert answer.status_code == 413 and answer.json()["error"] == "too_large"
        assert not endpoint.routed


async def test_the_address_in_use_is_a_clear_failure(tmp_path: Path) -> None:
    async with open_endpoint(tmp_path) as endpoint:
        taken = endpoint.adapter.bound[0].removeprefix("http://")
        context = AdapterContext(state=endpoint.adapter._state, ledger=MemoryDeliveryLedger(),
                                 http=endpoint.client)
        second = WebhookAdapter(WebhookConfig.from_settings(_settings(listen=taken)), context)
        send, _ = trio.open_memory_channel[InboundEvent](0)
        with pytest.raises(WebhookListenFailed, match="cannot listen on"):
            await second.serve(send)


# Surrogates included: "\ud800" is legal JSON and decodes to an unencodable str.
_any_text = st.text(st.characters(exclude_categories=()))
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _any_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_any_text, inner, max_size=3),
    max_leaves=8)
_objects = st.fixed_dictionaries({}, optional={
    "id": _json_values, "chat": _json_values, "sender": _json_values, "text": _json_values,
    "thread": _json_values, "mentioned": _json_values, "direct": _json_values,
    "sender_name": _json_values})
_valid = {"id": st.text(min_size=1, max_size=20), "chat": st.text(min_size=1, max_size=20),
          "sender": st.text(min_size=1, max_size=20), "text": st.text(max_size=40)}
# Well formed but for one field, or not at all: every path to 200 gets hostile strings.
_near_valid = st.tuples(st.fixed_dictionaries(_valid), st.sampled_from([*_valid, "thread"]),
                        _json_values).map(lambda t: {**t[0], t[1]: t[2]})
_bodies = st.one_of(st.binary(max_size=600), _objects.map(lambda o: json.dumps(o).encode()),
                    st.fixed_dictionaries(_valid).map(lambda o: json.dumps(o).encode()),
                    _near_valid.map(lambda o: json.dumps(o).encode()),
                    _json_values.map(lambda v: json.dumps(v).encode()),
                    st.integers(1, 60).map(lambda n: b"[" * n + b"]" * n))
_headers = st.one_of(st.none(), st.fixed_dictionaries({
    # Visible ASCII: what an HTTP client can put in a header at all.
    "X-IronClaw-Timestamp": st.one_of(
        st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=20),
        st.integers(0, 2**40).map(str)),
    "X-IronClaw-Signature": st.one_of(
        st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=80),
        st.text(alphabet="0123456789abcdef", min_size=64, max_size=64).map(
            lambda hex_: "v1=" + hex_))}))

_examples = iter(range(10**6))


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(requests=st.lists(st.tuples(_bodies, _headers), min_size=1, max_size=12))
async def test_hostile_requests_never_cause_a_500(
        tmp_path: Path, requests: list[tuple[bytes, dict[str, str] | None]]) -> None:
    where = tmp_path / f"example-{next(_examples)}"
    where.mkdir()
    async with open_endpoint(where, max_body_bytes=512) as endpoint:
        for body, headers in requests:
            answer = await endpoint.post(body, headers)  # None: correctly signed
            assert answer.status_code in (200, 400, 401, 413), (body, headers)
            assert set(answer.json()) in ({"accepted", "duplicate"}, {"error", "detail"})
            if headers is not None:
                assert answer.status_code in (401, 413)


# -- outbound -----------------------------------------------------------------------------


async def test_outbound_answers_map_to_delivery_outcomes(tmp_path: Path) -> None:
    async with open_webhook_receiver(SECRET.encode(), URL_TOKEN) as receiver, \
            open_endpoint(tmp_path, url=receiver.url, max_text_chars=20) as endpoint:
        adapter = endpoint.adapter

        def delivery(outbound_id: str, text: str = "hello") -> OutboundDelivery:
            return OutboundDelivery(outbound_id, "webhook", "", "c", "t", text)

        receipt = await adapter.deliver(delivery("o-1"))
        assert receipt.platform_message_id == "m-1"
        assert receiver.received[0].body == {"id": "o-1", "chat": "c", "thread": "t",
                                             "in_reply_to": None, "text": "hello"}
        assert (await adapter.deliver(delivery("o-1"))).duplicate
        receiver.fail_next(503, retry_after="7")
        with pytest.raises(DeliveryFailed) as failed:
            await adapter.deliver(delivery("o-2"))
        assert failed.value.retryable and failed.value.retry_after == 7
        receiver.fail_next(403)
        with pytest.raises(DeliveryFailed) as failed:
            await adapter.deliver(delivery("o-3"))
        assert not failed.value.retryable and receiver.url not in str(failed.value)
        # Split at max_text_chars; a retry after a failed second part sends only it.
        receiver.fail_next(200)
        receiver.fail_next(500)
        with pytest.raises(DeliveryFailed):
            await adapter.deliver(delivery("o-4", "aaaa bbbb cccc dddd eeee ffff"))
        receipt = await adapter.deliver(delivery("o-4", "aaaa bbbb cccc dddd eeee ffff"))
        sent = [a.body["id"] for a in receiver.attempts if a.body["id"].startswith("o-4")]
        assert sent == ["o-4#0", "o-4#1", "o-4#1"]
        receiver.stop()
        with pytest.raises(DeliveryFailed) as failed:
            await adapter.deliver(delivery("o-5"))
        # ConnectError, or ReadError on a pooled connection: never the URL.
        assert failed.value.retryable and str(failed.value).startswith("webhook: ")
        assert URL_TOKEN not in str(failed.value)


async def test_a_receiver_without_message_ids_gets_synthetic_ones(tmp_path: Path) -> None:
    port = free_port()

    async def handler(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)
        await stream.send_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_tcp, handler, port)
        async with open_endpoint(tmp_path, url=f"http://127.0.0.1:{port}/x") as endpoint:
            receipt = await endpoint.adapter.deliver(
                OutboundDelivery("o-9", "webhook", "", "c", None, "hi"))
            assert receipt.platform_message_id == "webhook-o-9"
        nursery.cancel_scope.cancel()


def test_times_are_unix_seconds() -> None:
    assert abs(int(sign(b"k" * 16, b"", time.time())["X-IronClaw-Timestamp"]) - time.time()) < 5


async def test_lone_surrogates_in_fields_are_refused_or_carried(tmp_path: Path) -> None:
    async with open_endpoint(tmp_path) as endpoint:
        for field in ("id", "chat", "sender", "text", "thread", "sender_name"):
            body = _event(f"s-{field}", **{field: "a\ud800b"})
            answer = await endpoint.post(body)
            assert answer.status_code in (200, 400), (field, answer.status_code)
        # The endpoint still works afterwards.
        assert (await endpoint.post(_event("after"))).status_code == 200
