"""Discord end to end: the real control plane, the Discord adapter, a fake Discord
speaking REST v10 and the gateway on loopback (``tests/fakes/discord.py``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import trio

from ironclaw.contract.enums import EngageMode, SessionMode
from ironclaw.host.app import ControlPlaneHandles
from ironclaw.host.channels.platforms.discord import check_settings, nonce_for
from ironclaw.host.channels.settings import ChannelSettings
from tests.fakes.discord import FakeDiscord, open_fake_discord
from tests.support.channels import ChatWiring, open_channel_plane, wire
from tests.support.events import published, wait_published

TIMEOUT = 30
GENERAL = "400000000000000001"
THREADED = "400000000000000002"
QUIET = "400000000000000009"  # never wired: a sentinel to know a backlog was handled
DM = "600000000000000001"
BOT = "100000000000000001"


def settings(fake: FakeDiscord, token: str | None = None, **options: Any) -> ChannelSettings:
    return ChannelSettings("discord", options={"api_base": fake.api_base, **options},
                           environ={"IRONCLAW_DISCORD_TOKEN": token or fake.token})


def replies_to(fake: FakeDiscord, text: str, channel: str | None = None) -> list[str]:
    return [m for m in fake.posted(channel) if m == f"echo: {text}"]


async def connected(fake: FakeDiscord) -> None:
    await fake.until(lambda: fake.active is not None and fake.active.connection is not None)


async def handled_all(plane: ControlPlaneHandles, fake: FakeDiscord, routed: int) -> None:
    """Push a message to an unwired channel and wait until it is the ``routed + 1``-th
    Discord message the router saw: every dispatch before it was handled, and exactly
    ``routed`` of them were routed."""
    fake.push_message(QUIET, "sentinel")
    quiet = await plane.registry.ensure_messaging_group("discord", QUIET, "")
    event = await wait_published(plane, "message.received",
                                 lambda e: e.channel == "discord", count=routed + 1)
    assert event.messaging_group_id == quiet.id, "more messages were routed than expected"


def make_channels(fake: FakeDiscord) -> None:
    fake.add_channel(THREADED, name="threaded")
    fake.add_channel(QUIET, name="quiet")
    fake.add_dm(DM)


async def test_a_conversation_in_a_dm_a_channel_and_threads(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_fake_discord() as fake:
            make_channels(fake)
            fake.add_thread("700000000000000001", THREADED)  # in GUILD_CREATE
            async with open_channel_plane(
                    tmp_path, [settings(fake)],
                    [ChatWiring("discord", DM), ChatWiring("discord", GENERAL)]) as plane:
                await wire(plane, ChatWiring("discord", THREADED,
                                              session_mode=SessionMode.PER_THREAD))
                await connected(fake)
                fake.push_message(DM, "hello")
                await fake.until(lambda: replies_to(fake, "hello", DM) != [])
                fake.push_message(GENERAL, "hi all")
                await fake.until(lambda: replies_to(fake, "hi all", GENERAL) != [])
                # A known thread, and one created while we were not looking (looked up).
                fake.push_message("700000000000000001", "in a thread")
                fake.add_thread("700000000000000002", THREADED, announce=False)
                fake.push_message("700000000000000002", "in another")
                await fake.until(lambda: len(fake.messages) == 4)
                assert replies_to(fake, "in a thread", "700000000000000001") != []
                assert replies_to(fake, "in another", "700000000000000002") != []
                assert fake.channel_lookups == ["700000000000000002"]
                # Our own four messages came back as MESSAGE_CREATE and were ignored.
                await handled_all(plane, fake, routed=4)
                assert len(fake.messages) == 4
                received = await published(plane, "message.received")
                groups = {e.messaging_group_id for e in received if e.channel == "discord"}
                threaded = await plane.registry.ensure_messaging_group("discord", THREADED, "")
                assert threaded.id in groups  # both threads belong to their parent channel
                assert fake.identifies[0]["intents"] == 37377


async def test_a_mention_engages_and_plain_chatter_does_not(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_fake_discord() as fake:
            make_channels(fake)
            async with open_channel_plane(
                    tmp_path, [settings(fake)],
                    [ChatWiring("discord", GENERAL, engage_mode=EngageMode.MENTION)]) as plane:
                await connected(fake)
                fake.push_message(GENERAL, "just chatting")
                fake.push_message(GENERAL, f"<@{BOT}> hello")
                fake.push_message(GENERAL, f"<@!{BOT}> and again")
                fake.push_message(GENERAL, "<@500000000000000009> not you")
                await fake.until(lambda: len(fake.messages) == 2)
                await handled_all(plane, fake, routed=4)
                assert fake.posted() == [f"echo: <@{BOT}> hello", f"echo: <@!{BOT}> and again"]
                routed = [e.decision for e in await published(plane, "message.routed")]
                assert sorted(routed) == ["dropped", "dropped", "engaged", "engaged"]


async def test_a_dropped_connection_resumes_without_loss_or_repeat(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_fake_discord() as fake:
            make_channels(fake)
            async with open_channel_plane(tmp_path, [settings(fake)],
                                          [ChatWiring("discord", GENERAL)]) as plane:
                await connected(fake)
                fake.push_message(GENERAL, "one")
                await fake.until(lambda: replies_to(fake, "one") != [])
                await fake.go_offline()
                fake.push_message(GENERAL, "two")  # said while we were away
                fake.push_message(GENERAL, "three")
                fake.go_online()
                await fake.until(lambda: len(fake.messages) == 3)
                await handled_all(plane, fake, routed=3)
                for text in ("one", "two", "three"):
                    assert len(replies_to(fake, text)) == 1
                assert len(fake.identifies) == 1
                # One Resume, at the session's resume URL, from the last handled dispatch:
                # it replayed the missed messages and nothing already handled.
                (resume,) = fake.resumes
                assert resume["session_id"] == fake.active.id  # type: ignore[union-attr]
                assert fake.connections[0] == "/?v=10&encoding=json"
                assert fake.connections[-1] == "/resume?v=10&encoding=json"
                assert fake.replayed[0][-2:] == ["MESSAGE_CREATE", "MESSAGE_CREATE"]
                assert fake.replayed[0].count("MESSAGE_CREATE") <= 3  # + maybe our echo
                downs = len(await published(plane, "channel.down"))
                assert downs >= 1

                # Reconnect (op 7) is routine: resume at once, without going down.
                await fake.request_reconnect()
                await fake.until(lambda: len(fake.resumes) == 2 and fake.current is not None)
                fake.push_message(GENERAL, "four")
                await fake.until(lambda: replies_to(fake, "four") != [])
                assert len(await published(plane, "channel.down")) == downs
                assert len(fake.identifies) == 1


async def test_a_restart_resumes_the_persisted_session(tmp_path: Path) -> None:
    chats = [ChatWiring("discord", GENERAL)]
    with trio.fail_after(TIMEOUT):
        async with open_fake_discord() as fake:
            make_channels(fake)
            async with open_channel_plane(tmp_path, [settings(fake)], chats) as plane:
                await connected(fake)
                fake.push_message(GENERAL, "before")
                await wait_published(plane, "delivery.delivered")
            assert fake.client_closes[-1] == 4000  # not 1000: the session stays resumable
            fake.push_message(GENERAL, "while down")
            async with open_channel_plane(tmp_path, [settings(fake)], chats) as plane:
                await fake.until(lambda: replies_to(fake, "while down") != [])
                await handled_all(plane, fake, routed=1)
                assert len(replies_to(fake, "before")) == 1
                assert len(fake.identifies) == 1 and len(fake.resumes) == 1


async def test_a_missed_heartbeat_ack_means_a_zombie_and_a_resume(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_fake_discord() as fake:
            make_channels(fake)
            fake.heartbeat_interval_ms = 200
            async with open_channel_plane(tmp_path, [settings(fake)],
                                          [ChatWiring("discord", GENERAL)]) as plane:
                await connected(fake)
                await fake.until(lambda: len(fake.heartbeats) >= 1)
                fake.stop_acking()
                down = await wait_published(plane, "channel.down")
                assert "heartbeat" in down.reason
                await fake.until(lambda: len(fake.resumes) == 1 and fake.current is not None)
                fake.push_message(GENERAL, "still there?")
                await fake.until(lambda: replies_to(fake, "still there?") != [])
                assert len(fake.identifies) == 1
                assert 4000 in fake.client_closes


async def test_invalid_sessions_resume_or_identify_again(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_fake_discord() as fake:
            make_channels(fake)
            async with open_channel_plane(tmp_path, [settings(fake)],
                                          [ChatWiring("discord", GENERAL)]):
                await connected(fake)
                await fake.invalidate_session(resumable=True)
                await fake.until(lambda: len(fake.resumes) == 1 and fake.current is not None)
                first = fake.active
                await fake.invalidate_session(resumable=False)  # identify after 1-5 s
                await fake.until(lambda: len(fake.identifies) == 2)
                await connected(fake)
                assert fake.active is not first
                fake.push_message(GENERAL, "new session")
                await fake.until(lambda: replies_to(fake, "new session") != [])


async def test_rate_limits_are_honoured(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_fake_discord() as fake:
            make_channels(fake)
            fake.rate_limit_gateway_bot(1, retry_after=0.2)  # receiving: slept out
            async with open_channel_plane(tmp_path, [settings(fake)],
                                          [ChatWiring("discord", GENERAL)]) as plane:
                await connected(fake)
                assert fake.gateway_bot_calls == 2
                assert await published(plane, "channel.down") == []
                fake.fail_next_sends(1, retry_after=0.3)
                fake.push_message(GENERAL, "patience")
                await fake.until(lambda: replies_to(fake, "patience") != [])
                first, second = fake.send_attempts
                # The same part, with the same Discord-side idempotency key.
                assert first["nonce"] == second["nonce"] and len(first["nonce"]) <= 25
                assert first["enforce_nonce"] is True
                assert first["allowed_mentions"] == {"parse": ["users"]}
                (retrying,) = await published(plane, "delivery.retrying")
                assert "429" in retrying.reason and retrying.retry_in >= 0.3
                assert len(fake.messages) == 1


def test_settings_are_checked_without_revealing_the_token() -> None:
    good = ChannelSettings("discord", environ={"IRONCLAW_DISCORD_TOKEN": "abc.def.ghi"})
    assert check_settings(good) == []
    assert "token is not set" in check_settings(ChannelSettings("discord", environ={}))[0]
    bad = ChannelSettings("discord", options={"api_base": "http://discord.example/api",
                                              "intents": 0},
                          environ={"IRONCLAW_DISCORD_TOKEN": "Bot abc.def.ghi"})
    problems = " ".join(check_settings(bad))
    assert "api_base must use https://" in problems and "intents" in problems
    assert "'Bot ' prefix" in problems and "abc.def.ghi" not in problems


def test_nonces_are_short_stable_and_distinct() -> None:
    assert nonce_for("out_1#0") == nonce_for("out_1#0")
    assert nonce_for("out_1#0") != nonce_for("out_1#1")
    assert len(nonce_for("x" * 500)) == 25


async def test_a_duplicate_event_is_dropped(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_fake_discord() as fake:
            make_channels(fake)
            async with open_channel_plane(tmp_path, [settings(fake)],
                                          [ChatWiring("discord", GENERAL)]) as plane:
                await connected(fake)
                message = fake.push_message(GENERAL, "once")
                await fake.until(lambda: replies_to(fake, "once") != [])
                fake.redeliver(message)
                await handled_all(plane, fake, routed=1)
                assert len(replies_to(fake, "once")) == 1


async def test_an_overlong_reply_is_split(tmp_path: Path) -> None:
    text = " ".join(f"word{i:04d}" for i in range(330))  # 2,969 characters
    with trio.fail_after(TIMEOUT):
        async with open_fake_discord() as fake:
            make_channels(fake)
            async with open_channel_plane(tmp_path, [settings(fake)],
                                          [ChatWiring("discord", GENERAL)]):
                await connected(fake)
                fake.push_message(GENERAL, text)
                await fake.until(lambda: len(fake.messages) == 2)
                assert all(len(m) <= 2000 for m in fake.posted())
                assert " ".join(fake.posted(GENERAL)) == f"echo: {text}"


async def test_tokens_never_reach_logs_or_events(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    events: list[Any] = []
    with trio.fail_after(TIMEOUT):
        async with open_fake_discord() as fake:
            make_channels(fake)
            async with open_channel_plane(tmp_path / "a", [settings(fake)],
                                          [ChatWiring("discord", GENERAL)]) as plane:
                await connected(fake)
                fake.fail_next_sends(1, retry_after=0.1)
                fake.push_message(GENERAL, "hello")
                await fake.until(lambda: replies_to(fake, "hello") != [])
                events += await published(plane)
            # A token Discord refuses, over REST and then on the gateway, and a
            # privileged intent the bot may not use: each says what to do.
            async with open_channel_plane(tmp_path / "b", [settings(fake, "wrong.token")],
                                          []) as plane:
                down = await wait_published(plane, "channel.down")
                assert "refused the bot token (HTTP 401)" in down.reason
                events += await published(plane)
            fake.refuse_identify = True
            async with open_channel_plane(tmp_path / "c", [settings(fake)], []) as plane:
                down = await wait_published(plane, "channel.down")
                assert "4004" in down.reason
                events += await published(plane)
            fake.refuse_identify = False
            fake.privileged_allowed = False
            async with open_channel_plane(tmp_path / "d", [settings(fake)], []) as plane:
                down = await wait_published(plane, "channel.down")
                assert "4014" in down.reason and "MESSAGE CONTENT" in down.reason
                events += await published(plane)
    everything = caplog.text + "\n".join(repr(event) for event in events)
    assert fake.token not in everything and "wrong.token" not in everything
    assert fake.token.split(".")[1] not in everything
