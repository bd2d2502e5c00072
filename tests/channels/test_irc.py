"""IRC end to end: the real control plane, the IRC adapter, a REAL IRC server (ngircd)
and a person on it (our own minimal client, ``tests/fakes/irc_client.py``).

What "nothing lost" means on IRC, precisely: a server relays a channel message only to
those in the channel at that moment and never again, so a message said while the
agent is disconnected does not exist for it (the tests say such a message and check it
is not answered, rather than pretend otherwise). What must not be lost is everything
that did reach us, and every reply: a message the adapter read is handed to the router
even when the connection dies right after it, and a reply that comes due while the
connection is down is delivered once it is back, exactly once.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

import pytest
import trio

from ironclaw.contract.enums import EngageMode
from tests.fakes.irc_client import open_irc_client
from tests.fakes.ngircd import NGIRCD, OPER_NAME, OPER_PASSWORD, open_ngircd
from tests.fakes.tcp_relay import open_relay
from tests.support.channels import ChatWiring, open_channel_plane
from tests.support.irc import NICK, ROOM, bot_in, from_bot, irc_settings, next_event

pytestmark = pytest.mark.skipif(NGIRCD is None,
                                reason="ngircd is not installed (apt-get install ngircd)")

# -- a conversation ----------------------------------------------------------------------


async def test_conversation_mentions_direct_and_split(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    password = "srv-" + secrets.token_hex(8)
    with trio.fail_after(50):
        async with open_ngircd(tmp_path, password=password) as server, \
                open_channel_plane(tmp_path, [irc_settings(
                    server.port, environ={"IRONCLAW_IRC_PASSWORD": password})], [
                    ChatWiring("irc", ROOM, engage_mode=EngageMode.MENTION),
                    ChatWiring("irc", "alice"),
                ]) as plane, \
                open_irc_client(server.port, "alice", [ROOM], password=password) as alice:
            await bot_in(alice)
            # Chatter does not engage in mention mode; a mention does.
            await alice.say(ROOM, "just chatting, nothing for the bot")
            await alice.say(ROOM, "IronClaw: hello")
            reply = await alice.wait_for(from_bot(target=ROOM))
            assert reply.text == "echo: IronClaw: hello"
            # A private message is a direct chat; the answer goes back privately.
            await alice.say(NICK, "hi in private")
            reply = await alice.wait_for(from_bot(target="alice"))
            assert reply.text == "echo: hi in private"
            # A reply too long for one IRC line is split at a space, every line as
            # relayed within 512 bytes, nothing lost.
            words = " ".join(f"wörd{index}" for index in range(50))
            mark = len(alice.received)
            await alice.say(ROOM, f"{NICK}, {words}")
            lines = await alice.wait_count(
                lambda m: from_bot(target=ROOM)(m) and m in alice.received[mark:], 2)
            assert all(len(line.raw) <= 512 for line in lines)
            assert " ".join(line.text for line in lines) == f"echo: {NICK}, {words}"
            # Everything the bot said in the room, in order: the chatter got nothing.
            said = [m.text for m in alice.received if from_bot(target=ROOM)(m)]
            assert said[0] == "echo: IronClaw: hello" and len(said) == 3
            # The server password is in no log line and no event.
            async with plane.events.subscribe("*", since=0) as subscription:
                replayed = []
                while True:
                    try:
                        replayed.append(repr(subscription.receive_nowait()))
                    except trio.WouldBlock:
                        break
            assert replayed and password not in " ".join(replayed)
            assert password not in caplog.text


# -- connection cut mid-stream -------------------------------------------------------------


async def test_cut_mid_stream_loses_and_repeats_nothing(tmp_path: Path) -> None:
    with trio.fail_after(50):
        async with open_ngircd(tmp_path) as server, open_relay(server.port) as relay, \
                open_channel_plane(tmp_path, [irc_settings(relay.port)],
                                   [ChatWiring("irc", ROOM)]) as plane, \
                open_irc_client(server.port, "alice", [ROOM]) as alice:
            await bot_in(alice)
            await alice.say(ROOM, "one")
            await alice.wait_for(from_bot("echo: one"))
            since = plane.events.last_seq
            # The bot reads "two", then its connection ends, before it can answer.
            relay.cut_after(lambda line: b"PRIVMSG #room :two" in line)
            await alice.say(ROOM, "two")
            await next_event(plane.events, "channel.down", lambda e: True, since)
            # Its reply comes due while it is disconnected: the delivery waits, fails
            # retryably, and is retried by the pipeline.
            await next_event(plane.events, "delivery.retrying",
                             lambda e: "not connected" in e.reason, since)  # type: ignore[attr-defined]
            await alice.wait_line(lambda line: line.startswith(f":{NICK}!") and " QUIT " in line)
            await alice.say(ROOM, "said while the bot is away")  # IRC: never reaches it
            relay.release()
            await next_event(plane.events, "channel.up", lambda e: True, since)
            await alice.wait_for(from_bot("echo: two"))
            await alice.say(ROOM, "three")
            await alice.wait_for(from_bot("echo: three"))
            said = [m.text for m in alice.received if from_bot(target=ROOM)(m)]
            assert said == ["echo: one", "echo: two", "echo: three"]


async def test_server_kill_and_server_restart_reconnect(tmp_path: Path) -> None:
    with trio.fail_after(50):
        async with open_ngircd(tmp_path) as server, \
                open_channel_plane(tmp_path, [irc_settings(server.port)],
                                   [ChatWiring("irc", ROOM)]) as plane:
            async with open_irc_client(server.port, "alice", [ROOM]) as alice, \
                    open_irc_client(server.port, "operator") as oper:
                await bot_in(alice)
                await alice.say(ROOM, "one")
                await alice.wait_for(from_bot("echo: one"))
                since = plane.events.last_seq
                await oper.oper(OPER_NAME, OPER_PASSWORD)
                await oper.kill(NICK, "testing reconnects")
                await next_event(plane.events, "channel.down", lambda e: True, since)
                await next_event(plane.events, "channel.up", lambda e: True, since)
                await bot_in(alice)
                await alice.say(ROOM, "two")
                await alice.wait_for(from_bot("echo: two"))
                said = [m.text for m in alice.received if from_bot(target=ROOM)(m)]
                assert said == ["echo: one", "echo: two"]
            since = plane.events.last_seq
            await server.restart()  # every connection cut; the bot comes back by itself
            await next_event(plane.events, "channel.up", lambda e: True, since)
            async with open_irc_client(server.port, "bob", [ROOM]) as bob:
                await bot_in(bob)
                await bob.say(ROOM, "three")
                await bob.wait_for(from_bot("echo: three"))
                said = [m.text for m in bob.received if from_bot(target=ROOM)(m)]
                assert said == ["echo: three"]


async def test_a_frozen_path_is_detected_by_our_own_ping(tmp_path: Path) -> None:
    with trio.fail_after(40):
        async with open_ngircd(tmp_path) as server, open_relay(server.port) as relay, \
                open_channel_plane(tmp_path, [irc_settings(
                    relay.port, ping_interval=0.5, ping_timeout=0.5)],
                    [ChatWiring("irc", ROOM)]) as plane, \
                open_irc_client(server.port, "alice", [ROOM]) as alice:
            await bot_in(alice)
            since = plane.events.last_seq
            relay.freeze()  # no byte moves, no connection closes
            down = await next_event(plane.events, "channel.down", lambda e: True, since)
            assert "did not answer a PING" in down.reason  # type: ignore[attr-defined]
            relay.thaw()
            await next_event(plane.events, "channel.up", lambda e: True, since)
            await bot_in(alice)
            await alice.say(ROOM, "still there?")
            await alice.wait_for(from_bot("echo: still there?"))


# -- figures (long) -----------------------------------------------------------------------

@pytest.mark.long
async def test_round_trip_and_recovery_figures(tmp_path: Path) -> None:
    """Reply round trip over 100 messages, p50 and p99, and the time from a server
    restart to the first answered message. Printed; run with ``-s -m long``."""
    import statistics
    import time

    with trio.fail_after(600):
        async with open_ngircd(tmp_path) as server, \
                open_channel_plane(tmp_path, [irc_settings(server.port)],
                                   [ChatWiring("irc", ROOM)]):
            async with open_irc_client(server.port, "alice", [ROOM]) as alice:
                await bot_in(alice)
                rounds: list[float] = []
                for n in range(100):
                    started = time.perf_counter()
                    await alice.say(ROOM, f"m{n}")
                    await alice.wait_for(from_bot(f"echo: m{n}"))
                    rounds.append(time.perf_counter() - started)
            await server.restart()
            started = time.perf_counter()
            async with open_irc_client(server.port, "bob", [ROOM]) as bob:
                await bot_in(bob)
                await bob.say(ROOM, "after the restart")
                await bob.wait_for(from_bot("echo: after the restart"))
            recovery = time.perf_counter() - started
    quantiles = statistics.quantiles(rounds, n=100)
    print(f"\nirc/ngircd round trip: p50 {quantiles[49] * 1000:.1f} ms, "
          f"p99 {quantiles[98] * 1000:.1f} ms; recovery after restart {recovery:.2f} s")
