"""The webhook channel end to end: the real control plane with the webhook adapter;
signed requests in over HTTP (httpx), replies out to a receiving server
(``tests/fakes/webhook_receiver.py``) that checks our signatures independently."""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio

from ironclaw.contract.actions import ScheduleTask
from ironclaw.contract.enums import EngageMode, SessionMode
from ironclaw.host.app import ControlPlaneHandles
from ironclaw.host.channels.settings import ChannelSettings
from ironclaw.runtime import EventBus
from tests.fakes.ngircd import free_port
from tests.fakes.webhook_receiver import (
    Post,
    WebhookReceiver,
    open_webhook_receiver,
    signed_headers,
)
from tests.support.channels import ChatWiring, open_channel_plane

SECRET = "in-" + secrets.token_hex(16)
OUT_SECRET = "out-" + secrets.token_hex(16)
URL_TOKEN = "urltok" + secrets.token_hex(8)


def webhook_settings(port: int, receiver: WebhookReceiver, **options: object
                     ) -> ChannelSettings:
    values: dict[str, object] = {"listen": f"127.0.0.1:{port}", "url": receiver.url}
    values.update(options)
    return ChannelSettings("webhook", "", values, environ={
        "IRONCLAW_WEBHOOK_SECRET": SECRET, "IRONCLAW_WEBHOOK_OUTBOUND_SECRET": OUT_SECRET})


class Sender:
    """Whoever posts events to our endpoint."""

    def __init__(self, port: int, client: httpx.AsyncClient) -> None:
        self.url = f"http://127.0.0.1:{port}/hooks/default"
        self.client = client

    async def post(self, event: dict[str, Any] | bytes, *, secret: str = SECRET,
                   at: float | None = None, headers: dict[str, str] | None = None,
                   url: str | None = None) -> httpx.Response:
        body = event if isinstance(event, bytes) else json.dumps(event).encode()
        sent = signed_headers(secret.encode(), body, at=at)
        sent.update(headers or {})
        return await self.client.post(url or self.url, content=body, headers=sent)


@contextlib.asynccontextmanager
async def open_webhook_plane(tmp_path: Path, wirings: Sequence[ChatWiring], **options: object
                             ) -> AsyncIterator[tuple[WebhookReceiver, ControlPlaneHandles,
                                                      Sender]]:
    """A plane with the webhook channel on a free port, its replies' receiver, and a
    sender posting to it."""
    port = free_port()
    async with open_webhook_receiver(OUT_SECRET.encode()) as receiver, \
            open_channel_plane(tmp_path, [webhook_settings(port, receiver, **options)],
                               wirings) as plane, \
            httpx.AsyncClient(timeout=20) as client:
        yield receiver, plane, Sender(port, client)


def event(event_id: str, text: str, chat: str = "chat-1", **extra: object) -> dict[str, Any]:
    return {"id": event_id, "chat": chat, "sender": "alice", "text": text, **extra}


def reply_to(text: str) -> Callable[[Post], bool]:
    return lambda post: post.body["text"] == text


async def next_event(bus: EventBus, kind: str, predicate: Callable[[Any], bool],
                     since: int) -> Any:
    async with bus.subscribe(kind, since=since) as subscription:
        async for item in subscription:
            found = getattr(item, "event", None)
            if found is not None and predicate(found):
                return found
    raise AssertionError("the event bus closed")


