"""Slack end to end: the real control plane, the Slack adapter, a fake Slack speaking the
Web API and Socket Mode on loopback (``tests/fakes/slack.py``)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio

from ironclaw.contract.enums import EngageMode, SessionMode
from ironclaw.host.app import ControlPlaneHandles
from ironclaw.host.channels.platforms.slack import check_settings
from ironclaw.host.channels.settings import ChannelSettings
from tests.fakes.slack import FakeSlack, open_fake_slack
from tests.support.channels import ChatWiring, open_channel_plane, wire
from tests.support.events import published, wait_published

TIMEOUT = 30


def test_settings_are_checked_without_revealing_tokens() -> None:
    tokens = {"IRONCLAW_SLACK_APP_TOKEN": "xapp-1-A-1-secretapp",
              "IRONCLAW_SLACK_BOT_TOKEN": "xoxb-1-secretbot"}
    assert check_settings(ChannelSettings("slack", environ=tokens)) == []
    swapped = {"IRONCLAW_SLACK_APP_TOKEN": tokens["IRONCLAW_SLACK_BOT_TOKEN"],
               "IRONCLAW_SLACK_BOT_TOKEN": tokens["IRONCLAW_SLACK_APP_TOKEN"]}
    problems = " ".join(check_settings(ChannelSettings(
        "slack", options={"api_base": "http://slack.example/api"}, environ=swapped)))
    assert "app_token should be an app-level token" in problems
    assert "bot_token should be a bot token" in problems
    assert "api_base must use https://" in problems
    assert "secretapp" not in problems and "secretbot" not in problems
    loopback = ChannelSettings("slack", options={"api_base": "http://127.0.0.1:9/api"},
                               environ=tokens)
    assert check_settings(loopback) == []
    missing = check_settings(ChannelSettings("slack", environ={}))
    assert any("IRONCLAW_SLACK_APP_TOKEN" in problem for problem in missing)


def settings(fake: FakeSlack, **environ: str) -> ChannelSettings:
    env = {"IRONCLAW_SLACK_APP_TOKEN": fake.app_token,
           "IRONCLAW_SLACK_BOT_TOKEN": fake.bot_token, **environ}
    return ChannelSettings("slack", options={"api_base": fake.api_base}, environ=env)


def replies_to(fake: FakeSlack, text: str) -> list[dict[str, object]]:
    return [post for post in fake.posts if post["text"] == f"echo: {text}"]


async def received(plane: ControlPlaneHandles) -> int:
    return sum(1 for event in await published(plane, "message.received")
               if event.channel == "slack")


async def test_a_conversation_in_a_dm_a_channel_and_a_thread(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_fake_slack() as fake, open_channel_plane(
                tmp_path, [settings(fake)],
                [ChatWiring("slack", "D0DIRECT"), ChatWiring("slack", "C0GENERAL")]) as plane:
            await wire(plane, ChatWiring("slack", "C0THREADS",
                                          session_mode=SessionMode.PER_THREAD))
            fake.push_message("D0DIRECT", "U0ALICE", "hello", channel_type="im")
            await fake.until(lambda: len(fake.posts) == 1)
            assert fake.posts[0] == {"channel": "D0DIRECT", "text": "echo: hello",
                                     "thread_ts": None, "ts": fake.posts[0]["ts"]}

            fake.push_message("C0GENERAL", "U0BOB", "hi all")
            await fake.until(lambda: len(fake.posts) == 2)
            assert (fake.posts[1]["channel"], fake.posts[1]["thread_ts"]) == ("C0GENERAL", None)

            parent = "1699999999.000100"
            fake.push_message("C0THREADS", "U0BOB", "in a thread", thread_ts=parent)
            await fake.until(lambda: len(fake.posts) == 3)
            assert fake.posts[2]["text"] == "echo: in a thread"
            assert (fake.posts[2]["channel"], fake.posts[2]["thread_ts"]) == (
                "C0THREADS", parent)

            # Our own three posts came back as events (with bot_id) and were ignored:
            # once everything is acknowledged, exactly the three user messages were routed.
            await fake.until(lambda: fake.settled and len(fake.acks) == 6)
            assert await received(plane) == 3
            assert len(fake.posts) == 3
            assert fake.calls.count("auth.test") == 1
            # The agent saw who spoke and where: the DM is direct, the channel is not.
            senders = {event.sender for event in await published(plane, "message.received")}
            assert senders == {"slack:U0ALICE", "slack:U0BOB"}


async def test_a_mention_engages_and_plain_chatter_does_not(tmp_path: Path) -> None:
    mention = "<@U0BOTUSER> what time is it"
    with trio.fail_after(TIMEOUT):
        async with open_fake_slack() as fake, open_channel_plane(
                tmp_path, [settings(fake)],
                [ChatWiring("slack", "C0TEAM", engage_mode=EngageMode.MENTION)]) as plane:
            fake.push_message("C0TEAM", "U0ALICE", "just chatting")
            # Slack announces a mention twice (message + app_mention), in either order.
            _, first = fake.push_message("C0TEAM", "U0ALICE", mention)
            _, second = fake.push_message("C0TEAM", "U0BOB", mention, mention_first=True)
            assert len(first) == len(second) == 2
            await fake.until(lambda: len(fake.posts) == 2)
            await fake.until(lambda: fake.settled)
            escaped = "echo: &lt;@U0BOTUSER&gt; what time is it"  # literal, not a ping
            assert [post["text"] for post in fake.posts] == [escaped, escaped]
            routed = [event.decision for event in await published(plane, "message.routed")]
            # Three user messages, each routed once: the chatter dropped, both mentions
            # engaged, the duplicate announcements dropped before routing.
            assert sorted(routed) == ["dropped", "engaged", "engaged"]
            assert await received(plane) == 3


async def test_a_cut_connection_loses_nothing_and_repeats_nothing(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_fake_slack() as fake, open_channel_plane(
                tmp_path, [settings(fake)], [ChatWiring("slack", "C0GENERAL")]) as plane:
            fake.push_message("C0GENERAL", "U0ALICE", "one")
            await fake.until(lambda: len(fake.posts) == 1 and fake.settled)

            # The adapter routes "two" and acks it; the ack is lost with the connection.
            fake.lose_next_acks(1)
            _, (two,) = fake.push_message("C0GENERAL", "U0ALICE", "two")
            await fake.until(lambda: fake.lost_acks == [two])
            fake.push_message("C0GENERAL", "U0ALICE", "three")  # while reconnecting
            await fake.until(lambda: fake.acked(two))
            await fake.until(lambda: len(fake.posts) == 3 and fake.settled)

            assert fake.sends_of(two) == 2  # redelivered on the new connection...
            for text in ("one", "two", "three"):  # ...and answered once
                assert len(replies_to(fake, text)) == 1
            assert await received(plane) == 3
            assert fake.sockets_opened == 2
            down = await wait_published(plane, "channel.down")
            assert down.channel == "slack" and "closed" in down.reason

            # Slack recycles connections with a disconnect: reconnect at once, no outage.
            await fake.disconnect("refresh_requested")
            await fake.until(lambda: fake.sockets_opened == 3 and fake.connected)
            fake.push_message("C0GENERAL", "U0ALICE", "four")
            await fake.until(lambda: len(replies_to(fake, "four")) == 1)
            assert fake.calls.count("apps.connections.open") == 3
            assert len(await published(plane, "channel.down")) == 1


async def test_a_restart_remembers_what_it_routed(tmp_path: Path) -> None:
    chat = ChatWiring("slack", "C0GENERAL")
    with trio.fail_after(TIMEOUT):
        async with open_fake_slack() as fake:
            async with open_channel_plane(tmp_path, [settings(fake)], [chat]) as plane:
                fake.push_message("C0GENERAL", "U0ALICE", "before")
                await fake.until(lambda: len(fake.posts) == 1 and fake.settled)
                # Routed and committed, but the ack never reaches Slack, and Slack is
                # unreachable until the control plane has restarted.
                fake.refuse_sockets = True
                fake.lose_next_acks(1)
                _, (routed,) = fake.push_message("C0GENERAL", "U0ALICE", "routed")
                await fake.until(lambda: fake.lost_acks == [routed])
                # Stop only once the reply's receipt is recorded: Slack has no idempotency
                # key, so a reply cut off mid-request would be sent again after a restart.
                await wait_published(plane, "delivery.delivered", lambda _: True, count=2)
            fake.push_message("C0GENERAL", "U0ALICE", "while down")
            fake.refuse_sockets = False
            async with open_channel_plane(tmp_path, [settings(fake)], [chat]) as plane:
                await fake.until(lambda: len(replies_to(fake, "while down")) == 1)
                await fake.until(lambda: fake.acked(routed) and fake.settled)
                assert fake.sends_of(routed) == 2
                assert len(replies_to(fake, "routed")) == 1  # the seen set is durable
                assert await received(plane) == 1  # only "while down" in this run


async def test_rate_limits_are_waited_out_on_both_sides(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_fake_slack() as fake:
            fake.rate_limit_next_opens(1, retry_after=0.2)
            fake.fail_next_posts(1, how="http429", retry_after=1)
            fake.fail_next_posts(1, how="ok_false", retry_after=1)
            async with open_channel_plane(tmp_path, [settings(fake)],
                                          [ChatWiring("slack", "C0GENERAL")]) as plane:
                fake.push_message("C0GENERAL", "U0ALICE", "patience")
                await fake.until(lambda: len(fake.posts) == 1)
                assert fake.posts[0]["text"] == "echo: patience"
                # Two refusals, then the same text went through once.
                assert [a["text"] for a in fake.post_attempts] == ["echo: patience"] * 3
                retrying = await published(plane, "delivery.retrying")
                assert len(retrying) == 2 and all(r.retry_in >= 1 for r in retrying)
                # Receiving: the rate-limited connections.open was waited out, not failed.
                assert fake.calls[:3] == ["auth.test", "apps.connections.open",
                                          "apps.connections.open"]
                assert await published(plane, "channel.down") == []


async def test_a_duplicate_event_is_dropped(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_fake_slack() as fake, open_channel_plane(
                tmp_path, [settings(fake)], [ChatWiring("slack", "C0GENERAL")]) as plane:
            _, (envelope,) = fake.push_message("C0GENERAL", "U0ALICE", "once")
            await fake.until(lambda: len(fake.posts) == 1 and fake.settled)
            fake.redeliver(envelope)  # Slack retries an envelope it thinks unacknowledged
            await fake.until(lambda: fake.acks.count(envelope) == 2)
            fake.push_message("C0GENERAL", "U0ALICE", "next")
            await fake.until(lambda: len(fake.posts) == 2 and fake.settled)
            assert len(replies_to(fake, "once")) == 1
            assert await received(plane) == 2


async def test_an_overlong_reply_is_split(tmp_path: Path) -> None:
    text = " ".join(f"word{i:04d}" for i in range(600))  # 5,399 characters
    with trio.fail_after(TIMEOUT):
        async with open_fake_slack() as fake, open_channel_plane(
                tmp_path, [settings(fake)], []) as plane:
            await wire(plane, ChatWiring("slack", "C0GENERAL",
                                          session_mode=SessionMode.PER_THREAD))
            fake.push_message("C0GENERAL", "U0ALICE", text, thread_ts="1699999999.000001")
            await fake.until(lambda: len(fake.posts) == 2)
            assert all(len(post["text"]) <= 4000 for post in fake.posts)
            assert all(post["thread_ts"] == "1699999999.000001" for post in fake.posts)
            joined = " ".join(post["text"] for post in fake.posts)
            assert joined == f"echo: {text}"


async def test_tokens_never_reach_logs_or_events(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with trio.fail_after(TIMEOUT):
        async with open_fake_slack() as fake:
            async with open_channel_plane(tmp_path, [settings(fake)],
                                          [ChatWiring("slack", "C0GENERAL")]) as plane:
                fake.fail_next_posts(1, how="invalid_auth")  # a refusal, not retried
                fake.push_message("C0GENERAL", "U0ALICE", "doomed")
                dead = await wait_published(plane, "delivery.dead_lettered")
                fake.push_message("C0GENERAL", "U0ALICE", "fine")
                await fake.until(lambda: len(fake.posts) == 1)
                await fake.disconnect("link_disabled")
                down = await wait_published(plane, "channel.down")
                assert "link_disabled" in down.reason
                events = await published(plane)
            # A bot token Slack refuses: the channel says why and never comes up.
            bad = settings(fake, IRONCLAW_SLACK_BOT_TOKEN="xoxb-refused-0000")
            async with open_channel_plane(tmp_path / "second", [bad], []) as second:
                refused = await wait_published(second, "channel.down")
                assert "invalid_auth" in refused.reason
                events += await published(second)
    assert len(fake.post_attempts) == 2 and dead is not None
    everything = caplog.text + "\n".join(repr(event) for event in events)
    for secret in (fake.app_token, fake.bot_token, "xoxb-refused-0000",
                   fake.app_token.split("-")[-1]):
        assert secret not in everything
