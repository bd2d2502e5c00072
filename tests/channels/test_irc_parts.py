"""The IRC adapter's parts: the line protocol, pacing, settings, and the connection
logic against a scripted server on an in-memory stream (what ngircd cannot show: CAP
``message-tags`` and ``msgid`` dedup, refusals, a silent server). Against a real
server: the wire in ``test_irc_wire.py``, end to end in ``test_irc.py``."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from ironclaw.host.channels.adapters import AdapterContext, check_settings
from ironclaw.host.channels.base import (
    DeliveryFailed,
    DeliveryReceipt,
    InboundEvent,
    OutboundDelivery,
)
from ironclaw.host.channels.ledger import MemoryDeliveryLedger
from ironclaw.host.channels.platforms.irc import IrcAdapter
from ironclaw.host.channels.platforms.irc.config import IrcConfig
from ironclaw.host.channels.platforms.irc.link import IrcLinkLost, IrcRefused
from ironclaw.host.channels.platforms.irc.protocol import (
    MAX_LINE_BYTES,
    Casemap,
    ProtocolError,
    ctcp_action,
    format_line,
    is_mention,
    outgoing_lines,
    parse_line,
    payload_budget,
    strip_formatting,
)
from ironclaw.host.channels.settings import ChannelSettings, InvalidChannelSettings
from ironclaw.host.channels.state import ChannelState
from ironclaw.host.store import open_host_store
from ironclaw.runtime.ratelimit import TokenBucket

# -- the line protocol -------------------------------------------------------------------


def test_parse_line_with_tags_prefix_and_trailing() -> None:
    message = parse_line(r"@msgid=abc\:1\sx;time=2024 :alice!~a@host PRIVMSG #room :hi :) there")
    assert message.tags == {"msgid": "abc;1 x", "time": "2024"}
    assert message.prefix == "alice!~a@host" and message.nick == "alice"
    assert message.command == "PRIVMSG"
    assert message.params == ("#room", "hi :) there")
    assert parse_line(":irc.example.net 001 bot :Welcome").nick is None
    assert parse_line("PING :token with space").params == ("token with space",)
    assert parse_line("ping x").command == "PING"
    with pytest.raises(ProtocolError):
        parse_line(":prefix.only ")


def test_format_line_refuses_injection() -> None:
    assert format_line("PRIVMSG", "#room", "hello world") == b"PRIVMSG #room :hello world\r\n"
    assert format_line("PRIVMSG", "#room", ":)") == b"PRIVMSG #room ::)\r\n"
    assert format_line("NICK", "bot") == b"NICK bot\r\n"
    for bad in ("hi\r\nQUIT", "hi\nJOIN #x", "nul\x00"):
        with pytest.raises(ProtocolError):
            format_line("PRIVMSG", "#room", bad)
    with pytest.raises(ProtocolError):
        format_line("PRIVMSG", "#room :x", "text")  # a space in a middle parameter
    with pytest.raises(ProtocolError):
        format_line("PRIVMSG", "#room", "x" * 600)
    with pytest.raises(ProtocolError):
        format_line("PRIV MSG", "x")


def test_casemaps() -> None:
    assert Casemap("rfc1459").fold("Nick[a]\\~") == "nick{a}|^"
    assert Casemap("strict-rfc1459").fold("Nick[]\\~") == "nick{}|~"
    assert Casemap("ascii").fold("Nick[]\\~") == "nick[]\\~"
    assert Casemap.named("unknown-thing").name == "rfc1459"
    assert Casemap.named("ASCII").name == "ascii"


@pytest.mark.parametrize(("text", "expected"), [
    ("ironclaw: hello", True), ("IronClaw, hello", True), ("hey @ironclaw", True),
    ("what does ironclaw think?", True), ("\x02ironclaw\x02: bold", True),
    ("ironclawx is someone else", False), ("xironclaw", False), ("iron claw", False),
    ("ironclaw_: alt nick", False), ("just chatting", False),
])
def test_mentions(text: str, expected: bool) -> None:
    assert is_mention(text, ("ironclaw",), Casemap()) is expected


def test_mention_follows_the_casemap() -> None:
    assert is_mention("nick{1}: hi", ("Nick[1]",), Casemap("rfc1459"))
    assert not is_mention("nick{1}: hi", ("Nick[1]",), Casemap("ascii"))


def test_ctcp_and_formatting() -> None:
    assert ctcp_action("\x01ACTION waves\x01") == "waves"
    assert ctcp_action("\x01VERSION\x01") is None
    assert ctcp_action("plain") is None
    assert strip_formatting("\x02bold\x02 \x0304,12red\x03 \x1fu\x0f") == "bold red u"


def test_outgoing_lines_split_at_newlines_and_strip_controls() -> None:
    assert outgoing_lines("one\r\ntwo\n\n three ", 400) == ["one", "two", " three"]
    assert outgoing_lines("\x01DCC SEND x\x01 and \x00nul", 400) == ["DCC SEND x and nul"]
    assert outgoing_lines(" \n\t\n", 400) == []
    long = ("é" * 300)
    pieces = outgoing_lines(long, 101)
    assert "".join(pieces) == long and all(len(p.encode()) <= 101 for p in pieces)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=3000), target=st.sampled_from(["#room", "alice", "#" + "c" * 49]),
       prefix=st.integers(min_value=10, max_value=100))
def test_relayed_lines_never_exceed_512_bytes(text: str, target: str, prefix: int) -> None:
    budget = payload_budget(target, prefix)
    lines = outgoing_lines(text, budget)
    relay_prefix = ":" + "n" * prefix
    for line in lines:
        wire = format_line("PRIVMSG", target, line)  # never raises: nothing unsendable
        relayed = relay_prefix.encode() + b" " + wire
        assert len(relayed) <= MAX_LINE_BYTES
        assert not any(char in line for char in "\r\n\x00\x01")
    # Nothing but whitespace at the cuts and the removed controls is lost.
    sanitized = text.encode("utf-8", "replace").decode().translate(
        {0: None, 1: None, 13: None})
    assert "".join("".join(lines).split()) == "".join(sanitized.split())


async def test_token_bucket_paces_after_the_burst(autojump_clock: trio.testing.MockClock
                                                  ) -> None:
    bucket = TokenBucket(rate=2.0, burst=3)
    start = trio.current_time()
    times = []
    for _ in range(7):
        await bucket.acquire()
        times.append(trio.current_time() - start)
    assert times[:3] == [0, 0, 0]
    assert times[3:] == pytest.approx([0.5, 1.0, 1.5, 2.0])


# -- settings ----------------------------------------------------------------------------


def _settings(**options: object) -> ChannelSettings:
    base: dict[str, object] = {"server": "irc.example.net", "nick": "ironclaw",
                               "channels": ["#room"]}
    return ChannelSettings("irc", "", {**base, **options}, environ={})


def test_config_defaults_and_validation() -> None:
    config = IrcConfig.from_settings(_settings())
    assert (config.port, config.tls, config.tls_verify, config.username) == (
        6697, True, True, "ironclaw")
    assert IrcConfig.from_settings(_settings(tls=False)).port == 6667
    for bad in ({"nick": "1bad"}, {"nick": "a b"}, {"channels": ["room"]},
                {"channels": ["#a,#b"]}, {"port": 70000}, {"send_rate": 0},
                {"server": "a b"}, {"realname": "x\r\nQUIT"}):
        with pytest.raises(InvalidChannelSettings):
            IrcConfig.from_settings(_settings(**bad))


def test_password_is_a_secret_from_the_environment() -> None:
    settings_ = ChannelSettings("irc", "", {"server": "irc.example.net", "nick": "bot"},
                                environ={"IRONCLAW_IRC_PASSWORD": "hunter2"})
    config = IrcConfig.from_settings(settings_)
    assert config.password is not None and config.password.reveal() == "hunter2"
    assert "hunter2" not in repr(config)


def test_check_settings_reports_weak_transport() -> None:
    assert check_settings(_settings()) == []
    problems = check_settings(ChannelSettings(
        "irc", "", {"server": "irc.example.net", "nick": "bot", "tls": False,
                    "channels": ["#a"]}, environ={"IRONCLAW_IRC_PASSWORD": "pw"}))
    assert any("clear text" in p and "password" in p for p in problems)
    assert "pw" not in " ".join(problems)
    assert check_settings(_settings(server="127.0.0.1", tls=False)) == []
    assert any("tls_verify" in p for p in check_settings(_settings(tls_verify=False)))
    assert any("nick" in p for p in check_settings(_settings(nick="-x")))


# -- the connection, against a scripted server --------------------------------------------


class Script:
    """The server's side of an in-memory connection."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buffer = b""
        self.seen: list[str] = []

    async def line(self) -> str:
        while b"\n" not in self.buffer:
            data = await self.stream.receive_some(65536)
            if not data:
                raise EOFError
            self.buffer += data
        raw, self.buffer = self.buffer.split(b"\n", 1)
        text = raw.rstrip(b"\r").decode()
        self.seen.append(text)
        return text

    async def expect(self, predicate: Callable[[str], bool]) -> str:
        while True:
            text = await self.line()
            if predicate(text):
                return text

    async def send(self, *lines: str) -> None:
        await self.stream.send_all(b"".join(line.encode() + b"\r\n" for line in lines))

    async def welcome(self, nick: str = "bot", *, caps: str | None = None) -> None:
        if not any(line.startswith("USER") for line in self.seen):
            await self.expect(lambda line: line.startswith("USER"))
        if caps is not None:
            await self.send(f":srv CAP * LS :{caps}")
            request = await self.expect(lambda line: line.startswith("CAP"))
            if request.startswith("CAP REQ"):
                await self.send(f":srv CAP * ACK :{request.split(':', 1)[1]}")
                await self.expect(lambda line: line == "CAP END")
        await self.send(f":srv 001 {nick} :Welcome", f":srv 005 {nick} CASEMAPPING=rfc1459 "
                        ":are supported", f":srv 422 {nick} :No MOTD")

    async def join(self, nick: str = "bot", channel: str = "#room") -> None:
        await self.expect(lambda line: line.startswith("JOIN"))
        await self.send(f":{nick}!~bot@host.example JOIN {channel}")


