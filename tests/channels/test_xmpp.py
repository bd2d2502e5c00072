"""XMPP end to end: the real control plane, the XMPP adapter, a REAL XMPP server
(Debian's Prosody, ``tests/fakes/prosody.py``, started once for the module) and a
person on it (a minimal client of its own, ``tests/fakes/xmpp_client.py``).

Connections are cut with a TCP relay (``tests/fakes/tcp_relay.py``) between the
adapter and Prosody: the server then keeps the session hibernating (XEP-0198), holds
what arrives for it, and gives it all back when the adapter resumes.
"""

from __future__ import annotations

import logging
import secrets
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import trio

from ironclaw.contract.enums import EngageMode
from ironclaw.host.app import ControlPlaneHandles
from ironclaw.host.channels.platforms import xmpp
from ironclaw.host.channels.platforms.xmpp.protocol import (
    MAX_STANZA_BYTES,
    StreamParser,
    XmppProtocolError,
    parse_message,
)
from ironclaw.host.channels.settings import ChannelSettings
from tests.fakes.prosody import MUC_DOMAIN, PROSODY, Prosody, start_prosody
from tests.fakes.tcp_relay import open_relay
from tests.fakes.xmpp_client import Received, open_xmpp_person
from tests.support.channels import (
    ChatWiring,
    assert_secret_absent,
    open_channel_plane,
    wire,
)
from tests.support.events import next_event, published, wait_delivered

pytestmark = pytest.mark.skipif(PROSODY is None,
                                reason="prosody is not installed (apt-get install prosody)")

NICK = "ironclaw"


@pytest.fixture(scope="module")
def prosody(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prosody]:
    server = start_prosody(tmp_path_factory.mktemp("prosody"))
    try:
        yield server
    finally:
        server.stop()


class Cast:
    """A fresh bot account, a person and a room, so tests sharing the server share
    nothing."""

    def __init__(self, server: Prosody) -> None:
        tag = secrets.token_hex(4)
        self.server = server
        self.password = "pw-" + secrets.token_hex(8)
        self.bot = server.register(f"bot-{tag}", self.password)
        self.alice_password = secrets.token_hex(8)
        self.alice = server.register(f"alice-{tag}", self.alice_password)
        self.room = f"room-{tag}@{MUC_DOMAIN}"

    def settings(self, port: int | None = None, **options: Any) -> ChannelSettings:
        values: dict[str, Any] = {
            "jid": self.bot, "server": "127.0.0.1", "port": port or self.server.port,
            "tls": False, "rooms": [self.room], "nick": NICK, "ping_interval": 5,
            "ping_timeout": 5, "deliver_wait": 5, **options}
        return ChannelSettings("xmpp", "", values,
                               environ={"IRONCLAW_XMPP_PASSWORD": self.password})


@pytest.fixture
def cast(prosody: Prosody) -> Cast:
    return Cast(prosody)


@pytest.fixture(autouse=True)
def _debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)


def from_bot(cast: Cast, body: str | None = None) -> Any:
    def match(message: Received) -> bool:
        from_bot_itself = message.sender.split("/")[0] == cast.bot
        from_bot_in_room = message.sender == f"{cast.room}/{NICK}"
        return ((from_bot_itself or from_bot_in_room)
                and (body is None or message.body == body))
    return match


async def received_count(plane: ControlPlaneHandles) -> int:
    return sum(1 for e in await published(plane)
               if getattr(e, "type", None) == "message.received")


async def wait_up(plane: ControlPlaneHandles, count: int = 1) -> None:
    async with plane.events.subscribe("channel.up", since=0) as ups:
        for _ in range(count):
            await next_event(ups)


