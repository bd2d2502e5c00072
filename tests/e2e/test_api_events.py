"""The websockets against a real control plane: the event stream (order, filters,
since= resume, lag, slow and stalled clients, authentication) and the local chat."""

from __future__ import annotations

import base64
import json
import os
import socket
from typing import Any, ClassVar

import attrs
import pytest
import trio
import trio_websocket

from ironclaw.host.api import ApiSettings
from ironclaw.runtime import Envelope
from tests.support.api import Api, receive_json, running_api  # noqa: F401

SETTINGS = ApiSettings(host="127.0.0.1", port=0, rate_per_second=1000.0, rate_burst=5000,
                       event_buffer=32, event_max_missed=200, ws_auth_timeout=0.5,
                       ws_send_timeout=3.0, stall_timeout=2.0)
FLOW = "message.received,message.routed,delivery.delivered,change.*"


# For the stalled client: no limit on missed events, so only a stalled socket can
# get it dropped (by the kernel, after stall_timeout; hypercorn's writes are shielded).
STALL_SETTINGS = attrs.evolve(SETTINGS, event_max_missed=10**9, ws_send_timeout=1.0)


@pytest.fixture(name="api_settings")
def events_settings(request: pytest.FixtureRequest) -> ApiSettings:
    return getattr(request, "param", SETTINGS)


async def closed_by_server(ws: trio_websocket.WebSocketConnection) -> int:
    """Read until the server closes; return its close code. (trio-websocket leaves the
    TCP stream open after a server-initiated close; close it here, or its socket is
    garbage-collected unclosed.)"""
    try:
        with pytest.raises(trio_websocket.ConnectionClosed) as closed:
            while True:
                frame = await receive_json(ws)
                assert frame["type"] == "error", frame
        assert closed.value.reason is not None
        return int(closed.value.reason.code)
    finally:
        await ws._stream.aclose()


@attrs.frozen
class Flood:
    type: ClassVar[str] = "test.flood"
    n: int
    pad: str = ""
    session_id: str = ""


async def frames_until(ws: trio_websocket.WebSocketConnection, last_type: str
                       ) -> list[dict[str, Any]]:
    frames = []
    while True:
        frame = await receive_json(ws)
        frames.append(frame)
        if frame["type"] == last_type:
            return frames


async def say(api: Api, text: str, who: str = "owner") -> None:
    mark = api.handles.local.cursor("demo")
    response = await api.post("/v1/channels/local/messages",
                              {"agent_group": "demo", "sender": who, "text": text}, who)
    assert response.status_code == 202, response.text
    with trio.fail_after(60):
        await api.handles.local.wait_for_reply("demo", after_index=mark)


async def approve_a_change(api: Api) -> str:
    submitted = await api.post("/v1/changes", {"kind": "persona", "agent_group": "demo",
                                               "payload": {"soul": "Terse."}})
    change_id = submitted.json()["id"]
    decided = await api.post(f"/v1/changes/{change_id}/decision", {"outcome": "approve"})
    assert decided.json()["status"] == "applied", decided.text
    return str(change_id)


async def handshake_status(api: Api, path: str, headers: dict[str, str]) -> int:
    key = base64.b64encode(os.urandom(16)).decode()
    response = await api.client.get(api.url + path, headers={
        "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": key, **headers})
    return response.status_code


async def test_two_subscribers_see_a_conversation_and_an_approval_in_order(api: Api) -> None:
    path = f"/v1/events?types={FLOW}"
    async with api.ws(path) as cli, api.ws(path, "viewer", mode="subprotocol") as browser:
        assert browser.subprotocol == "ironclaw.v1"
        for ws, who in ((cli, "owner"), (browser, "viewer")):
            ready = await receive_json(ws)
            assert ready["type"] == "stream.ready" and ready["event"]["principal"] == who
        await say(api, "hello")
        change_id = await approve_a_change(api)
        seen = [await frames_until(ws, "change.applied") for ws in (cli, browser)]
    assert seen[0] == seen[1]
    types = [f["type"] for f in seen[0]]
    assert types == ["message.received", "message.routed", "delivery.delivered",
                     "change.submitted", "change.decided", "change.applied"]
    seqs = [f["seq"] for f in seen[0]]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert {f["event"].get("change_id") for f in seen[0][3:]} == {change_id}
    decided = seen[0][4]["event"]
    assert decided == {"change_id": change_id, "outcome": "approve", "decided_by": "owner"}
    assert all(isinstance(f["at"], int) for f in seen[0])