async def test_conversation_mentions_threads_duplicates_and_no_leaks(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    port = free_port()
    with trio.fail_after(45):
        async with open_webhook_receiver(OUT_SECRET.encode(), URL_TOKEN) as receiver, \
                open_channel_plane(tmp_path, [webhook_settings(port, receiver)], [
                    ChatWiring("webhook", "chat-1"),
                    ChatWiring("webhook", "room", engage_mode=EngageMode.MENTION),
                ]) as plane, httpx.AsyncClient(timeout=20) as client:
            # The room keeps one session per thread, so replies go back to the thread.
            room = await plane.registry.ensure_messaging_group("webhook", "room", "")
            for wiring in await plane.registry.wirings_for(room.id):
                await plane.registry.put_wiring(attrs.evolve(
                    wiring, session_mode=SessionMode.PER_THREAD))
            sender = Sender(port, client)
            answer = await sender.post(event("e-1", "hello"))
            assert answer.status_code == 200
            assert answer.json() == {"accepted": True, "duplicate": False}
            [reply] = await receiver.wait_for(reply_to("echo: hello"))
            assert reply.body["chat"] == "chat-1" and reply.body["thread"] is None
            assert reply.body["in_reply_to"] == "e-1"
            assert reply.idempotency_key == reply.body["id"]
            # The same event again (a sender's retry): accepted, not routed twice.
            again = await sender.post(event("e-1", "hello"))
            assert again.json() == {"accepted": True, "duplicate": True}
            # A group chat in mention mode: chatter is not answered, a mention is, and
            # the reply goes to the thread it came from.
            await sender.post(event("e-2", "chatter", chat="room", thread="t-9"))
            await sender.post(event("e-3", "hey bot", chat="room", thread="t-9",
                                    mentioned=True))
            [mention] = await receiver.wait_for(lambda p: p.body["chat"] == "room")
            assert mention.body["text"] == "echo: hey bot"
            assert mention.body["thread"] == "t-9" and mention.body["in_reply_to"] == "e-3"
            await sender.post(event("e-4", "after"))
            await receiver.wait_for(reply_to("echo: after"))
            assert [p.body["text"] for p in receiver.received] == [
                "echo: hello", "echo: hey bot", "echo: after"]
            assert receiver.refused_signatures == 0
            async with plane.events.subscribe("*", since=0) as subscription:
                seen = []
                while True:
                    try:
                        seen.append(repr(subscription.receive_nowait()))
                    except trio.WouldBlock:
                        break
            for secret in (SECRET, OUT_SECRET, URL_TOKEN):
                assert secret not in caplog.text and secret not in " ".join(seen)


async def test_a_message_of_the_agents_own_answers_no_event(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with open_webhook_plane(tmp_path, [ChatWiring("webhook", "chat-1")]) as (
                receiver, plane, sender):
            await sender.post(event("e-1", "hello", thread="t-1"))
            [reply] = await receiver.wait_for(reply_to("echo: hello"))
            assert (reply.body["thread"], reply.body["in_reply_to"]) == ("t-1", "e-1")
            # A scheduled task's prompt comes from no chat: its answer goes to the chat,
            # at the top level, answering no event.
            (session,) = await plane.registry.list_sessions()
            await plane.scheduler.schedule(
                session_id=session.id, agent_group_id=session.agent_group_id,
                request=ScheduleTask("daily report", None, None, None, None))
            await plane.scheduler.fire_due()
            [task] = await receiver.wait_for(lambda post: "daily report" in post.body["text"])
            assert task.body["chat"] == "chat-1"
            assert (task.body["thread"], task.body["in_reply_to"]) == (None, None)


async def test_inbound_refusals(tmp_path: Path) -> None:
    port = free_port()
    with trio.fail_after(30):
        async with open_webhook_receiver(OUT_SECRET.encode()) as receiver, \
                open_channel_plane(tmp_path, [webhook_settings(
                    port, receiver, max_body_bytes=4096)], [ChatWiring("webhook", "chat-1")]
                ) as _, httpx.AsyncClient(timeout=20) as client:
            sender = Sender(port, client)
            good = event("r-1", "hi")
            assert (await sender.post(good, secret="wrong-" + SECRET)).status_code == 401
            stale = await sender.post(good, at=time.time() - 301)
            assert stale.status_code == 401 and "window" in stale.json()["detail"]
            assert (await sender.post(good, at=time.time() + 400)).status_code == 401
            unsigned = await client.post(sender.url, content=json.dumps(good).encode())
            assert unsigned.status_code == 401
            assert unsigned.json()["error"] == "unauthorized"
            for malformed in (b"not json", b"[1, 2]", json.dumps({"id": "x"}).encode(),
                              json.dumps({**good, "mentioned": "yes"}).encode(),
                              b'{"id": "a", "id": "b"}'):
                answer = await sender.post(malformed)
                assert answer.status_code == 400, malformed
            huge = json.dumps(event("r-2", "x" * 5000)).encode()
            assert (await sender.post(huge)).status_code == 413
            other = sender.url.replace("/default", "/other")
            assert (await sender.post(good, url=other)).status_code == 404
            assert (await client.get(sender.url)).status_code == 405
            # None of those reached the agent; a good one still does.
            assert (await sender.post(good)).status_code == 200
            await receiver.wait_for(reply_to("echo: hi"))
            assert len(receiver.received) == 1


async def test_receiver_rate_limits_then_accepts(tmp_path: Path) -> None:
    with trio.fail_after(40):
        async with open_webhook_plane(tmp_path, [ChatWiring("webhook", "chat-1")]) as (
                receiver, plane, sender):
            receiver.fail_next(429, retry_after="1")
            since = plane.events.last_seq
            await sender.post(event("q-1", "slow down"))
            retrying = await next_event(plane.events, "delivery.retrying",
                                        lambda e: True, since)
            assert "429" in retrying.reason and retrying.retry_in >= 1
            [reply] = await receiver.wait_for(reply_to("echo: slow down"))
            attempts = [a for a in receiver.attempts if a.body["text"] == "echo: slow down"]
            assert [a.status for a in attempts] == [429, 200]
            assert attempts[0].idempotency_key == attempts[1].idempotency_key == \
                reply.idempotency_key


async def test_long_reply_is_split_into_idempotent_parts(tmp_path: Path) -> None:
    port = free_port()
    with trio.fail_after(30):
        async with open_webhook_receiver(OUT_SECRET.encode()) as receiver, \
                open_channel_plane(tmp_path, [webhook_settings(
                    port, receiver, max_text_chars=100)], [ChatWiring("webhook", "chat-1")]
                ) as _, httpx.AsyncClient(timeout=20) as client:
            words = " ".join(f"word{index:03d}" for index in range(30))  # 239 characters
            assert (await Sender(port, client).post(event("s-1", words))).status_code == 200
            parts = await receiver.wait_for(lambda p: p.body["chat"] == "chat-1", 3)
            assert all(len(p.body["text"]) <= 100 for p in parts)
            assert " ".join(p.body["text"] for p in parts) == f"echo: {words}"
            base = parts[0].body["id"].rsplit("#", 1)[0]
            assert [p.body["id"] for p in parts] == [f"{base}#{n}" for n in range(3)]


async def test_receiver_down_then_back_and_plane_restart(tmp_path: Path) -> None:
    port = free_port()
    with trio.fail_after(50):
        async with open_webhook_receiver(OUT_SECRET.encode()) as receiver, \
                httpx.AsyncClient(timeout=20) as client:
            sender = Sender(port, client)
            async with open_channel_plane(tmp_path, [webhook_settings(port, receiver)],
                                          [ChatWiring("webhook", "chat-1")]) as plane:
                receiver.stop()  # the other side goes away
                since = plane.events.last_seq
                assert (await sender.post(event("d-1", "anyone?"))).status_code == 200
                retrying = await next_event(plane.events, "delivery.retrying",
                                            lambda e: True, since)
                assert "webhook" in retrying.reason and receiver.url not in retrying.reason
                await receiver.start()  # and comes back: the reply arrives, once
                await receiver.wait_for(reply_to("echo: anyone?"))
            # The control plane restarts: the ids it accepted are remembered.
            async with open_channel_plane(tmp_path, [webhook_settings(port, receiver)],
                                          [ChatWiring("webhook", "chat-1")]):
                again = await sender.post(event("d-1", "anyone?"))
                assert again.json() == {"accepted": True, "duplicate": True}
                assert (await sender.post(event("d-2", "new"))).json()["duplicate"] is False
                await receiver.wait_for(reply_to("echo: new"))
            assert [p.body["text"] for p in receiver.received] == ["echo: anyone?", "echo: new"]
