"""ironctl's websocket commands against fake servers: ``events`` (filters, auth in a
header, reconnect with ``since=``, refusals) and ``chat`` (the chat socket, and HTTP
polling as the fallback)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import trio
from trio_websocket import WebSocketConnection, WebSocketRequest

from tests.support.ironctl import T0, TOKEN, FakeApi, ironctl, serve_ws


def frame(seq: int, kind: str = "message.routed", **fields: Any) -> str:
    return json.dumps({"seq": seq, "type": kind, "at": T0 + seq,
                       "event": {"session_id": "s1", **fields}})


def note(kind: str, **fields: Any) -> str:
    return json.dumps({"seq": None, "type": f"stream.{kind}", "at": T0, "event": fields})


class Ring:
    """A fake /v1/events: events 1..head; each connection replays after since=,
    then runs ``script`` (which may send more, or close)."""

    def __init__(self, head: int,
                 scripts: list[Callable[[WebSocketConnection], Any]] | None = None) -> None:
        self.head = head
        self.scripts = list(scripts or [])
        self.queries: list[dict[str, str]] = []

    async def __call__(self, request: WebSocketRequest, query: dict[str, str]) -> None:
        self.queries.append(query)
        since = int(query["since"]) if "since" in query else None
        if since is not None and since > self.head:
            await request.reject(400, body=json.dumps({
                "error": "bad_request", "detail": f"since={since} is ahead of the stream "
                "(last seq 0); the control plane may have restarted"}).encode())
            return
        ws = await request.accept()
        await ws.send_message(note("ready", last_seq=self.head, since=since))
        if since is not None:
            for seq in range(since + 1, self.head + 1):
                await ws.send_message(frame(seq, text=f"event {seq}"))
        if self.scripts:
            await self.scripts.pop(0)(ws)
        else:
            await trio.sleep_forever()


def printed_seqs(out: str) -> list[int]:
    return [int(line.split()[0]) for line in out.splitlines() if line.strip()]


async def test_events_replays_and_stops_when_caught_up(nursery: trio.Nursery) -> None:
    ring = Ring(4)
    server = await serve_ws(nursery, ring)
    result = await ironctl(None, "--addr", server.addr, "events", "--since", "1",
                           "--type", "message.*", "--type", "change.submitted,session.*",
                           "--session", "s1", "--no-follow")
    assert result.code == 0, result
    assert printed_seqs(result.out) == [2, 3, 4]
    assert "message.routed session_id=s1 text=\"event 2\"" in result.out
    assert "the stream is at seq 4" in result.err
    assert ring.queries == [{"types": "message.*,change.submitted,session.*",
                             "session": "s1", "since": "1"}]
    (path, headers), = server.seen
    assert headers["authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in path


async def test_events_json_lines_and_lag_notes(nursery: trio.Nursery) -> None:
    async def lag_then_more(ws: WebSocketConnection) -> None:
        await ws.send_message(note("lagged", missed=7))
        await ws.send_message(frame(10, "change.submitted", change_id="chg_1"))
        await trio.sleep_forever()

    server = await serve_ws(nursery, Ring(2, [lag_then_more, lag_then_more]))
    result = await ironctl(None, "--addr", server.addr, "--json", "events", "--since", "0",
                           "--count", "3")
    assert result.code == 0
    kinds = [f["type"] for f in result.lines()]
    assert kinds == ["stream.ready", "message.routed", "message.routed", "stream.lagged",
                     "change.submitted"]
    human = await ironctl(None, "--addr", server.addr, "events", "--since", "2",
                          "--count", "1")
    assert "missed 7 event(s)" in human.err and printed_seqs(human.out) == [10]


@pytest.mark.parametrize("code", [1001, 1011, 4008])
async def test_events_reconnects_with_since_after_a_drop(nursery: trio.Nursery,
                                                         code: int) -> None:
    ring = Ring(3)

    async def drop(ws: WebSocketConnection) -> None:
        await ws.aclose(code, "bye")

    async def more(ws: WebSocketConnection) -> None:
        ring.head = 5
        await ws.send_message(frame(4))
        await ws.send_message(frame(5))
        await trio.sleep_forever()

    ring.scripts = [drop, more]
    server = await serve_ws(nursery, ring)
    result = await ironctl(None, "--addr", server.addr, "events", "--since", "0",
                           "--count", "5")
    assert result.code == 0, result
    assert printed_seqs(result.out) == [1, 2, 3, 4, 5]
    assert [q.get("since") for q in ring.queries] == ["0", "3"]
    assert f"closed: {code}" in result.err and "reconnecting with since=3" in result.err


async def test_events_replays_from_the_start_after_a_restart(nursery: trio.Nursery) -> None:
    ring = Ring(3)

    async def restart(ws: WebSocketConnection) -> None:
        ring.head = 0  # the daemon restarted: its sequence begins again
        await ws.aclose(1001, "shutting down")

    async def fresh(ws: WebSocketConnection) -> None:
        await ws.send_message(frame(1, "session.started"))
        await trio.sleep_forever()

    ring.scripts = [restart, fresh]
    server = await serve_ws(nursery, ring)
    result = await ironctl(None, "--addr", server.addr, "events", "--since", "2",
                           "--count", "2")
    assert result.code == 0, result
    assert printed_seqs(result.out) == [3, 1]
    assert [q.get("since") for q in ring.queries] == ["2", "3", "0"]
    assert "sequence restarted" in result.err


async def test_events_refusals_are_not_retried(nursery: trio.Nursery) -> None:
    async def refuse(ws: WebSocketConnection) -> None:
        await ws.send_message(json.dumps({"type": "error", "error": "unauthorized",
                                          "detail": "invalid token"}))
        await ws.aclose(4401, "invalid token")

    ring = Ring(0, [refuse])
    server = await serve_ws(nursery, ring)
    closed = await ironctl(None, "--addr", server.addr, "events")
    assert closed.code == 3 and "4401" in closed.err and "invalid token" in closed.err
    wrong = await ironctl(None, "--addr", server.addr, "events",
                          token="icw_wrong_token_1234567")
    assert wrong.code == 3
    assert "401 unauthorized: a valid bearer token is required" in wrong.err
    assert len(ring.queries) == 1  # neither was retried


async def test_events_without_a_server_exits_1() -> None:
    result = await ironctl(None, "--addr", "http://127.0.0.1:9", "--timeout", "2",
                           "events")
    assert result.code == 1 and "cannot open the event stream" in result.err


# Chat.

class ChatServer:
    def __init__(self, *, accepted_first: bool = False, reply: bool = True,
                 refuse: bool = False) -> None:
        self.accepted_first = accepted_first
        self.reply = reply
        self.refuse = refuse
        self.received: list[dict[str, Any]] = []
        self.queries: list[dict[str, str]] = []

    async def __call__(self, request: WebSocketRequest, query: dict[str, str]) -> None:
        self.queries.append(query)
        if not request.path.startswith("/v1/channels/local/chat"):
            await request.reject(404)
            return
        ws = await request.accept()
        await ws.send_message(json.dumps({"type": "ready", "conversation": "demo",
                                          "agent_group": "demo", "last_index": 9}))
        index = 9
        while True:
            message = json.loads(await ws.get_message())
            self.received.append(message)
            if self.refuse:
                await ws.send_message(json.dumps({"type": "error", "error": "unavailable",
                                                  "detail": "the channel is down"}))
                continue
            index += 1
            mid = f"local-{index}"
            user = {"type": "message", "index": index, "role": "user",
                    "sender": message.get("sender", "owner"), "text": message["text"],
                    "at": T0, "message_id": mid, "thread_id": None}
            accepted = {"type": "accepted", "message_id": mid}
            for item in ((accepted, user) if self.accepted_first else (user, accepted)):
                await ws.send_message(json.dumps(item))
            if self.reply:
                index += 1
                await ws.send_message(json.dumps({
                    "type": "message", "index": index, "role": "agent", "sender": "Demo",
                    "text": f"echo: {message['text']}", "at": T0,
                    "message_id": f"out-{index}", "thread_id": None}))


@pytest.mark.parametrize("accepted_first", [False, True])
async def test_chat_over_the_socket(nursery: trio.Nursery, accepted_first: bool) -> None:
    chat = ChatServer(accepted_first=accepted_first)
    server = await serve_ws(nursery, chat)
    fake = FakeApi()
    result = await ironctl(fake, "--addr", server.addr, "chat", stdin="hello\n\nworld\n")
    assert result.code == 0, result
    assert result.out.splitlines() == ["Demo> echo: hello", "Demo> echo: world"]
    assert [m["text"] for m in chat.received] == ["hello", "world"]
    assert all("sender" not in m for m in chat.received)  # the principal's own name
    assert chat.queries == [{"agent_group": "demo"}]
    (path, headers), = server.seen
    assert TOKEN not in path and headers["authorization"] == f"Bearer {TOKEN}"
    assert not fake.posted("/v1/channels/local/messages")


async def test_chat_socket_json_and_sender(nursery: trio.Nursery) -> None:
    chat = ChatServer()
    server = await serve_ws(nursery, chat)
    result = await ironctl(FakeApi(), "--addr", server.addr, "--json", "chat",
                           "--sender", "alice", "--conversation", "side", stdin="hi\n/quit\nx\n")
    assert result.code == 0
    assert [(e["role"], e["text"]) for e in result.lines()] == [("user", "hi"),
                                                               ("agent", "echo: hi")]
    assert chat.received == [{"type": "message", "text": "hi", "sender": "alice"}]
    assert chat.queries == [{"agent_group": "demo", "conversation": "side"}]


async def test_chat_socket_refusal_and_silence_exit_1(nursery: trio.Nursery) -> None:
    server = await serve_ws(nursery, ChatServer(refuse=True))
    refused = await ironctl(FakeApi(), "--addr", server.addr, "chat", stdin="hello\n")
    assert refused.code == 1 and "unavailable: the channel is down" in refused.err
    server = await serve_ws(nursery, ChatServer(reply=False))
    silent = await ironctl(FakeApi(), "--addr", server.addr, "chat", "--reply-timeout",
                           "0.3", stdin="hello\n")
    assert silent.code == 1 and "no reply within 0.3 s" in silent.err


async def test_chat_falls_back_to_polling_without_a_chat_socket(
        nursery: trio.Nursery) -> None:
    async def no_chat(request: WebSocketRequest, query: dict[str, str]) -> None:
        await request.reject(404, body=b'{"error": "not_found", "detail": "no route"}')

    server = await serve_ws(nursery, no_chat)
    fake = FakeApi()
    fake.add_entry("user", "bob", "old news", "local-old")  # history: not replayed
    result = await ironctl(fake, "--addr", server.addr, "chat", stdin="hello\nagain\n")
    assert result.code == 0, result
    assert result.out.splitlines() == ["Demo> echo: hello", "Demo> echo: again"]
    assert [b["text"] for b in fake.posted("/v1/channels/local/messages")] == ["hello",
                                                                                "again"]
    assert fake.posted("/v1/channels/local/messages")[0]["sender"] == "owner"


async def test_chat_polling_shows_other_users_and_unknown_groups_fail() -> None:
    fake = FakeApi()
    fake.add_entry("user", "bob", "old news", "local-old")
    first = await ironctl(fake, "chat", "--poll", "--sender", "carol", stdin="hi\n")
    assert first.out.splitlines() == ["Demo> echo: hi"]
    fake.add_entry("user", "bob", "me too", "local-bob")
    fake.add_entry("agent", "Demo", "echo: me too", "out-bob")
    # A new chat starts where its first message lands; within one chat, others show.
    later = await ironctl(fake, "--json", "chat", "--poll", "--sender", "carol",
                          stdin="x\n")
    assert [e["text"] for e in later.lines()] == ["x", "echo: x"]
    unknown = await ironctl(fake, "chat", "--poll", "--group", "ghost", stdin="hi\n")
    assert unknown.code == 4 and "no agent group 'ghost'" in unknown.err