async def test_direct_chat_room_mentions_and_threads(
        cast: Cast, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with trio.fail_after(60):
        async with open_xmpp_person(cast.server.port, cast.alice, cast.alice_password
                                    ) as alice, \
                open_channel_plane(tmp_path, [cast.settings()],
                                   [ChatWiring("xmpp", cast.alice)]) as plane:
            # The default (shared) mode: one session for the room, replies still threaded.
            await wire(plane, ChatWiring("xmpp", cast.room, engage_mode=EngageMode.MENTION))
            await alice.join(cast.room, "alice")
            await wait_up(plane)
            await alice.say(cast.bot, "hello")
            (reply,) = await alice.wait_for(from_bot(cast, "echo: hello"))
            assert reply.kind == "chat" and reply.origin_id == reply.ident
            assert reply.ident is not None and reply.ident.startswith("ironclaw-")
            async with plane.events.subscribe("message.routed") as routed:
                await alice.say(cast.room, "just chatting", group=True)
                await alice.say(cast.room, "IronClaw: hi there", group=True)
                decisions = [(await next_event(routed)).decision for _ in range(2)]
            assert decisions == ["dropped", "engaged"]
            (in_room,) = await alice.wait_for(from_bot(cast, "echo: IronClaw: hi there"))
            assert in_room.kind == "groupchat"
            await alice.say(cast.room, "ironclaw, in a thread", group=True, thread="t-42")
            (threaded,) = await alice.wait_for(from_bot(cast, "echo: ironclaw, in a thread"))
            assert threaded.thread == "t-42"
            assert await received_count(plane) == 4  # each once, the dropped chatter too
            assert_secret_absent(cast.password, caplog, await published(plane))


async def test_cut_connection_and_plane_restart_resume_with_nothing_lost(
        cast: Cast, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    wiring = ChatWiring("xmpp", cast.alice)
    with trio.fail_after(90):
        async with open_xmpp_person(cast.server.port, cast.alice, cast.alice_password
                                    ) as alice, open_relay(cast.server.port, lines=False) as relay:
            settings = cast.settings(relay.port, rooms=[])
            async with open_channel_plane(tmp_path, [settings], [wiring]) as plane:
                await wait_up(plane)
                await alice.say(cast.bot, "one")
                await alice.wait_for(from_bot(cast, "echo: one"))
                # The connection dies; Prosody keeps the session hibernating and holds
                # what Alice says meanwhile for it.
                relay.hold()
                relay.cut()
                await alice.say(cast.bot, "two")
                await alice.say(cast.bot, "three")
                relay.release()
                await alice.wait_for(from_bot(cast, "echo: three"))
                await wait_up(plane, 2)
                # Stop only once the receipts are in: a reply whose acknowledgement is
                # still on its way at shutdown is sent again (at least once).
                await wait_delivered(plane, 3)
            # The plane stops without closing the stream: still resumable.
            await alice.say(cast.bot, "four while the plane is down")
            async with open_channel_plane(tmp_path, [settings], [wiring]) as plane:
                await alice.wait_for(from_bot(cast, "echo: four while the plane is down"))
                await alice.say(cast.bot, "after")  # a sentinel: repeats come before it
                await alice.wait_for(from_bot(cast, "echo: after"))
                assert await received_count(plane) == 2
                assert_secret_absent(cast.password, caplog, await published(plane))
    bodies = [m.body for m in alice.received if from_bot(cast)(m)]
    assert bodies == ["echo: one", "echo: two", "echo: three",
                      "echo: four while the plane is down", "echo: after"]
    resumed = [r for r in caplog.records if "resumed" in r.getMessage()]
    assert len(resumed) == 2  # after the cut and after the restart


async def test_starttls_with_a_trusted_certificate_and_refusal_without(
        cast: Cast, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    wiring = ChatWiring("xmpp", cast.alice)
    trusted = cast.settings(tls=True, tls_ca_file=str(cast.server.ca_file), rooms=[])
    with trio.fail_after(60):
        async with open_xmpp_person(cast.server.port, cast.alice, cast.alice_password
                                    ) as alice, \
                open_channel_plane(tmp_path / "trusted", [trusted], [wiring]) as plane:
            await wait_up(plane)
            await alice.say(cast.bot, "over tls")
            await alice.wait_for(from_bot(cast, "echo: over tls"))
            assert_secret_absent(cast.password, caplog, await published(plane))
        # The test CA is not in the system's trust store: refused, never logged in.
        async with open_channel_plane(tmp_path / "untrusted",
                                      [cast.settings(tls=True, rooms=[])]) as plane:
            async with plane.events.subscribe("channel.down", since=0) as downs:
                down = await next_event(downs)
            assert "certificate is not trusted" in down.reason


async def test_refused_password_stays_out_of_logs(cast: Cast, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    wrong = "wrong-" + secrets.token_hex(8)
    settings = ChannelSettings("xmpp", "", {**cast.settings().options},
                               environ={"IRONCLAW_XMPP_PASSWORD": wrong})
    with trio.fail_after(30):
        async with open_channel_plane(tmp_path, [settings]) as plane:
            async with plane.events.subscribe("channel.down", since=0) as downs:
                down = await next_event(downs)
            assert "refused our credentials" in down.reason
            assert_secret_absent(wrong, caplog, await published(plane))


# -- the wire format, without a server ----------------------------------------------------

def _stanza(text: str) -> ET.Element:
    parser = StreamParser()
    parser.feed(b"<stream:stream xmlns='jabber:client' "
                b"xmlns:stream='http://etherx.jabber.org/streams'>")
    (element,) = parser.feed(text.encode())
    return element


def test_parse_message_trusts_only_its_own_stanza_ids() -> None:
    me, room = "bot@x.test", "r@conf.x.test"
    rooms = {room: "bot"}
    chat = parse_message(_stanza(
        "<message from='a@x.test/phone' type='chat' id='m1'><body>hi</body>"
        "<stanza-id xmlns='urn:xmpp:sid:0' by='a@x.test' id='forged'/>"
        "<stanza-id xmlns='urn:xmpp:sid:0' by='bot@x.test' id='s1'/></message>"), me, rooms)
    assert chat is not None and (chat.chat, chat.sender, chat.dedup_id, chat.group) == (
        "a@x.test", "a@x.test", "bot@x.test#s1", False)
    group = parse_message(_stanza(
        f"<message from='{room}/alice' type='groupchat' id='g1'><body>yo</body>"
        "<thread>t</thread></message>"), me, rooms)
    assert group is not None and (group.chat, group.sender, group.thread, group.dedup_id
                                  ) == (room, f"{room}/alice", "t", f"{room}/alice/g1")
    ignored = [
        f"<message from='{room}/bot' type='groupchat'><body>echo</body></message>",
        f"<message from='{room}' type='groupchat'><body>subject</body></message>",
        "<message from='other@conf.x.test/z' type='groupchat'><body>x</body></message>",
        "<message from='a@x.test/p' type='chat'><active xmlns='x'/></message>",
        "<message from='a@x.test/p' type='error'><body>x</body></message>",
        "<message from='a@x.test/p' type='headline'><body>x</body></message>",
        "<message from='bot@x.test/other' type='chat'><body>me</body></message>",
        "<message type='chat'><body>no sender</body></message>",
    ]
    assert [parse_message(_stanza(text), me, rooms) for text in ignored] == [None] * 8


def test_stream_parser_refuses_what_xmpp_forbids() -> None:
    header = (b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
              b"xmlns:stream='http://etherx.jabber.org/streams'>")
    for hostile in (b"<!DOCTYPE x [<!ENTITY a 'aaaa'>]>", b"<!-- hi -->",
                    b"<message><?pi x?></message>", b"<a><b></a>"):
        parser = StreamParser()
        parser.feed(header)
        with pytest.raises(XmppProtocolError):
            parser.feed(hostile)
    parser = StreamParser()
    parser.feed(header)
    parser.feed(b"<message><body>")
    with pytest.raises(XmppProtocolError, match="size"):
        for _ in range(MAX_STANZA_BYTES // 1024 + 2):
            parser.feed(b"x" * 1024)
    # Too deep is relayed by servers, so not an error: an empty stand-in, still counted.
    parser = StreamParser()
    parser.feed(header)
    (stand_in,) = parser.feed(b"<message type='chat'>" + b"<a>" * 64 + b"<body>x</body>"
                              + b"</a>" * 64 + b"</message>")
    assert stand_in.tag == "{jabber:client}message" and len(stand_in) == 0
    assert parse_message(stand_in, "bot@x.test", {}) is None
    # Split anywhere, a DTD is still seen; whole stanzas come out one by one.
    parser = StreamParser()
    parser.feed(header)
    parser.feed(b"<message><body>x</body></message><")
    with pytest.raises(XmppProtocolError):
        parser.feed(b"!-- split -->")


def test_check_settings_and_stanza_ids() -> None:
    def problems(options: Mapping[str, object], password: str | None = "pw") -> list[str]:
        environ = {} if password is None else {"IRONCLAW_XMPP_PASSWORD": password}
        return xmpp.check_settings(ChannelSettings("xmpp", "", options, environ=environ))

    good = {"jid": "bot@example.org"}
    assert problems(good) == []
    assert "IRONCLAW_XMPP_PASSWORD" in problems(good, None)[0]
    assert "bare JID" in problems({"jid": "bot@example.org/res"})[0]
    assert "loopback" in problems({**good, "tls": False})[0]
    assert problems({**good, "tls": False, "server": "127.0.0.1"}) == []
    assert "room" in problems({**good, "rooms": ["not a jid"]})[0]
    assert xmpp.stanza_id("o#0") == xmpp.stanza_id("o#0") != xmpp.stanza_id("o#1")


# -- figures (long) -----------------------------------------------------------------------

@pytest.mark.long
async def test_round_trip_and_recovery_figures(cast: Cast, tmp_path: Path) -> None:
    """Reply round trip over 100 messages, p50 and p99, and the time from a server
    restart to the first answered message. Printed; run with ``-s -m long``."""
    import statistics

    wiring = ChatWiring("xmpp", cast.alice)
    with trio.fail_after(600):
        async with open_channel_plane(tmp_path, [cast.settings(rooms=[])], [wiring]) as plane:
            await wait_up(plane)
            rounds: list[float] = []
            async with open_xmpp_person(cast.server.port, cast.alice,
                                        cast.alice_password) as alice:
                for n in range(100):
                    started = time.perf_counter()
                    await alice.say(cast.bot, f"m{n}")
                    await alice.wait_for(from_bot(cast, f"echo: m{n}"))
                    rounds.append(time.perf_counter() - started)
            await trio.to_thread.run_sync(cast.server.restart)
            started = time.perf_counter()
            async with open_xmpp_person(cast.server.port, cast.alice,
                                        cast.alice_password) as alice:
                await alice.say(cast.bot, "after the restart")
                await alice.wait_for(from_bot(cast, "echo: after the restart"))
            recovery = time.perf_counter() - started
    quantiles = statistics.quantiles(rounds, n=100)
    print(f"\nxmpp/prosody round trip: p50 {quantiles[49] * 1000:.1f} ms, "
          f"p99 {quantiles[98] * 1000:.1f} ms; recovery after restart {recovery:.2f} s")
