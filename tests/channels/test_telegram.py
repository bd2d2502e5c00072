"""Telegram end to end: the real control plane, the Telegram adapter, a fake Bot API
on loopback that speaks the real wire protocol (``tests/fakes/telegram.py``)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trio

from ironclaw.contract.enums import EngageMode, SessionMode
from ironclaw.host.app import ControlPlaneHandles
from ironclaw.host.channels.platforms import telegram
from ironclaw.host.channels.platforms._http import PlatformUnreachable, request
from ironclaw.host.channels.platforms.telegram import BotIdentity, parse_message
from ironclaw.host.channels.settings import ChannelSettings
from tests.fakes.telegram import BOT, TOKEN, FakeTelegram, open_fake_telegram
from tests.support.channels import (
    ChatWiring,
    assert_secret_absent,
    open_channel_plane,
    wire,
)
from tests.support.events import next_event, published, routed_decisions, wait_delivered

ALICE = {"id": 42, "is_bot": False, "first_name": "Alice", "username": "alice"}
BOB = {"id": 43, "is_bot": False, "first_name": "Bob"}
GROUP_ID = -1001234567890
IDENTITY = BotIdentity(BOT["id"], BOT["username"])


def settings_for(fake: FakeTelegram, token: str = TOKEN) -> ChannelSettings:
    return ChannelSettings("telegram", "", {"api_base": fake.base_url, "poll_timeout_s": 5},
                           environ={"IRONCLAW_TELEGRAM_TOKEN": token})


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with open_fake_telegram() as fake:
        yield fake


@pytest.fixture(autouse=True)
def _debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    # Everything, httpx's request lines (INFO, with the URL) included.
    caplog.set_level(logging.DEBUG)


async def finish(plane: ControlPlaneHandles, caplog: pytest.LogCaptureFixture,
                 token: str = TOKEN) -> None:
    assert_secret_absent(token, caplog, await published(plane))


# -- end to end ---------------------------------------------------------------------------

async def test_private_chat_conversation(fake: FakeTelegram, tmp_path: Path,
                                         caplog: pytest.LogCaptureFixture) -> None:
    chat = fake.private_chat(ALICE)
    # Mention mode: a private chat answers anyway, because every message there is
    # addressed to the bot.
    wiring = ChatWiring("telegram", str(chat["id"]), engage_mode=EngageMode.MENTION)
    with trio.fail_after(30):
        async with open_channel_plane(tmp_path, [settings_for(fake)], [wiring]) as plane:
            fake.message(chat, ALICE, "hello")
            (sent,) = await fake.wait_sent(1)
            assert (sent.chat_id, sent.text, sent.message_thread_id) == (
                ALICE["id"], "echo: hello", None)
            assert fake.polls[0].allowed_updates == ["message"]
            await finish(plane, caplog)


async def test_forum_topic_is_a_thread(fake: FakeTelegram, tmp_path: Path,
                                       caplog: pytest.LogCaptureFixture) -> None:
    group = fake.group(GROUP_ID, "Team", forum=True)
    topic = fake.create_topic(group, "ops")
    with trio.fail_after(30):
        async with open_channel_plane(tmp_path, [settings_for(fake)]) as plane:
            await wire(plane, ChatWiring("telegram", str(GROUP_ID),
                                          session_mode=SessionMode.PER_THREAD))
            fake.message(group, ALICE, "status?", topic=topic)
            (sent,) = await fake.wait_sent(1)
            assert (sent.chat_id, sent.message_thread_id, sent.text) == (
                GROUP_ID, topic["message_id"], "echo: status?")
            await finish(plane, caplog)


async def test_group_mention_engages_and_chatter_does_not(
        fake: FakeTelegram, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    group = fake.group(GROUP_ID, "Team", forum=True)
    bot_topic = fake.create_topic(group, "made by the bot")
    wiring = ChatWiring("telegram", str(GROUP_ID), engage_mode=EngageMode.MENTION)
    with trio.fail_after(40):
        async with open_channel_plane(tmp_path, [settings_for(fake)], [wiring]) as plane:
            async with plane.events.subscribe("message.routed") as routed:
                fake.message(group, BOB, "just chatting")
                # Every message in a topic the bot created "replies" to the bot's
                # creation notice: that is not a mention either.
                fake.message(group, BOB, "more chatter", topic=bot_topic)
                fake.message(group, ALICE, "what time is it?", mention=True)
                assert await routed_decisions(routed, 3) == ["dropped", "dropped", "engaged"]
                (first,) = await fake.wait_sent(1)
                assert first.text == f"echo: @{BOT['username']} what time is it?"

                # A reply to one of the bot's messages is a mention.
                fake.message(group, BOB, "thanks", reply_to=fake.bot_message(GROUP_ID,
                                                                             first.message_id))
                assert await routed_decisions(routed, 1) == ["engaged"]
                await fake.wait_sent(2)
            assert [s.text for s in fake.sent] == [first.text, "echo: thanks"]
            await finish(plane, caplog)


async def test_connection_cut_mid_poll_loses_and_repeats_nothing(
        fake: FakeTelegram, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    chat = fake.private_chat(ALICE)
    with trio.fail_after(40):
        async with open_channel_plane(tmp_path, [settings_for(fake)],
                                      [ChatWiring("telegram", str(chat["id"]))]) as plane:
            async with plane.events.subscribe("channel.*") as channel_events:
                fake.message(chat, ALICE, "one")
                await wait_delivered(plane, 1)
                # Cut while a long poll is open, and queue a message while we are away.
                await fake.wait_for(lambda: fake.polls_waiting > 0)
                await fake.cut()
                fake.message(chat, ALICE, "two")
                await fake.wait_sent(2)
                # A front end answering 502 to the poll after "three": down, up, on.
                fake.fail_polls(1)
                fake.message(chat, ALICE, "three")
                await fake.wait_sent(3)
                fake.message(chat, ALICE, "four")
                await fake.wait_sent(4)
                seen: list[str] = []
                while seen.count("channel.up") < 2:  # subscribed after the first up
                    seen.append((await next_event(channel_events)).type)
            assert [s.text for s in fake.sent] == [
                "echo: one", "echo: two", "echo: three", "echo: four"]
            assert seen.count("channel.down") == 2
            assert [p.status for p in fake.polls].count(502) == 1
            assert fake.server is not None and fake.server.restarts == 1
            await finish(plane, caplog)


async def test_restart_resumes_from_the_persisted_offset(
        fake: FakeTelegram, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    chat = fake.private_chat(ALICE)
    wiring = ChatWiring("telegram", str(chat["id"]))
    with trio.fail_after(40):
        async with open_channel_plane(tmp_path, [settings_for(fake)], [wiring]) as plane:
            # Stop while the reply is on its way: Telegram has it, we do not know yet.
            fake.send_delay = 0.5
            first = fake.message(chat, ALICE, "before the restart")
            first_update = fake.update_ids[first["message_id"]]
            await fake.wait_for(lambda: fake.confirmed_below == first_update + 1)
            await fake.wait_sent(1)
            await finish(plane, caplog)
        fake.send_delay = 0.0
        # Telegram forgets nothing it was not told to: make it hold the handled update
        # again, as if the confirming poll never reached it, plus a new message.
        fake.pending.insert(0, {"update_id": first_update, "message": first})
        fake.message(chat, ALICE, "while we were down")
        polls_before = len(fake.polls)
        async with open_channel_plane(tmp_path, [settings_for(fake)], [wiring]) as plane:
            await fake.wait_sent(2)
            # The first poll of the new plane asks from the persisted offset.
            assert fake.polls[polls_before].offset == first_update + 1
            assert [s.text for s in fake.sent] == ["echo: before the restart",
                                                   "echo: while we were down"]
            await finish(plane, caplog)


async def test_rate_limits_are_honoured_on_both_sides(
        fake: FakeTelegram, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    chat = fake.private_chat(ALICE)
    with trio.fail_after(40):
        async with open_channel_plane(tmp_path, [settings_for(fake)],
                                      [ChatWiring("telegram", str(chat["id"]))]) as plane:
            await fake.wait_for(lambda: fake.polls_waiting > 0)
            # Receive side: a 429 on getUpdates makes the adapter sleep, not spin.
            fake.rate_limit_polls(1, retry_after=1)
            await fake.cut()  # end the open poll so the next one meets the 429
            await fake.wait_for(lambda: any(p.status == 429 for p in fake.polls)
                                and fake.polls[-1].status == 200)
            limited = next(i for i, p in enumerate(fake.polls) if p.status == 429)
            assert fake.polls[limited + 1].at - fake.polls[limited].at >= 0.95

            # Send side: 429 with retry_after 2 (over the pipeline's 1 s first backoff).
            fake.rate_limit_sends(1, retry_after=2)
            asked = trio.current_time()
            fake.message(chat, ALICE, "hello")
            (sent,) = await fake.wait_sent(1)
            assert sent.text == "echo: hello"
            assert fake.send_attempts == 2
            assert sent.at - asked >= 1.95
            await finish(plane, caplog)


async def test_duplicate_message_is_dropped(fake: FakeTelegram, tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    chat = fake.private_chat(ALICE)
    with trio.fail_after(30):
        async with open_channel_plane(tmp_path, [settings_for(fake)],
                                      [ChatWiring("telegram", str(chat["id"]))]) as plane:
            async with plane.events.subscribe("message.received") as received:
                first = fake.message(chat, ALICE, "once")
                await fake.wait_sent(1)
                duplicate = fake.redeliver(first)
                fake.message(chat, ALICE, "twice")
                await fake.wait_sent(2)
                assert [s.text for s in fake.sent] == ["echo: once", "echo: twice"]
                # Two messages reached the router, not three...
                assert len([received.receive_nowait() for _ in range(2)]) == 2
                with pytest.raises(trio.WouldBlock):
                    received.receive_nowait()
            # ...and the offset moved past the duplicate all the same.
            await fake.wait_for(lambda: fake.confirmed_below > duplicate + 1)
            await finish(plane, caplog)


async def test_overlong_reply_is_split_in_utf16_units(
        fake: FakeTelegram, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    chat = fake.private_chat(ALICE)
    text = "\N{GRINNING FACE}" * 2048  # 4096 UTF-16 units: the echo needs two messages
    with trio.fail_after(30):
        async with open_channel_plane(tmp_path, [settings_for(fake)],
                                      [ChatWiring("telegram", str(chat["id"]))]) as plane:
            fake.message(chat, ALICE, text)
            await fake.wait_for(lambda: bool(fake.sent) and "".join(
                s.text for s in fake.sent) == f"echo: {text}")
            assert len(fake.sent) == 2  # the fake refuses anything over 4096 units
            await finish(plane, caplog)


async def test_refused_token_stays_out_of_logs_and_events(
        fake: FakeTelegram, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    wrong = "987654321:AAwrong-token-that-must-never-be-logged"
    # The daemon holds httpx at WARNING; an operator who lowers it to debug a problem
    # must still not see the token, which is what the adapter's own filter is for.
    caplog.set_level(logging.DEBUG, logger="httpx")
    with trio.fail_after(30):
        async with open_channel_plane(tmp_path, [settings_for(fake, wrong)]) as plane:
            async with plane.events.subscribe("channel.down", since=0) as downs:
                down = await next_event(downs)
            assert "refused" in down.reason
            await finish(plane, caplog, wrong)
            await finish(plane, caplog, TOKEN)
    # httpx did log the request, with the token redacted.
    assert any("/bot<redacted>/getMe" in r.getMessage() for r in caplog.records)


# -- parsing, settings, HTTP errors -------------------------------------------------------

async def test_http_failures_never_carry_the_url() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/big":
            return httpx.Response(200, content=b"x" * 100)
        raise httpx.ConnectError(f"cannot reach {request.url}", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        with pytest.raises(PlatformUnreachable) as caught:
            await request(http, "POST", f"https://api.telegram.org/bot{TOKEN}/getMe",
                          what="getMe", timeout_s=5)
        assert str(caught.value) == "getMe: ConnectError"
        assert caught.value.__suppress_context__  # the original is not shown either
        with pytest.raises(PlatformUnreachable, match="larger than 10 bytes"):
            await request(http, "GET", "https://example.org/big", what="big", timeout_s=5,
                          max_bytes=10)


def test_parse_private_group_and_topic_messages() -> None:
    fake = FakeTelegram()
    private = fake.private_chat(ALICE)
    event_id, event = parse_message(fake.message(private, ALICE, "hi"), IDENTITY) or ("", None)
    assert event is not None
    assert (event.direct, event.mentioned, event.platform_id, event.sender_handle,
            event.sender_display_name, event.thread_id) == (True, True, "42", "42", "Alice",
                                                           None)
    assert event_id == f"42/{event.platform_message_id}"

    group = fake.group(GROUP_ID, "Team", forum=True)

    def parsed(message: dict[str, object]) -> tuple[bool, bool, str | None]:
        result = parse_message(message, IDENTITY)
        assert result is not None
        return result[1].direct, result[1].mentioned, result[1].thread_id

    assert parsed(fake.message(group, BOB, "plain")) == (False, False, None)
    assert parsed(fake.message(group, BOB, "x", mention=True)) == (False, True, None)
    assert parsed(fake.message(group, BOB, "IronClaw, hi", text_mention=True))[1]
    assert parsed(fake.message(group, BOB, "pic", mention=True, caption=True))[1]
    upper = fake.message(group, BOB, "plain")
    upper["text"] = "hey @IronClaw_Bot"
    upper["entities"] = [{"type": "mention", "offset": 4, "length": 13}]
    assert parsed(upper)[1]
    command = fake.message(group, BOB, "plain")
    command["text"] = "\N{GRINNING FACE} /start@ironclaw_bot"  # offsets in UTF-16 units
    command["entities"] = [{"type": "bot_command", "offset": 3, "length": 19}]
    assert parsed(command)[1]
    other = fake.message(group, BOB, "plain")
    other["text"] = "@someone_else hi"
    other["entities"] = [{"type": "mention", "offset": 0, "length": 13}]
    assert not parsed(other)[1]
    topic = fake.create_topic(group, "t", by_bot=True)
    assert parsed(fake.message(group, BOB, "in topic", topic=topic)) == (
        False, False, str(topic["message_id"]))


def test_parse_skips_what_the_agent_should_not_see() -> None:
    fake = FakeTelegram()
    private = fake.private_chat(ALICE)
    own = fake.message(private, ALICE, "x")
    own["from"] = {"id": BOT["id"], "is_bot": True, "first_name": "IronClaw"}
    assert parse_message(own, IDENTITY) is None
    sticker = fake.message(private, ALICE, "x")
    del sticker["text"]
    sticker["sticker"] = {"file_id": "s"}
    assert parse_message(sticker, IDENTITY) is None
    for broken in (None, [], {"chat": {"id": "x"}, "message_id": 1},
                   {"chat": {"id": 1}, "message_id": 1, "text": "no sender"}):
        assert parse_message(broken, IDENTITY) is None
    anonymous = fake.message(fake.group(GROUP_ID, "Team"), ALICE, "as the group")
    del anonymous["from"]
    anonymous["sender_chat"] = {"id": GROUP_ID, "title": "Team", "type": "supergroup"}
    parsed = parse_message(anonymous, IDENTITY)
    assert parsed is not None and parsed[1].sender_handle == f"chat{GROUP_ID}"


def test_check_settings() -> None:
    def problems(options: dict[str, object], token: str | None = TOKEN) -> list[str]:
        environ = {} if token is None else {"IRONCLAW_TELEGRAM_TOKEN": token}
        return telegram.check_settings(ChannelSettings("telegram", "", options,
                                                       environ=environ))

    assert problems({}) == []
    assert problems({"api_base": "http://127.0.0.1:8081", "poll_timeout_s": 50}) == []
    assert "IRONCLAW_TELEGRAM_TOKEN" in problems({}, None)[0]
    bad_token = problems({}, "not-a-token")
    assert "does not look like" in bad_token[0] and "not-a-token" not in bad_token[0]
    assert "https" in problems({"api_base": "http://api.example.org"})[0]
    assert "poll_timeout_s" in problems({"poll_timeout_s": 0})[0]
