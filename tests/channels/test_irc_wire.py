"""The IRC adapter alone (outside the control plane) against a REAL IRC server
(ngircd): flood pacing on the wire, nick collisions, TLS. The end-to-end tests through
the control plane are in ``test_irc.py``."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from ironclaw.host.channels.base import OutboundDelivery
from ironclaw.host.channels.platforms.irc.link import IrcLinkLost
from tests.fakes.irc_client import open_irc_client
from tests.fakes.ngircd import NGIRCD, open_ngircd
from tests.fakes.tcp_relay import open_relay
from tests.support.irc import (
    NICK,
    ROOM,
    Start,
    adapter_on_fixture,  # noqa: F401
    bot_in,
    from_bot,
    irc_settings,
)

pytestmark = pytest.mark.skipif(NGIRCD is None,
                                reason="ngircd is not installed (apt-get install ngircd)")


async def test_a_burst_of_twenty_lines_is_paced_and_all_arrive(
        tmp_path: Path, adapter_on: Start) -> None:
    rate, burst = 4.0, 4
    with trio.fail_after(50):
        async with open_ngircd(tmp_path) as server, open_relay(server.port) as relay, \
                open_irc_client(server.port, "alice", [ROOM]) as alice:
            adapter = (await adapter_on(irc_settings(
                relay.port, send_rate=rate, send_burst=burst))).adapter
            await bot_in(alice)
            lines = [f"line {index:02d}" for index in range(20)]
            mark = len(relay.sent)
            receipt = await adapter.deliver(OutboundDelivery(
                "burst-1", "irc", "", ROOM, None, "\n".join(lines)))
            got = await alice.wait_count(from_bot(target=ROOM), 20)
            assert [m.text for m in got] == lines and not receipt.duplicate
            # On the wire (as the relay saw our lines arrive): after the burst, no
            # faster than the rate, whatever the bucket held at the start (a lower
            # bound: a slow machine only makes it later). Every paced line counts,
            # our PINGs included; one line of slack for the first line's own delay.
            paced = [s.at for s in relay.sent[mark:]
                     if s.line.startswith((b"PRIVMSG", b"PING ic"))]
            assert len(paced) == 20 + 5  # one confirming PING per part of four lines
            for index in range(burst + 1, len(paced)):
                assert paced[index] - paced[0] >= (index - burst) / rate - 0.05
            # The server did not drop us for flooding.
            assert adapter.link is not None and not adapter.link.closed.is_set()


async def test_nick_in_use_then_regained(tmp_path: Path, adapter_on: Start) -> None:
    with trio.fail_after(30):
        async with open_ngircd(tmp_path) as server, \
                open_irc_client(server.port, "alice", [ROOM]) as alice:
            async with open_irc_client(server.port, NICK):  # someone has our nick
                running = await adapter_on(irc_settings(server.port, ping_interval=0.5))
                link = running.adapter.link
                assert link is not None and link.nick == NICK + "_"
                await bot_in(alice)
                await alice.say(ROOM, f"{NICK}_: are you the bot?")
                assert (await running.wait_received(1))[0].mentioned
                mark = len(alice.lines)
            # The squatter left: the bot takes its own nick back.
            await alice.wait_line(lambda line: line.startswith(f":{NICK}_!")
                                  and " NICK " in line, after=mark)
            assert link.nick == NICK
            await alice.say(ROOM, f"{NICK}: and now?")
            assert (await running.wait_received(2))[1].mentioned


async def test_tls_with_verification(tmp_path: Path, adapter_on: Start) -> None:
    with trio.fail_after(30):
        async with open_ngircd(tmp_path, tls=True) as server:
            assert server.tls_port is not None and server.ca_file is not None
            # Our test CA is not in the system trust store: refused, with a clear reason.
            with pytest.raises(IrcLinkLost, match="certificate is not trusted"):
                await adapter_on(irc_settings(server.tls_port, tls=True))
            # Trusted through tls_ca_file: a conversation works over TLS.
            running = await adapter_on(irc_settings(
                server.tls_port, tls=True, tls_ca_file=str(server.ca_file)))
            async with open_irc_client(server.port, "alice", [ROOM]) as alice:
                await bot_in(alice)
                await alice.say(ROOM, f"{NICK}: over tls")
                assert (await running.wait_received(1))[0].text == f"{NICK}: over tls"
                await running.adapter.deliver(
                    OutboundDelivery("tls-1", "irc", "", ROOM, None, "ok"))
                await alice.wait_for(from_bot("ok"))