def _config(**overrides: object) -> IrcConfig:
    values: dict[str, object] = dict(
        server="irc.example.net", port=6667, nick="bot", username="bot",
        realname="Bot", channels=("#room",), tls=False, send_rate=100.0, send_burst=50,
        ping_interval=30.0, ping_timeout=10.0, deliver_wait=5.0)
    values.update(overrides)
    return IrcConfig(**values)  # type: ignore[arg-type]


class Harness:
    """An adapter on a scripted connection, with a router that accepts everything."""

    def __init__(self, adapter: IrcAdapter, nursery: trio.Nursery,
                 events: trio.MemorySendChannel[InboundEvent]) -> None:
        self.adapter = adapter
        self.nursery = nursery
        self.events_send = events
        self.events: list[InboundEvent] = []
        self.changed = trio.lowlevel.ParkingLot()
        self.error: BaseException | None = None
        self.ended = trio.Event()
        self.up = trio.Event()

    def serve(self) -> None:
        """Start a receive loop, as the supervisor does; ``up`` is set once it is."""
        self.up = trio.Event()
        self.ended = trio.Event()

        async def run() -> None:
            try:
                await self.adapter.serve(self.events_send.clone(),
                                         task_status=_Started(self.up))  # type: ignore[arg-type]
            except Exception as exc:
                self.error = exc
            finally:
                self.ended.set()

        self.nursery.start_soon(run)

    def in_background(self, call: Callable[[], Awaitable[object]]) -> Background:
        background = Background()

        async def run() -> None:
            try:
                background.value = await call()
            except Exception as exc:
                background.error = exc
            finally:
                background.done.set()

        self.nursery.start_soon(run)
        return background

    async def route(self, receive: trio.MemoryReceiveChannel[InboundEvent]) -> None:
        async for event in receive:
            self.events.append(event)
            self.changed.unpark_all()
            assert event.accepted is not None
            event.accepted.ok(None)

    async def wait_events(self, count: int) -> list[InboundEvent]:
        while len(self.events) < count:
            await self.changed.park()
        return self.events

    async def wait_up(self) -> None:
        await self.up.wait()


