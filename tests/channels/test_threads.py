"""Threads, per channel and per session mode: a reply to a message in a thread goes back
to that thread in every mode, and names the message it answers where the platform
shows it. The real control plane, each adapter, and the platform's fake on loopback.
Against the real servers, the Synapse and prosody modules thread in the shared mode,
the email module in every mode; the delivery unit tests cover the modes themselves.

Each case posts one message in a thread and one at the top level of the same chat, so
a reply that lost its thread, or took one it should not have, is seen either way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio

from ironclaw.contract.enums import SessionMode
from ironclaw.host.channels.settings import ChannelSettings
from tests.channels.test_webhook import event, open_webhook_plane, reply_to
from tests.fakes.discord import open_fake_discord
from tests.fakes.matrix import BOT as MATRIX_BOT
from tests.fakes.matrix import TOKEN as MATRIX_TOKEN
from tests.fakes.matrix import open_fake_matrix
from tests.fakes.slack import open_fake_slack
from tests.fakes.telegram import TOKEN as TELEGRAM_TOKEN
from tests.fakes.telegram import open_fake_telegram
from tests.support.channels import ChatWiring, open_channel_plane

TIMEOUT = 30
ALICE = {"id": 42, "is_bot": False, "first_name": "Alice", "username": "alice"}

Case = Callable[[Path, SessionMode], Awaitable[None]]


async def telegram(tmp_path: Path, mode: SessionMode) -> None:
    async with open_fake_telegram() as fake:
        group = fake.group(-100777, "Team", forum=True)
        topic = fake.create_topic(group, "ops")
        settings = ChannelSettings("telegram", "", {"api_base": fake.base_url,
                                                    "poll_timeout_s": 5},
                                   environ={"IRONCLAW_TELEGRAM_TOKEN": TELEGRAM_TOKEN})
        async with open_channel_plane(tmp_path, [settings], [
                ChatWiring("telegram", "-100777", session_mode=mode)]):
            asked = fake.message(group, ALICE, "in the topic", topic=topic)
            (sent,) = await fake.wait_sent(1)
            assert (sent.text, sent.message_thread_id, sent.reply_to) == (
                "echo: in the topic", topic["message_id"], asked["message_id"])
            general = fake.message(group, ALICE, "in general")
            sent = (await fake.wait_sent(2))[1]
            assert (sent.text, sent.message_thread_id, sent.reply_to) == (
                "echo: in general", None, general["message_id"])


async def slack(tmp_path: Path, mode: SessionMode) -> None:
    async with open_fake_slack() as fake:
        settings = ChannelSettings("slack", options={"api_base": fake.api_base}, environ={
            "IRONCLAW_SLACK_APP_TOKEN": fake.app_token,
            "IRONCLAW_SLACK_BOT_TOKEN": fake.bot_token})
        async with open_channel_plane(tmp_path, [settings], [
                ChatWiring("slack", "C0THREADS", session_mode=mode)]):
            parent = "1699999999.000100"
            fake.push_message("C0THREADS", "U0BOB", "in a thread", thread_ts=parent)
            await fake.until(lambda: len(fake.posts) == 1)
            fake.push_message("C0THREADS", "U0BOB", "at the top")
            await fake.until(lambda: len(fake.posts) == 2)
            assert {(post["text"], post["thread_ts"]) for post in fake.posts} == {
                ("echo: in a thread", parent), ("echo: at the top", None)}


async def discord(tmp_path: Path, mode: SessionMode) -> None:
    parent, thread = "400000000000000002", "700000000000000001"
    async with open_fake_discord() as fake:
        fake.add_channel(parent, name="threaded")
        fake.add_thread(thread, parent)
        settings = ChannelSettings("discord", options={"api_base": fake.api_base},
                                   environ={"IRONCLAW_DISCORD_TOKEN": fake.token})
        async with open_channel_plane(tmp_path, [settings], [
                ChatWiring("discord", parent, session_mode=mode)]):
            await fake.until(lambda: fake.active is not None
                             and fake.active.connection is not None)
            fake.push_message(thread, "in a thread")
            await fake.until(lambda: len(fake.messages) == 1)
            fake.push_message(parent, "in the channel")
            await fake.until(lambda: len(fake.messages) == 2)
            assert fake.posted(thread) == ["echo: in a thread"]
            assert fake.posted(parent) == ["echo: in the channel"]


async def matrix(tmp_path: Path, mode: SessionMode) -> None:
    async with open_fake_matrix() as fake:
        room = fake.room("@alice:fake.test", "@bob:fake.test")
        settings = ChannelSettings("matrix", "", {"homeserver": fake.base_url,
                                                  "user_id": MATRIX_BOT, "poll_timeout_s": 5},
                                   environ={"IRONCLAW_MATRIX_ACCESS_TOKEN": MATRIX_TOKEN})
        async with open_channel_plane(tmp_path, [settings], [
                ChatWiring("matrix", room, session_mode=mode)]):
            await fake.wait_ready()
            root = fake.say(room, "@alice:fake.test", "a thread root")
            (first,) = await fake.wait_bot_events(room, 1)
            assert "m.relates_to" not in first["content"]
            asked = fake.say(room, "@bob:fake.test", "in the thread", thread=root["event_id"])
            second = (await fake.wait_bot_events(room, 2))[1]
            assert second["content"]["body"] == "echo: in the thread"
            assert second["content"]["m.relates_to"] == {
                "rel_type": "m.thread", "event_id": root["event_id"],
                "is_falling_back": True, "m.in_reply_to": {"event_id": asked["event_id"]}}


async def webhook(tmp_path: Path, mode: SessionMode) -> None:
    async with open_webhook_plane(tmp_path, [
            ChatWiring("webhook", "room", session_mode=mode)]) as (receiver, _, sender):
        assert (await sender.post(event("e-1", "threaded", chat="room", thread="t-9"))
                ).status_code == 200
        [threaded] = await receiver.wait_for(reply_to("echo: threaded"))
        assert (await sender.post(event("e-2", "plain", chat="room"))).status_code == 200
        [plain] = await receiver.wait_for(reply_to("echo: plain"))
        assert (threaded.body["thread"], threaded.body["in_reply_to"]) == ("t-9", "e-1")
        assert (plain.body["thread"], plain.body["in_reply_to"]) == (None, "e-2")


CASES: dict[str, Case] = {"telegram": telegram, "slack": slack, "discord": discord,
                          "matrix": matrix, "webhook": webhook}


@pytest.mark.parametrize("mode", list(SessionMode), ids=lambda mode: mode.value)
@pytest.mark.parametrize("channel", list(CASES))
async def test_a_reply_goes_back_to_its_thread(channel: str, mode: SessionMode,
                                              tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        await CASES[channel](tmp_path, mode)
