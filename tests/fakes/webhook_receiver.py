"""The system on the other end of the webhook channel: it receives our replies.

A hypercorn + quart-trio app on loopback, ``POST /inbox/<token>``, that checks our
signature with its own implementation of the documented scheme (HMAC-SHA256 over
``<timestamp>.<raw body>``, ``X-IronClaw-Signature: v1=<hex>``, timestamp within
300 s), honours ``Idempotency-Key`` the way a careful receiver does (the same key gets
the same ``message_id`` and is recorded once), and answers ``{"message_id": ...}``.

Tests can make it answer the next requests with an error (429 with ``Retry-After``,
500), stop it and start it again on the same port, and wait for what it received.
Also :func:`signed_headers`, the same scheme for the tests' own inbound requests.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Response, request
from quart_trio import QuartTrio

from tests.fakes.ngircd import free_port


def hmac_hex(secret: bytes, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret, digestmod=hashlib.sha256)
    mac.update(timestamp.encode())
    mac.update(b".")
    mac.update(body)
    return mac.hexdigest()


def signed_headers(secret: bytes, body: bytes, *, at: float | None = None) -> dict[str, str]:
    timestamp = str(int(time.time() if at is None else at))
    return {"X-IronClaw-Timestamp": timestamp,
            "X-IronClaw-Signature": "v1=" + hmac_hex(secret, timestamp, body),
            "Content-Type": "application/json"}


@attrs.frozen
class Post:
    body: dict[str, Any]
    idempotency_key: str
    status: int  # what we answered


class WebhookReceiver:
    def __init__(self, secret: bytes, token: str) -> None:
        self.secret = secret
        self.token = token
        self.port = free_port()
        self.attempts: list[Post] = []  # every request, with our answer
        self.received: list[Post] = []  # accepted, once per idempotency key
        self.refused_signatures = 0
        self._message_ids: dict[str, str] = {}
        self._failures: deque[tuple[int, dict[str, str]]] = deque()
        self._changed = trio.lowlevel.ParkingLot()
        self._nursery: trio.Nursery | None = None
        self._scope: trio.CancelScope | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/inbox/{self.token}"

    def fail_next(self, status: int, count: int = 1, retry_after: str | None = None) -> None:
        headers = {"Retry-After": retry_after} if retry_after else {}
        self._failures.extend([(status, headers)] * count)

    async def wait_for(self, predicate: Callable[[Post], bool], count: int = 1) -> list[Post]:
        while True:
            matching = [post for post in self.received if predicate(post)]
            if len(matching) >= count:
                return matching
            await self._changed.park()

    def _app(self) -> QuartTrio:
        app = QuartTrio("webhook-receiver")

        @app.post("/inbox/<token>")
        async def inbox(token: str) -> Response:
            body = await request.get_data(as_text=False)
            assert isinstance(body, bytes)
            timestamp = request.headers.get("X-IronClaw-Timestamp", "")
            offered = request.headers.get("X-IronClaw-Signature", "")
            fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) <= 300
            good = fresh and hmac.compare_digest(
                offered, "v1=" + hmac_hex(self.secret, timestamp, body))
            if token != self.token or not good:
                self.refused_signatures += 1
                return Response('{"error": "bad signature"}', status=401)
            post = json.loads(body)
            key = request.headers.get("Idempotency-Key", "")
            status, headers = self._failures.popleft() if self._failures else (200, {})
            self.attempts.append(Post(post, key, status))
            self._changed.unpark_all()
            if status != 200:
                return Response('{"error": "try later"}', status=status, headers=headers,
                                content_type="application/json")
            if key not in self._message_ids:
                self._message_ids[key] = f"m-{len(self._message_ids) + 1}"
                self.received.append(Post(post, key, status))
                self._changed.unpark_all()
            return Response(json.dumps({"message_id": self._message_ids[key]}),
                            content_type="application/json")

        return app

    async def start(self) -> None:
        assert self._nursery is not None
        config = Config()
        config.bind = [f"127.0.0.1:{self.port}"]
        config.accesslog = None
        config.errorlog = None

        async def run(*, task_status: trio.TaskStatus[None]) -> None:
            with trio.CancelScope() as scope:
                self._scope = scope
                await serve(self._app(), config, shutdown_trigger=trio.sleep_forever,
                            task_status=task_status)

        await self._nursery.start(functools.partial(run))

    def stop(self) -> None:
        if self._scope is not None:
            self._scope.cancel()
            self._scope = None


@contextlib.asynccontextmanager
async def open_webhook_receiver(secret: bytes, token: str = "t0ken"
                                ) -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver(secret, token)
    async with trio.open_nursery() as nursery:
        receiver._nursery = nursery
        await receiver.start()
        yield receiver
        nursery.cancel_scope.cancel()