class _Started:
    """Stands in for the task status the supervisor passes."""

    def __init__(self, event: trio.Event) -> None:
        self._event = event

    def started(self, value: object = None) -> None:
        self._event.set()


class Background:
    def __init__(self) -> None:
        self.done = trio.Event()
        self.value: object = None
        self.error: Exception | None = None


@contextlib.asynccontextmanager
async def scripted(tmp_path: Path, config: IrcConfig, connections: int = 1
                   ) -> AsyncIterator[tuple[Harness, list[Script]]]:
    """``connections`` in-memory connections, handed out in order to each attempt."""
    pairs = [trio.testing.memory_stream_pair() for _ in range(connections)]
    streams = [client for client, _ in pairs]

    async def connect(_: IrcConfig) -> trio.abc.Stream:
        if not streams:
            raise IrcLinkLost("no more scripted connections")
        return streams.pop(0)

    async with open_host_store(tmp_path / "host.db", secrets.token_bytes(32)) as store:
        context = AdapterContext(state=ChannelState(store, "irc", ""),
                                 ledger=MemoryDeliveryLedger(),
                                 http=None)  # type: ignore[arg-type]
        adapter = IrcAdapter(config, context, connect=connect)
        send, receive = trio.open_memory_channel[InboundEvent](0)
        async with trio.open_nursery() as nursery:
            harness = Harness(adapter, nursery, send)
            nursery.start_soon(harness.route, receive)
            yield harness, [Script(server) for _, server in pairs]
            nursery.cancel_scope.cancel()


