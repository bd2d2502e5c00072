"""Matrix end to end: the real control plane, the Matrix adapter, a fake homeserver on
loopback speaking the client-server API (``tests/fakes/matrix.py``).

Mentions, a restart and a gap are tested against a real Synapse
(``test_matrix_synapse.py``); the fake stays for what a real server will not do on
demand (a cut in the middle of a long poll, a 502, rate limits, a lost send answer, an
event served twice) and for an ``m.direct`` room of three members."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from ironclaw.contract.enums import EngageMode, SessionMode
from ironclaw.host.app import ControlPlaneHandles
from ironclaw.host.channels.platforms import matrix
from ironclaw.host.channels.platforms.matrix.parse import (
    direct_rooms_of,
    is_mentioned,
    room_message,
    strip_reply_fallback,
)
from ironclaw.host.channels.settings import ChannelSettings
from tests.fakes.matrix import BOT, TOKEN, FakeMatrix, open_fake_matrix
from tests.support.channels import (
    ChatWiring,
    assert_secret_absent,
    open_channel_plane,
    wire,
)
from tests.support.events import next_event, published, wait_delivered

ALICE = "@alice:fake.test"
BOB = "@bob:fake.test"


def settings_for(fake: FakeMatrix, token: str = TOKEN, **options: Any) -> ChannelSettings:
    return ChannelSettings("matrix", "", {"homeserver": fake.base_url, "user_id": BOT,
                                          "poll_timeout_s": 5, **options},
                           environ={"IRONCLAW_MATRIX_ACCESS_TOKEN": token})


@pytest.fixture
async def fake() -> AsyncIterator[FakeMatrix]:
    async with open_fake_matrix() as fake:
        yield fake


@pytest.fixture(autouse=True)
def _debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)


async def finish(plane: ControlPlaneHandles, caplog: pytest.LogCaptureFixture,
                 token: str = TOKEN) -> None:
    assert_secret_absent(token, caplog, await published(plane))


async def received_count(plane: ControlPlaneHandles) -> int:
    return sum(1 for e in await published(plane) if e.type == "message.received")  # type: ignore[attr-defined]


async def synced_past(fake: FakeMatrix, event: dict[str, Any]) -> None:
    """Until the adapter asked for what comes after ``event`` (so it has taken it)."""
    position = next(i.position for i in fake.items if i.event is event)
    await fake.wait_for(lambda: any(s.since is not None and int(s.since[1:]) >= position
                                    for s in fake.syncs))


# -- end to end ---------------------------------------------------------------------------

async def test_dm_conversation_ignores_history_and_own_events(
        fake: FakeMatrix, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    dm = fake.room(ALICE)  # two members: a DM even without m.direct
    fake.say(dm, ALICE, "from before the bot started")
    with trio.fail_after(30):
        # Mention mode: a DM is addressed to the bot, so it answers anyway.
        async with open_channel_plane(tmp_path, [settings_for(fake)], [
                ChatWiring("matrix", dm, engage_mode=EngageMode.MENTION)]) as plane:
            await fake.wait_ready()
            fake.say(dm, ALICE, "hello")
            (reply,) = await fake.wait_bot_events(dm, 1)
            assert reply["content"] == {"msgtype": "m.text", "body": "echo: hello",
                                        "m.mentions": {}}
            # The reply comes back in the next sync; it is ours, so it is not routed.
            await synced_past(fake, reply)
            fake.say(dm, ALICE, "again")
            await fake.wait_bot_events(dm, 2)
            assert await received_count(plane) == 2
            await finish(plane, caplog)


async def test_m_direct_room_and_thread_replies(
        fake: FakeMatrix, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    listed = fake.room(ALICE, BOB)  # three members, but m.direct says it is a DM
    fake.set_direct(ALICE, listed)
    group = fake.room(ALICE, BOB)
    with trio.fail_after(30):
        async with open_channel_plane(tmp_path, [settings_for(fake)], [
                ChatWiring("matrix", listed, engage_mode=EngageMode.MENTION)]) as plane:
            await wire(plane, ChatWiring("matrix", group,
                                          session_mode=SessionMode.PER_THREAD))
            await fake.wait_ready()
            fake.say(listed, ALICE, "direct by m.direct")
            root = fake.say(group, ALICE, "a thread root")
            fake.say(group, BOB, "in the thread", thread=root["event_id"])
            (direct_reply,) = await fake.wait_bot_events(listed, 1)
            assert direct_reply["content"]["body"] == "echo: direct by m.direct"
            replies = await fake.wait_bot_events(group, 2)
            threaded = [r for r in replies if "m.relates_to" in r["content"]]
            assert [r["content"]["body"] for r in threaded] == ["echo: in the thread"]
            assert threaded[0]["content"]["m.relates_to"]["rel_type"] == "m.thread"
            assert threaded[0]["content"]["m.relates_to"]["event_id"] == root["event_id"]
            await finish(plane, caplog)


async def test_connection_cut_mid_sync_loses_and_repeats_nothing(
        fake: FakeMatrix, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    dm = fake.room(ALICE)
    with trio.fail_after(40):
        async with open_channel_plane(tmp_path, [settings_for(fake)],
                                      [ChatWiring("matrix", dm)]) as plane:
            await fake.wait_ready()
            async with plane.events.subscribe("channel.*") as channel_events:
                fake.say(dm, ALICE, "one")
                await wait_delivered(plane, 1)
                await fake.wait_for(lambda: fake.syncs_waiting > 0)
                await fake.cut()
                fake.say(dm, ALICE, "two")
                await wait_delivered(plane, 2)
                fake.fail_syncs(1)
                fake.say(dm, ALICE, "three")
                await wait_delivered(plane, 3)
                fake.say(dm, ALICE, "four")
                await fake.wait_bot_events(dm, 4)
                seen: list[str] = []
                while seen.count("channel.up") < 2:
                    seen.append((await next_event(channel_events)).type)
            assert [e["content"]["body"] for e in fake.bot_events(dm)] == [
                "echo: one", "echo: two", "echo: three", "echo: four"]
            assert seen.count("channel.down") == 2
            assert [s.status for s in fake.syncs].count(502) == 1
            await finish(plane, caplog)


async def test_rate_limits_are_honoured_on_both_sides(
        fake: FakeMatrix, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    dm = fake.room(ALICE)
    with trio.fail_after(40):
        async with open_channel_plane(tmp_path, [settings_for(fake)],
                                      [ChatWiring("matrix", dm)]) as plane:
            await fake.wait_ready()
            await fake.wait_for(lambda: fake.syncs_waiting > 0)
            fake.rate_limit_syncs(1, retry_after_ms=1000)
            fake.say(dm, ALICE, "wake the open sync")
            await fake.wait_for(lambda: any(s.status == 429 for s in fake.syncs)
                                and fake.syncs[-1].status == 200)
            limited = next(i for i, s in enumerate(fake.syncs) if s.status == 429)
            # Slept as asked (1 s), did not spin.
            assert fake.syncs[limited + 1].at - fake.syncs[limited].at >= 0.95
            await wait_delivered(plane, 1)

            fake.rate_limit_sends(1, retry_after_ms=2000)
            fake.say(dm, ALICE, "hello")
            await fake.wait_for(lambda: len(fake.accepted_sends()) == 2)
            refused, accepted = fake.sends[-2:]
            assert (refused.status, accepted.status) == (429, 200)
            assert refused.txn_id == accepted.txn_id
            assert accepted.at - refused.at >= 1.95
            assert accepted.content["body"] == "echo: hello"
            await finish(plane, caplog)


async def test_send_retry_reuses_the_transaction_id(
        fake: FakeMatrix, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    dm = fake.room(ALICE)
    with trio.fail_after(30):
        async with open_channel_plane(tmp_path, [settings_for(fake)],
                                      [ChatWiring("matrix", dm)]) as plane:
            await fake.wait_ready()
            fake.lose_send_answers(1)  # posted, but the answer is lost: we must retry
            fake.say(dm, ALICE, "hello")
            await wait_delivered(plane, 1)
            assert [s.status for s in fake.sends] == [502, 200]
            assert fake.sends[0].txn_id == fake.sends[1].txn_id
            assert [e["content"]["body"] for e in fake.bot_events(dm)] == ["echo: hello"]
            await finish(plane, caplog)


async def test_duplicate_event_is_dropped(fake: FakeMatrix, tmp_path: Path,
                                          caplog: pytest.LogCaptureFixture) -> None:
    dm = fake.room(ALICE)
    with trio.fail_after(30):
        async with open_channel_plane(tmp_path, [settings_for(fake)],
                                      [ChatWiring("matrix", dm)]) as plane:
            await fake.wait_ready()
            once = fake.say(dm, ALICE, "once")
            await wait_delivered(plane, 1)
            fake.repeat(dm, once)
            fake.say(dm, ALICE, "twice")
            await wait_delivered(plane, 2)
            assert [e["content"]["body"] for e in fake.bot_events(dm)] == [
                "echo: once", "echo: twice"]
            assert await received_count(plane) == 2
            await finish(plane, caplog)


async def test_overlong_reply_is_split_by_bytes(
        fake: FakeMatrix, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    dm = fake.room(ALICE)
    text = "\N{EURO SIGN}" * 8000  # 24000 UTF-8 bytes
    with trio.fail_after(30):
        async with open_channel_plane(tmp_path, [settings_for(fake)],
                                      [ChatWiring("matrix", dm)]) as plane:
            await fake.wait_ready()
            fake.say(dm, ALICE, text)
            await wait_delivered(plane, 1)
            parts = [e["content"]["body"] for e in fake.bot_events(dm)]
            assert len(parts) == 2
            assert all(len(p.encode()) <= matrix.BODY_LIMIT_BYTES for p in parts)
            assert "".join(parts) == f"echo: {text}"
            assert len({s.txn_id for s in fake.sends}) == 2
            await finish(plane, caplog)


async def test_invites_are_joined_only_when_configured(
        fake: FakeMatrix, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    dm = fake.room(ALICE)
    invited = fake.room(ALICE, BOB, with_bot=False)
    with trio.fail_after(40):
        async with open_channel_plane(tmp_path, [settings_for(fake)],
                                      [ChatWiring("matrix", dm)]) as plane:
            await fake.wait_ready()
            fake.invite(invited, ALICE)
            fake.say(dm, ALICE, "after the invite")
            await wait_delivered(plane, 1)  # so the invite was seen
            assert fake.joins == []
        async with open_channel_plane(tmp_path, [settings_for(fake, auto_join=True)],
                                      [ChatWiring("matrix", invited)]) as plane:
            fake.invite(invited, BOB)
            await fake.wait_for(lambda: fake.joins == [invited])
            fake.say(invited, ALICE, "welcome", mentions=[BOT])
            (reply,) = await fake.wait_bot_events(invited, 1)
            assert reply["content"]["body"] == "echo: welcome"
            await finish(plane, caplog)


async def test_refused_token_stays_out_of_logs_and_events(
        fake: FakeMatrix, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    wrong = "syt_d3Jvbmc_WrongTokenThatMustNotLeak_9876"
    with trio.fail_after(30):
        async with open_channel_plane(tmp_path, [settings_for(fake, wrong)]) as plane:
            async with plane.events.subscribe("channel.down", since=0) as downs:
                down = await next_event(downs)
            assert "refused" in down.reason and "M_UNKNOWN_TOKEN" in down.reason
            await finish(plane, caplog, wrong)


# -- parsing, settings, transaction ids ---------------------------------------------------

def _event(content: dict[str, Any], sender: str = ALICE) -> dict[str, Any]:
    return {"type": "m.room.message", "event_id": "$e1:fake.test", "sender": sender,
            "content": content}


def test_room_message_parsing() -> None:
    parsed = room_message(_event({"msgtype": "m.text", "body": "hi"}), BOT, "IronClaw")
    assert parsed is not None and (parsed.sender, parsed.body, parsed.thread_id,
                                   parsed.mentioned) == (ALICE, "hi", None, False)
    threaded = room_message(_event({"msgtype": "m.text", "body": "x", "m.relates_to": {
        "rel_type": "m.thread", "event_id": "$root:fake.test"}}), BOT, None)
    assert threaded is not None and threaded.thread_id == "$root:fake.test"
    reply = room_message(_event({"msgtype": "m.text",
                                 "body": f"> <{BOT}> earlier\n> more\n\nthe answer",
                                 "m.relates_to": {"m.in_reply_to": {"event_id": "$x"}}}),
                         BOT, None)
    assert reply is not None and reply.body == "the answer" and reply.mentioned
    skipped = [
        _event({"msgtype": "m.text", "body": "mine"}, sender=BOT),
        _event({"msgtype": "m.notice", "body": "another bot"}),
        # A file whose URL is not an mxc:// URI of the spec's grammar: never fetched.
        _event({"msgtype": "m.image", "body": "cat.png", "url": "https://elsewhere/y"}),
        _event({"msgtype": "m.image", "body": "cat.png", "url": "mxc://x/../y"}),
        # A dot segment for the server: the download path would climb to another of
        # the homeserver's media endpoints, asked with our token.
        _event({"msgtype": "m.image", "body": "cat.png", "url": "mxc://../config"}),
        _event({"msgtype": "m.image", "body": "cat.png", "url": "mxc://./y"}),
        _event({"msgtype": "m.text", "body": "* fixed",
                "m.relates_to": {"rel_type": "m.replace", "event_id": "$e0"}}),
        _event({}),  # redacted
        {"type": "m.room.encrypted", "event_id": "$e", "sender": ALICE, "content": {}},
        {"type": "m.room.message", "sender": ALICE, "content": {"body": "no id"}},
        None, [], "x",
    ]
    assert [room_message(e, BOT, None) for e in skipped] == [None] * len(skipped)
    image = room_message(_event({"msgtype": "m.image", "body": "look", "filename": "cat.png",
                                 "url": "mxc://x/y"}), BOT, None)
    assert image is not None and image.body == "look" and image.media is not None
    assert (image.media.server, image.media.media_id, image.media.name) == ("x", "y",
                                                                            "cat.png")


def test_mentions() -> None:
    def mentioned(content: dict[str, Any], name: str | None = "IronClaw") -> bool:
        return is_mentioned(content, BOT, name)

    assert mentioned({"body": "x", "m.mentions": {"user_ids": [BOT]}})
    assert not mentioned({"body": "IronClaw!", "m.mentions": {}})
    assert mentioned({"body": "hello ironclaw"})
    assert not mentioned({"body": "ironclaws are not us"})
    assert mentioned({"body": "x", "formatted_body":
                      f'<a href="https://matrix.to/#/{BOT}">bot</a>'})
    assert not mentioned({"body": "hello"}, None)
    assert strip_reply_fallback("no quote") == "no quote"
    assert direct_rooms_of({ALICE: ["!a:x", 3, "bad"], BOB: "!b:x"}) == {"!a:x"}


def test_check_settings_and_txn_ids() -> None:
    def problems(options: dict[str, object], token: str | None = TOKEN) -> list[str]:
        environ = {} if token is None else {"IRONCLAW_MATRIX_ACCESS_TOKEN": token}
        return matrix.check_settings(ChannelSettings("matrix", "", options, environ=environ))

    good = {"homeserver": "https://matrix.example.org", "user_id": "@bot:example.org"}
    assert problems(good) == []
    assert problems({"homeserver": "http://127.0.0.1:8008"}) == []
    assert "homeserver is required" in problems({})[0]
    assert "IRONCLAW_MATRIX_ACCESS_TOKEN" in problems(good, None)[0]
    assert "https" in problems({**good, "homeserver": "http://matrix.example.org"})[0]
    assert "user_id" in problems({**good, "user_id": "bot"})[0]
    assert "auto_join" in problems({**good, "auto_join": "maybe"})[0]
    assert matrix.txn_id("out_1#0") == matrix.txn_id("out_1#0") != matrix.txn_id("out_1#1")
    assert matrix.txn_id("out_1").replace("-", "").isalnum()
