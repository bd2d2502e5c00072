"""The chaos suite's operator on the other end of the webhook channel.

:class:`Sender` posts signed events (HMAC-SHA256 over ``<timestamp>.<body>``, the
documented scheme, implemented here independently of the adapter) and retries each one,
with the same ``id``, until the control plane answers 200: that answer is the promise
the plane must keep. :class:`Receiver` is a real HTTP server on loopback (hypercorn and
quart-trio) that takes the plane's replies, checks their signatures, and counts them
by ``Idempotency-Key``, the way a careful receiver drops a retried delivery. A reply is
matched to its event by its text (the demo agent answers ``echo: <text>``).

The receiver can be armed to call a function on the next reply *before* answering it:
the harness kills the control plane there, mid-delivery, so the plane never learns the
reply arrived.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import httpx
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import request
from quart_trio import QuartTrio


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    return "v1=" + hmac.new(secret, timestamp.encode() + b"." + body,
                            hashlib.sha256).hexdigest()


@attrs.define
class Reply:
    key: str  # Idempotency-Key
    chat: str
    text: str
    first_at: float  # monotonic, when this key first arrived
    attempts: int = 1


class Receiver:
    """Replies by idempotency key, plus anything that was not a well-signed reply."""

    def __init__(self, secret: bytes, token: str) -> None:
        self.secret = secret
        self.token = token
        self.port = 0
        self.replies: dict[str, Reply] = {}
        self.refused = 0
        self.arrived = trio.lowlevel.ParkingLot()
        self._on_next: Callable[[], None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/inbox/{self.token}"

    def arm(self, action: Callable[[], None]) -> None:
        """Call ``action`` on the next reply, before it is answered."""
        self._on_next = action

    def disarm(self) -> None:
        self._on_next = None

    def accept(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        timestamp = headers.get("x-ironclaw-timestamp", "")
        given = headers.get("x-ironclaw-signature", "")
        key = headers.get("idempotency-key", "")
        fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) < 300
        if not (fresh and key and hmac.compare_digest(
                given, signature(self.secret, timestamp, body))):
            self.refused += 1
            return 401, {"error": "bad signature"}
        payload = json.loads(body)
        known = self.replies.get(key)
        if known is None:
            self.replies[key] = Reply(key, payload["chat"], payload["text"],
                                      time.monotonic())
        else:
            known.attempts += 1
        action, self._on_next = self._on_next, None
        if action is not None:
            action()
        self.arrived.unpark_all()
        return 200, {"message_id": f"rx-{key}"}

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        app = QuartTrio(__name__)

        @app.post("/inbox/<token>")
        async def inbox(token: str) -> tuple[dict[str, Any], int]:
            if not hmac.compare_digest(token, self.token):
                return {"error": "not found"}, 404
            body = await request.get_data(as_text=False)
            assert isinstance(body, bytes)
            headers = {k.lower(): v for k, v in request.headers.items()}
            status, answer = self.accept(headers, body)
            return answer, status

        config = Config()
        config.bind = ["127.0.0.1:0"]
        config.loglevel = "ERROR"
        config.accesslog = None
        async with trio.open_nursery() as nursery:
            urls: list[str] = await nursery.start(serve, app, config)
            self.port = int(urls[0].rsplit(":", 1)[1])
            task_status.started()


class OneShotBody(httpx.AsyncByteStream):
    """A request body iterated without an async generator. httpx's own stream for
    bytes is one, and a request cut off by the plane's death (the point of this suite)
    leaves it unfinished; its collection then warns, and the suite makes warnings
    errors."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def __aiter__(self) -> AsyncIterator[bytes]:
        return _Once(self._data)


class _Once:
    def __init__(self, data: bytes) -> None:
        self._data: bytes | None = data

    def __aiter__(self) -> _Once:
        return self

    async def __anext__(self) -> bytes:
        if self._data is None:
            raise StopAsyncIteration
        data, self._data = self._data, None
        return data


@attrs.define
class Event:
    chat: str
    id: str
    text: str
    sent_at: float = attrs.field(factory=time.monotonic)  # first posted
    accepted_at: float | None = None  # monotonic, when the plane first answered 200
    lost_answers: int = 0  # requests that got no answer (the plane died during them)
    routed_fresh: bool | None = None  # the 200 said "duplicate": false


class Sender:
    """Posts events to the plane's webhook endpoint, each until it is accepted."""

    def __init__(self, url: str, secret: bytes, client: httpx.AsyncClient) -> None:
        self.url = url
        self.secret = secret
        self.client = client
        self.events: dict[str, Event] = {}  # by id; every event ever sent
        self.refusals = 0  # answers other than 200 (503 while the router is behind, say)
        self.accepted = trio.lowlevel.ParkingLot()

    async def send(self, event: Event) -> None:
        """Retry until 200. Connection errors are expected: the plane is being killed."""
        self.events[event.id] = event
        body = json.dumps({"id": event.id, "chat": event.chat, "sender": "chaos",
                           "text": event.text}).encode()
        while True:
            timestamp = str(int(time.time()))
            headers = {"X-IronClaw-Timestamp": timestamp, "Content-Type": "application/json",
                       "X-IronClaw-Signature": signature(self.secret, timestamp, body)}
            try:
                request = self.client.build_request("POST", self.url, content=body,
                                                   headers=headers)
                request.stream = OneShotBody(body)
                answer = await self.client.send(request)
            except httpx.HTTPError as exc:
                if not isinstance(exc, httpx.ConnectError):  # it may have arrived
                    event.lost_answers += 1
                await trio.sleep(0.1)
                continue
            if answer.status_code == 200:
                event.accepted_at = time.monotonic()
                event.routed_fresh = answer.json().get("duplicate") is False
                self.accepted.unpark_all()
                return
            self.refusals += 1
            await trio.sleep(0.1)