def _delivery(text: str, target: str = "#room", outbound_id: str = "out-1"
              ) -> OutboundDelivery:
    return OutboundDelivery(outbound_id, "irc", "", target, None, text)


async def test_message_tags_msgid_drops_a_replayed_duplicate(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with scripted(tmp_path, _config()) as (harness, [script]):
            harness.serve()
            await script.welcome(caps="multi-prefix message-tags server-time=x")
            assert "CAP REQ :message-tags server-time" in script.seen
            await script.join()
            line = "@msgid=m-1 :alice!~a@h PRIVMSG #Room :bot: hello"
            # A bouncer replaying history gives the same msgid again: dropped.
            await script.send(line, line, "@msgid=m-2 :alice!~a@h PRIVMSG bot :psst")
            events = await harness.wait_events(2)
            assert [e.platform_message_id for e in events] == ["m-1", "m-2"]
            assert events[0].platform_id == "#room" and events[0].mentioned
            assert not events[0].direct
            assert events[1].direct and events[1].mentioned and events[1].platform_id == "alice"
            await script.send(":alice!~a@h PRIVMSG #room :after")
            events = await harness.wait_events(3)
            assert [e.text for e in events] == ["bot: hello", "psst", "after"]


async def test_what_is_not_a_conversation_is_ignored(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with scripted(tmp_path, _config()) as (harness, [script]):
            harness.serve()
            await script.welcome(caps="multi-prefix")
            assert "CAP END" in script.seen
            await script.join()
            await script.send(
                ":alice!~a@h PRIVMSG bot :\x01VERSION\x01",
                ":alice!~a@h NOTICE #room :bot: notices never engage",
                ":bot!~bot@host.example PRIVMSG #room :my own echo",
                ":srv.example PRIVMSG #room :from a server",
                ":alice!~a@h PRIVMSG $*.example :a server mask",
                ":alice!~a@h PRIVMSG #room :" + "x" * 9000,  # too long for a line: dropped
                ":alice!~a@h PRIVMSG #room :\x01ACTION waves at bot\x01",
            )
            events = await harness.wait_events(1)
            await script.send(":alice!~a@h PRIVMSG #room :\x02last\x02")
            events = await harness.wait_events(2)
            assert [(e.text, e.mentioned) for e in events] == [
                ("/me waves at bot", True), ("last", False)]


async def test_ping_is_answered_and_error_ends_the_link(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with scripted(tmp_path, _config()) as (harness, [script]):
            harness.serve()
            await script.welcome()
            await script.join()
            await script.send("PING :are-you-there")
            await script.expect(lambda line: line == "PONG are-you-there")
            await script.send("ERROR :Closing Link: bot (Killed (oper (secret reason)))")
            await harness.ended.wait()
            assert isinstance(harness.error, IrcLinkLost)
            assert "secret reason" not in str(harness.error)
            assert harness.adapter.link is None


async def test_nick_in_use_falls_back_and_still_hears_mentions(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with scripted(tmp_path, _config()) as (harness, [script]):
            harness.serve()
            await script.expect(lambda line: line == "NICK bot")
            await script.send(":srv 433 * bot :Nickname already in use")
            await script.expect(lambda line: line == "NICK bot_")
            await script.send(":srv 432 * bot_ :Erroneous nickname")  # say, too long
            await script.expect(lambda line: line == "NICK b__")
            await script.welcome("b__")
            await script.join("b__")
            await harness.wait_up()
            await script.send(":alice!~a@h PRIVMSG #room :b__: you there?",
                              ":alice!~a@h PRIVMSG #room :bot, and you?")
            events = await harness.wait_events(2)
            assert [e.mentioned for e in events] == [True, True]


async def test_bad_password_is_refused(tmp_path: Path) -> None:
    config = _config(password=__import__("ironclaw.host.channels.settings",
                                         fromlist=["Secret"]).Secret("wrong-pw"))
    with trio.fail_after(10):
        async with scripted(tmp_path, config) as (harness, [script]):
            harness.serve()
            assert await script.line() == "PASS wrong-pw"
            await script.send(":srv 464 * :Password incorrect", "ERROR :Access denied")
            await harness.ended.wait()
            assert isinstance(harness.error, IrcRefused)
            assert "wrong-pw" not in str(harness.error)


async def test_delivery_is_confirmed_by_a_ping_round_trip(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with scripted(tmp_path, _config()) as (harness, [script]):
            harness.serve()
            await script.welcome()
            await script.join()
            await harness.wait_up()
            sending = harness.in_background(
                lambda: harness.adapter.deliver(_delivery("one\ntwo")))
            assert await script.line() == "PRIVMSG #room one"
            assert await script.line() == "PRIVMSG #room two"
            ping = await script.line()
            assert ping.startswith("PING ic") and not sending.done.is_set()  # unconfirmed
            await script.send(f":srv PONG srv :{ping.split()[1]}")
            await sending.done.wait()
            receipt = sending.value
            assert isinstance(receipt, DeliveryReceipt)
            assert receipt.platform_message_id.startswith("irc-")
            again = await harness.adapter.deliver(_delivery("one\ntwo"))
            assert again.duplicate and again.platform_message_id == receipt.platform_message_id


@pytest.mark.parametrize(("numeric", "retryable"), [("404", True), ("401", False)])
async def test_a_refused_message_is_a_failed_delivery(tmp_path: Path, numeric: str,
                                                      retryable: bool) -> None:
    with trio.fail_after(10):
        async with scripted(tmp_path, _config()) as (harness, [script]):
            harness.serve()
            await script.welcome()
            await script.join()
            await harness.wait_up()
            sending = harness.in_background(
                lambda: harness.adapter.deliver(_delivery("hi", "#room")))
            await script.expect(lambda line: line.startswith("PRIVMSG"))
            ping = await script.expect(lambda line: line.startswith("PING"))
            await script.send(f":srv {numeric} bot #Room :Cannot send",
                              f":srv PONG srv :{ping.split()[1]}")
            await sending.done.wait()
            failure = sending.error
            assert isinstance(failure, DeliveryFailed)
            assert failure.retryable is retryable and numeric in str(failure)


async def test_a_link_lost_before_the_pong_fails_retryably_and_the_retry_resends(
        tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with scripted(tmp_path, _config(), connections=2) as (harness, scripts):
            first, second = scripts
            harness.serve()
            await first.welcome()
            await first.join()
            await harness.wait_up()
            sending = harness.in_background(
                lambda: harness.adapter.deliver(_delivery("important")))
            await first.expect(lambda line: line.startswith("PING"))
            await first.stream.aclose()  # the link dies before the PONG
            await sending.done.wait()
            assert isinstance(sending.error, DeliveryFailed) and sending.error.retryable
            await harness.ended.wait()
            harness.serve()  # what the supervisor does
            await second.welcome()
            await second.join()
            await harness.wait_up()
            retrying = harness.in_background(
                lambda: harness.adapter.deliver(_delivery("important")))
            assert await second.line() == "PRIVMSG #room important"
            ping = await second.line()
            await second.send(f":srv PONG srv :{ping.split()[1]}")
            await retrying.done.wait()
            assert isinstance(retrying.value, DeliveryReceipt)
            assert not retrying.value.duplicate


async def test_delivery_waits_for_a_connection_then_fails_retryably(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    async with scripted(tmp_path, _config(deliver_wait=7.0)) as (harness, _):
        start = trio.current_time()
        with pytest.raises(DeliveryFailed) as failed:
            await harness.adapter.deliver(_delivery("hi"))
        assert failed.value.retryable and trio.current_time() - start == pytest.approx(7.0)


async def test_unsafe_targets_and_blank_replies_are_refused(tmp_path: Path) -> None:
    async with scripted(tmp_path, _config()) as (harness, _):
        for target in ("#room :x\r\nQUIT", "a,b", ":x", "", "two words"):
            with pytest.raises(DeliveryFailed) as failed:
                await harness.adapter.deliver(_delivery("hi", target))
            assert not failed.value.retryable


async def test_a_silent_server_is_a_dead_link(tmp_path: Path,
                                              autojump_clock: trio.testing.MockClock) -> None:
    config = _config(ping_interval=20.0, ping_timeout=5.0)
    async with scripted(tmp_path, config) as (harness, [script]):
        harness.serve()
        await script.welcome()
        await script.join()
        await script.expect(lambda line: line.startswith("PING keepalive"))
        await harness.ended.wait()  # nothing answers
        assert isinstance(harness.error, IrcLinkLost)
        assert "did not answer a PING within 5 s" in str(harness.error)


async def test_kicked_means_rejoin_after_a_delay(tmp_path: Path,
                                                 autojump_clock: trio.testing.MockClock
                                                 ) -> None:
    async with scripted(tmp_path, _config(rejoin_delay=5.0)) as (harness, [script]):
        harness.serve()
        await script.welcome()
        await script.join()
        await harness.wait_up()
        link = harness.adapter.link
        assert link is not None and link.joined == {"#room"}
        await script.send(":op!~o@h KICK #room bot :out")
        kicked_at = trio.current_time()
        await script.expect(lambda line: line == "JOIN #room")
        assert trio.current_time() - kicked_at >= 5.0