async def test_since_replays_what_a_client_missed(api: Api) -> None:
    async with api.ws("/v1/events") as ws:
        left_at = (await receive_json(ws))["event"]["last_seq"]
    await say(api, "while you were away")
    missed: list[Envelope] = []
    async with api.handles.events.subscribe("*", since=left_at) as replay:
        while True:
            try:
                item = replay.receive_nowait()
            except trio.WouldBlock:
                break
            assert isinstance(item, Envelope)  # the ring still holds all of them
            missed.append(item)
    assert {"message.received", "delivery.delivered"} <= {e.type for e in missed}
    async with api.ws(f"/v1/events?since={left_at}") as ws:
        ready = await receive_json(ws)
        assert ready["event"]["since"] == left_at
        replayed: list[dict[str, Any]] = []
        while not replayed or replayed[-1]["seq"] < missed[-1].seq:
            replayed.append(await receive_json(ws))
    assert [f["seq"] for f in replayed][:len(missed)] == [e.seq for e in missed]
    assert [f["type"] for f in replayed][:len(missed)] == [e.type for e in missed]
    ahead = api.handles.events.last_seq + 1000
    assert await handshake_status(api, f"/v1/events?since={ahead}", api.auth()) == 400


async def test_filters_by_type_and_by_session(api: Api) -> None:
    await say(api, "start a session")
    (session_id,) = api.handles.sessions.live_ids()
    async with api.ws(f"/v1/events?types=delivery.*&session={session_id}") as mine, \
            api.ws("/v1/events?session=sess_someone_else") as other:
        await receive_json(mine)
        await receive_json(other)
        await say(api, "filtered")
        frame = await receive_json(mine)
        assert frame["type"] == "delivery.delivered"
        assert frame["event"]["session_id"] == session_id
        # Everything so far was another session's: the next frame the other sees is
        # the one event published for it.
        api.handles.events.publish(Flood(1, session_id="sess_someone_else"))
        frame = await receive_json(other)
        assert (frame["type"], frame["event"]["n"]) == ("test.flood", 1)
    assert await handshake_status(api, "/v1/events?types=bad*pattern", api.auth()) == 400


async def test_a_slow_reader_is_told_exactly_what_it_missed(api: Api) -> None:
    async with api.ws("/v1/events?types=test.*") as ws:
        await receive_json(ws)
        for n in range(100):  # no checkpoint: the reader cannot keep up, by construction
            api.handles.events.publish(Flood(n))
        lagged = await receive_json(ws)
        assert lagged == {"seq": None, "type": "stream.lagged", "at": lagged["at"],
                          "event": {"missed": 100 - SETTINGS.event_buffer}}
        rest = [(await receive_json(ws))["event"]["n"] for _ in range(SETTINGS.event_buffer)]
        assert rest == list(range(100 - SETTINGS.event_buffer, 100))


async def test_a_batching_reader_gets_the_waiting_frames_in_one_message(api: Api) -> None:
    async with api.ws("/v1/events?types=test.*&batch=50") as ws:
        (ready,) = json.loads(await ws.get_message())
        assert ready["type"] == "stream.ready"
        for n in range(10):  # no checkpoint: all ten wait for the pump together
            api.handles.events.publish(Flood(n))
        with trio.fail_after(30):
            frames = json.loads(await ws.get_message())
        assert [f["event"]["n"] for f in frames] == list(range(10))
        assert [f["seq"] for f in frames] == sorted(f["seq"] for f in frames)


@pytest.mark.parametrize("batch", ["0", "1001", "-1", "x"])
async def test_a_batch_out_of_range_is_refused(api: Api, batch: str) -> None:
    assert await handshake_status(api, f"/v1/events?batch={batch}", api.auth()) == 400


async def test_a_reader_too_far_behind_is_told_then_dropped(api: Api) -> None:
    before = api.handles.events.subscriber_count
    async with api.ws("/v1/events?types=test.*") as ws:
        await receive_json(ws)
        assert api.handles.events.subscriber_count == before + 1
        for n in range(1000):
            api.handles.events.publish(Flood(n))
        lagged = await receive_json(ws)
        assert lagged["event"]["missed"] == 1000 - SETTINGS.event_buffer
        assert await closed_by_server(ws) == 4008
    assert api.handles.events.subscriber_count == before
    assert "ironclaw_event_streams_dropped_total 1.0" in (await api.get("/metrics")).text


async def stalled_subscriber(api: Api) -> trio.socket.SocketType:
    """A client that upgrades to the event stream and then never reads a byte."""
    trio_sock = trio.socket.socket()
    trio_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await trio_sock.connect(("127.0.0.1", api.port))
    key = base64.b64encode(os.urandom(16)).decode()
    await trio_sock.send(
        (f"GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
         f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
         f"Authorization: Bearer {api.tokens['viewer']}\r\n\r\n").encode())
    return trio_sock


