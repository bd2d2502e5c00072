"""The chat websocket's per-principal message budget, against a real control plane:
a flood gets typed ``rate_limited`` frames, is never posted, and leaves the socket and
other principals alone."""

from __future__ import annotations

import json

import pytest

from ironclaw.host.api import ApiSettings
from tests.support.api import Api, receive_json, running_api  # noqa: F401

BURST = 3
# So slow a refill that none happens during the test: exactly BURST messages pass.
SETTINGS = ApiSettings(host="127.0.0.1", port=0, rate_per_second=1000.0, rate_burst=5000,
                       ws_chat_rate_per_second=0.001, ws_chat_burst=BURST)
CHAT = "/v1/channels/local/chat?agent_group=demo"


@pytest.fixture(name="api_settings")
def chat_settings() -> ApiSettings:
    return SETTINGS


async def replies_to(ws: object, count: int) -> list[dict[str, object]]:
    """The next ``count`` answers to our own messages (accepted or error), skipping the
    transcript frames that the follow task interleaves."""
    answers: list[dict[str, object]] = []
    while len(answers) < count:
        frame = await receive_json(ws, 60)  # type: ignore[arg-type]
        if frame["type"] in ("accepted", "error"):
            answers.append(frame)
    return answers


async def test_a_chat_flood_is_refused_per_principal_with_typed_frames(api: Api) -> None:
    flood = BURST + 4
    async with api.ws(CHAT, "approver") as ws:
        assert (await receive_json(ws))["type"] == "ready"
        for n in range(flood):
            await ws.send_message(json.dumps({"type": "message", "text": f"m{n}"}))
        answers = await replies_to(ws, flood)
        assert [a["type"] for a in answers] == ["accepted"] * BURST + ["error"] * 4
        for refused in answers[BURST:]:
            assert refused["error"] == "rate_limited"
            assert isinstance(refused["retry_after"], int) and refused["retry_after"] >= 1
        # Only the accepted messages reached the channel (an "accepted" frame is sent
        # once the post, transcript entry included, is done).
        texts = [e.text for e in api.handles.local.transcript("demo") if e.role == "user"]
        assert texts == [f"m{n}" for n in range(BURST)]
        # The bucket is the principal's, not the connection's: a second socket is no
        # way around it. Another principal has its own.
        async with api.ws(CHAT, "approver") as again:
            assert (await receive_json(again))["type"] == "ready"
            await again.send_message(json.dumps({"type": "message", "text": "again"}))
            assert (await replies_to(again, 1))[0]["error"] == "rate_limited"
        async with api.ws(CHAT, "admin") as other:
            assert (await receive_json(other))["type"] == "ready"
            await other.send_message(json.dumps({"type": "message", "text": "other"}))
            assert (await replies_to(other, 1))[0]["type"] == "accepted"