async def delivered_replies(api: Api, count: int, label: str) -> int:
    """Post ``count`` messages one after another; return how many replies arrived."""
    replies = 0
    for n in range(count):
        mark = api.handles.local.cursor("demo")
        await api.post("/v1/channels/local/messages",
                       {"agent_group": "demo", "sender": "alice", "text": f"{label} {n}"})
        with trio.move_on_after(30):
            reply = await api.handles.local.wait_for_reply("demo", after_index=mark)
            replies += reply.text == f"echo: {label} {n}"
    return replies


@pytest.mark.parametrize("api_settings", [STALL_SETTINGS], indirect=True)
async def test_a_stalled_subscriber_does_not_slow_delivery(api: Api) -> None:
    rounds = 10
    baseline_subscribers = api.handles.events.subscriber_count
    without = await delivered_replies(api, rounds, "without")
    stalled = await stalled_subscriber(api)
    try:
        with trio.fail_after(10):
            while api.handles.events.subscriber_count == baseline_subscribers:  # noqa: ASYNC110
                await trio.sleep(0.01)
        pad = "x" * 8192

        async def flood() -> None:
            for batch in range(400):  # ~32 MiB of frames: far past any socket buffer
                for n in range(10):
                    api.handles.events.publish(Flood(batch * 10 + n, pad))
                await trio.lowlevel.checkpoint()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(flood)
            with_stalled = await delivered_replies(api, rounds, "with")
        # The stalled client really did stall: its buffer overflowed, and its connection
        # was aborted (nothing else can drop it with these settings).
        with trio.fail_after(30):
            while api.handles.events.subscriber_count > baseline_subscribers:  # noqa: ASYNC110
                await trio.sleep(0.05)
        metrics = (await api.get("/metrics")).text
        dropped = next(line for line in metrics.splitlines()
                       if line.startswith('ironclaw_events_dropped_total{subscriber="stream"}'))
        assert float(dropped.rsplit(" ", 1)[1]) > 0
    finally:
        stalled.close()
    assert without == rounds
    assert with_stalled == without


async def test_websocket_authentication_without_a_token_in_the_url(api: Api) -> None:
    async with api.ws("/v1/events", mode="message") as ws:
        await ws.send_message(json.dumps({"type": "auth", "token": api.tokens["viewer"]}))
        ready = await receive_json(ws)
        assert ready["type"] == "stream.ready" and ready["event"]["principal"] == "viewer"
    for message, code in ((json.dumps({"type": "auth", "token": "icw_wrong-0123456789ab"}),
                           4401), ("not json", 4400), (None, 4408)):
        async with api.ws("/v1/events", mode="message") as ws:
            if message is not None:
                await ws.send_message(message)
            assert await closed_by_server(ws) == code
    bad = {"Authorization": "Bearer icw_wrong-0123456789ab"}
    assert await handshake_status(api, "/v1/events", bad) == 401
    only_bearer = {"Sec-WebSocket-Protocol": f"bearer.{api.tokens['owner']}"}
    assert await handshake_status(api, "/v1/events", only_bearer) == 400
    assert await handshake_status(api, "/v1/channels/local/chat?agent_group=demo",
                                  api.auth("viewer")) == 403
    # A stranger learns nothing: not whether a group exists, nor how far the stream is.
    for path in ("/v1/channels/local/chat?agent_group=ghost",
                 f"/v1/events?since={api.handles.events.last_seq + 1000}"):
        assert await handshake_status(api, path, bad) == 401
    # Judged only once the caller is known, then refused with 4000 + the status.
    async with api.ws("/v1/channels/local/chat?agent_group=ghost", mode="message") as ws:
        await ws.send_message(json.dumps({"type": "auth", "token": api.tokens["owner"]}))
        assert await closed_by_server(ws) == 4404


async def test_chat_over_a_websocket(api: Api) -> None:
    async with api.ws("/v1/channels/local/chat?agent_group=demo", "approver") as ws:
        ready = await receive_json(ws)
        assert (ready["type"], ready["conversation"]) == ("ready", "demo")
        await ws.send_message(json.dumps({"type": "message", "text": "hi there"}))
        frames = [await receive_json(ws, 60) for _ in range(3)]
        kinds = sorted((f["type"], f.get("role")) for f in frames)
        assert kinds == [("accepted", None), ("message", "agent"), ("message", "user")]
        user = next(f for f in frames if f.get("role") == "user")
        agent = next(f for f in frames if f.get("role") == "agent")
        assert (user["sender"], user["text"]) == ("approver", "hi there")
        assert agent["text"] == "echo: hi there" and agent["index"] > user["index"]
        assert frames[-1] is agent
        await ws.send_message(json.dumps({"type": "message", "text": "x",
                                          "sender": "operator"}))
        refused = await receive_json(ws)
        assert (refused["type"], refused["error"]) == ("error", "forbidden")
        await ws.send_message("{}")
        assert (await receive_json(ws))["error"] == "bad_request"
    assert await handshake_status(api, "/v1/channels/local/chat?agent_group=ghost",
                                  api.auth()) == 404
