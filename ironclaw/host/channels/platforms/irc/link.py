"""One IRC connection: connect, register, join, read, write (paced), keep alive.

:meth:`Link.run` owns the socket for the connection's whole life and raises
:class:`IrcLinkLost` when it ends (EOF, ``ERROR`` from the server, no answer to our
``PING``); it never reconnects: that is the channel supervisor's job. Three tasks share
the connection: a reader (answers ``PING`` at once, follows our nick, prefix and
channels, collects ``PRIVMSG``), a writer (the only task that writes to the socket,
pacing ordinary lines with a token bucket: IRC servers disconnect a client that floods
them) and a keepalive.

Confirmed sends. IRC never acknowledges a ``PRIVMSG``, but a server handles one
client's lines in order, so a ``PING`` written after a message is answered only after
the message was relayed or refused (``401``/``404``/...). :meth:`Link.send_confirmed`
uses that: it reports success only once that ``PONG`` is back. A message whose
connection died before that is reported as not delivered and sent again on the next
connection: at least once, with a duplicate possible only if the link died in the
round trip between the server relaying the message and its ``PONG`` reaching us.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import ssl
from collections import deque
from collections.abc import Awaitable, Callable

import attrs
import trio

from ironclaw.host.channels.base import ChannelError, DeliveryFailed
from ironclaw.runtime.ratelimit import TokenBucket

from .config import IrcConfig
from .protocol import (
    CHANNEL_PREFIXES,
    MAX_INBOUND_BYTES,
    Casemap,
    Message,
    ProtocolError,
    ctcp_action,
    decode_line,
    format_line,
    is_mention,
    parse_line,
    strip_formatting,
)

__all__ = ["IrcLinkLost", "IrcRefused", "Link", "Privmsg"]

logger = logging.getLogger(__name__)

# Capabilities we ask for when the server offers them (IRCv3 CAP negotiation).
WANTED_CAPS = frozenset({"message-tags", "server-time"})
MAX_NICK_ATTEMPTS = 6
MAX_URGENT_QUEUE = 64
MOTD_WAIT = 10.0
# Replies to a PRIVMSG that mean it was not delivered (target in params[1]).
_REFUSALS = {"401": False, "403": False, "404": True, "406": False, "407": False,
             "412": False, "413": False, "414": False, "486": False, "492": False}
_JOIN_FAILURES = frozenset({"403", "405", "437", "471", "473", "474", "475", "476", "477"})
_NICK_REFUSALS = frozenset({"432", "433", "436", "437"})


class IrcLinkLost(ChannelError):
    """The connection ended; the text is safe to log (no server-supplied content)."""


class IrcRefused(IrcLinkLost):
    """The server refused us for good (password, no usable nick): retrying soon will
    not help, though the supervisor still will, with its backoff."""


@attrs.frozen
class Privmsg:
    """A user's message, as the reader hands it to the adapter."""

    sender: str  # nick as sent
    target: str  # a channel, or our nick
    text: str
    direct: bool
    mentioned: bool
    message_id: str  # the server's msgid tag, else a synthetic one
    server_id: bool  # whether message_id came from the server (usable for dedup)


@attrs.define
class _Pending:
    """A confirmed send in flight."""

    target: str  # casefolded
    done: trio.Event = attrs.field(factory=trio.Event)
    refusal: str | None = None  # the numeric that refused it
    retryable: bool = True


class _Outbox:
    """Lines waiting for the writer: urgent ones (PONG, registration, JOIN) first."""

    def __init__(self) -> None:
        self._urgent: deque[bytes] = deque()
        self._normal: deque[bytes] = deque()
        self._lot = trio.lowlevel.ParkingLot()

    def put(self, line: bytes, *, urgent: bool = False) -> None:
        if urgent:
            if len(self._urgent) >= MAX_URGENT_QUEUE:
                return  # a server flooding us with PINGs gets fewer PONGs
            self._urgent.append(line)
        else:
            self._normal.append(line)
        self._lot.unpark()

    async def get(self) -> tuple[bytes, bool]:
        while not self._urgent and not self._normal:
            await self._lot.park()
        if self._urgent:
            return self._urgent.popleft(), True
        return self._normal.popleft(), False


async def open_stream(config: IrcConfig) -> trio.abc.Stream:
    """TCP, and TLS over it when configured (system trust store, plus ``tls_ca_file``)."""
    try:
        tcp = await trio.open_tcp_stream(config.server, config.port)
    except OSError as exc:
        raise IrcLinkLost(f"could not connect to the IRC server ({type(exc).__name__})"
                          ) from None
    if not config.tls:
        return tcp
    context = ssl.create_default_context()
    if config.tls_ca_file:
        context.load_verify_locations(cafile=config.tls_ca_file)
    if not config.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    stream = trio.SSLStream(tcp, context, server_hostname=config.server)
    try:
        await stream.do_handshake()
    except (trio.BrokenResourceError, ssl.SSLError, OSError) as exc:
        await trio.aclose_forcefully(tcp)
        # trio reports a failed handshake as BrokenResourceError caused by the SSL error.
        if isinstance(exc.__cause__ or exc, ssl.SSLCertVerificationError):
            raise IrcLinkLost("the IRC server's TLS certificate is not trusted") from None
        raise IrcLinkLost("TLS handshake with the IRC server failed") from None
    return stream


class Link:
    """One connection. ``run`` once; read the attributes while it runs."""

    def __init__(self, config: IrcConfig,
                 connect: Callable[[IrcConfig], Awaitable[trio.abc.Stream]] = open_stream
                 ) -> None:
        self.config = config
        self._connect = connect
        self.token = secrets.token_hex(4)  # names this connection in synthetic ids
        self.nick = config.nick
        self.casemap = Casemap()
        self.chantypes = CHANNEL_PREFIXES
        self.prefix_len: int | None = None  # len("nick!user@host"), once we saw it
        self._host: str | None = None
        self._user: str | None = None
        self.joined: set[str] = set()  # casefolded channel names
        self.caps: set[str] = set()
        self.ready = trio.Event()  # registered and channels joined (or given up)
        self.closed = trio.Event()
        self.lines_in = 0
        self.lines_out = 0
        self._outbox = _Outbox()
        self._bucket = TokenBucket(config.send_rate, config.send_burst)
        self._pending: dict[str, _Pending] = {}
        self._ack_counter = 0
        self._heard = trio.lowlevel.ParkingLot()
        self._welcomed = trio.Event()
        self._motd_done = trio.Event()
        self._joins_open: set[str] = set()
        self._joins_settled = trio.Event()
        self._nick_attempts = 0
        self._nick_limit: int | None = None
        self._cap_ls: set[str] = set()
        self._rejoining: set[str] = set()
        self._nursery: trio.Nursery | None = None

    # -- public --------------------------------------------------------------------------

    async def run(self, inbound: trio.MemorySendChannel[Privmsg]) -> None:
        """Connect and serve until the connection ends; always raises (or is
        cancelled). ``ready`` is set once registered and joined."""
        try:
            with trio.fail_after(self.config.connect_timeout):
                stream = await self._connect(self.config)
        except trio.TooSlowError:
            self.closed.set()
            raise IrcLinkLost("timed out connecting to the IRC server") from None
        except BaseException:
            self.closed.set()
            raise
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._write_loop, stream)
                nursery.start_soon(self._read_loop, stream, inbound)
                await self._register()
                await self._join(self.config.channels)
                self.ready.set()
                await self._keepalive()
        except BaseExceptionGroup as group:
            lost, _ = group.split(IrcLinkLost)
            if lost is not None:  # the usual ending: report it unwrapped
                raise _first(lost) from None
            raise
        finally:
            self.closed.set()
            for pending in self._pending.values():
                pending.done.set()
            # A polite goodbye when we are being stopped; harmless otherwise.
            with trio.CancelScope(shield=True), trio.move_on_after(1.0), contextlib.suppress(
                    trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                await stream.send_all(format_line("QUIT", "bye"))
            await trio.aclose_forcefully(stream)

    async def send_confirmed(self, target: str, lines: list[bytes]) -> str:
        """Write ``lines`` (paced), then wait until the server has handled them (see the
        module docstring). Returns a synthetic id for the last line."""
        if self.closed.is_set():
            raise DeliveryFailed("not connected to the IRC server", retryable=True)
        self._ack_counter += 1
        token = f"ic{self.token}{self._ack_counter}"
        pending = self._pending[token] = _Pending(self.casemap.fold(target))
        try:
            for line in lines:
                self._outbox.put(line)
            self._outbox.put(format_line("PING", token))
            await pending.done.wait()
        finally:
            del self._pending[token]
        if pending.refusal is not None:
            raise DeliveryFailed(f"the IRC server refused the message ({pending.refusal})",
                                 retryable=pending.retryable)
        if self.closed.is_set():
            raise DeliveryFailed("the IRC connection was lost before the server confirmed "
                                 "the message", retryable=True)
        return f"irc-{self.token}-{self._ack_counter}"

    # -- the three tasks -----------------------------------------------------------------

    async def _write_loop(self, stream: trio.abc.Stream) -> None:
        while True:
            line, urgent = await self._outbox.get()
            if urgent:
                self._bucket.try_acquire()  # spends one if there is one
            else:
                await self._bucket.acquire()
            try:
                await stream.send_all(line)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                raise IrcLinkLost("the IRC connection broke while sending") from None
            self.lines_out += 1

    async def _read_loop(self, stream: trio.abc.Stream,
                         inbound: trio.MemorySendChannel[Privmsg]) -> None:
        buffer = bytearray()
        overlong = False
        while True:
            try:
                data = await stream.receive_some(16384)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                raise IrcLinkLost("the IRC connection broke") from None
            if not data:
                raise IrcLinkLost("the IRC server closed the connection")
            buffer += data
            while (end := buffer.find(b"\n")) >= 0:
                raw = bytes(buffer[:end]).rstrip(b"\r")
                del buffer[:end + 1]
                if overlong:  # the tail of a line we already refused
                    overlong = False
                    continue
                if len(raw) <= MAX_INBOUND_BYTES:
                    await self._on_line(raw, inbound)
            if len(buffer) > MAX_INBOUND_BYTES:
                buffer.clear()
                overlong = True

    async def _keepalive(self) -> None:
        interval, timeout = self.config.ping_interval, self.config.ping_timeout
        regain_at = trio.current_time() + interval
        while True:
            with trio.move_on_after(interval) as idle:
                await self._heard.park()
            if trio.current_time() >= regain_at:
                regain_at = trio.current_time() + interval
                if not self.casemap.equal(self.nick, self.config.nick):
                    self._send("NICK", self.config.nick, urgent=False)  # try to get it back
            if not idle.cancelled_caught:
                continue  # traffic: the link is alive
            self._send("PING", f"keepalive{self.token}")
            with trio.move_on_after(timeout) as silent:
                await self._heard.park()
            if silent.cancelled_caught:
                raise IrcLinkLost(f"the IRC server did not answer a PING within {timeout:g} s")

    # -- registration and joins ----------------------------------------------------------

    async def _register(self) -> None:
        config = self.config
        if config.password is not None:
            self._send("PASS", config.password.reveal())
        self._send("CAP", "LS", "302")
        self._send("NICK", self.nick)
        self._send("USER", config.username, "0", "*", config.realname)
        try:
            with trio.fail_after(config.connect_timeout):
                await self._welcomed.wait()
        except trio.TooSlowError:
            raise IrcLinkLost("the IRC server did not complete registration") from None
        with trio.move_on_after(MOTD_WAIT):
            await self._motd_done.wait()

    async def _join(self, channels: tuple[str, ...]) -> None:
        if not channels:
            return
        self._joins_open = {self.casemap.fold(channel) for channel in channels}
        self._joins_settled = trio.Event()
        line: list[str] = []
        for channel in channels:  # as few JOIN lines as fit
            if line and len(",".join([*line, channel])) > 400:
                self._send("JOIN", ",".join(line))
                line = []
            line.append(channel)
        self._send("JOIN", ",".join(line))
        with trio.move_on_after(self.config.join_timeout):
            await self._joins_settled.wait()
        for channel in sorted(self._joins_open):
            logger.warning("irc: could not join %s", channel)

    def _settle_join(self, channel: str) -> None:
        self._joins_open.discard(self.casemap.fold(channel))
        if not self._joins_open:
            self._joins_settled.set()

    def _next_nick(self, refused: str, numeric: str) -> None:
        self._nick_attempts += 1
        if self._nick_attempts >= MAX_NICK_ATTEMPTS:
            raise IrcRefused("the IRC server accepted none of our nick choices")
        if numeric == "432" and len(refused) > 1:
            self._nick_limit = len(refused) - 1  # maybe too long: shorten from now on
        suffix = "_" * self._nick_attempts
        base = self.config.nick
        if self._nick_limit is not None:
            base = base[:max(1, self._nick_limit - len(suffix))]
        self.nick = base + suffix
        self._send("NICK", self.nick)

    # -- the reader's dispatch -----------------------------------------------------------

    async def _on_line(self, raw: bytes, inbound: trio.MemorySendChannel[Privmsg]) -> None:
        self.lines_in += 1
        self._heard.unpark_all()
        try:
            message = parse_line(decode_line(raw))
        except ProtocolError:
            return
        command = message.command
        if command == "PING":
            self._send("PONG", message.param(0, "x"), urgent=True)
        elif command == "PONG":
            pending = self._pending.get(message.params[-1] if message.params else "")
            if pending is not None:
                pending.done.set()
        elif command == "PRIVMSG":
            privmsg = self._privmsg(message)
            if privmsg is not None:
                await inbound.send(privmsg)
        elif command == "ERROR":
            raise IrcLinkLost("the IRC server closed the link (ERROR)")
        elif command == "CAP":
            self._on_cap(message)
        elif command == "001":
            self.nick = message.param(0, self.nick)
            self._welcomed.set()
        elif command == "005":
            self._on_isupport(message.params[1:-1])
        elif command in ("376", "422"):
            self._motd_done.set()
        elif command in _NICK_REFUSALS and not self._welcomed.is_set():
            self._next_nick(message.param(1, self.nick), command)
        elif command == "464":
            raise IrcRefused("the IRC server refused our password")
        elif command in ("465", "466"):
            raise IrcRefused("the IRC server has banned us")
        else:
            self._on_state(message)

    def _on_state(self, message: Message) -> None:
        """Follow what the server tells us about ourselves and our channels."""
        command, fold = message.command, self.casemap.fold
        ours = message.nick is not None and fold(message.nick) == fold(self.nick)
        if command == "JOIN" and ours:
            channel = message.param(0)
            self.joined.add(fold(channel))
            self._rejoining.discard(fold(channel))
            self._learn_prefix(message.prefix)
            self._settle_join(channel)
        elif command in _JOIN_FAILURES and fold(message.param(1)) in self._joins_open:
            self._settle_join(message.param(1))
        elif command == "NICK" and ours:
            self.nick = message.param(0, self.nick)
            if self._user is not None and self._host is not None:
                self.prefix_len = len(f"{self.nick}!{self._user}@{self._host}".encode())
        elif command == "396" and len(message.params) >= 2:  # our displayed host changed
            self._host = message.params[1]
            if self._user is not None:
                self.prefix_len = len(f"{self.nick}!{self._user}@{self._host}".encode())
        elif command in ("PART", "KICK"):
            kicked = message.param(1) if command == "KICK" else message.nick
            if kicked is not None and fold(kicked) == fold(self.nick):
                channel = message.param(0)
                self.joined.discard(fold(channel))
                if command == "KICK":
                    self._rejoin_later(channel)
        elif command in _REFUSALS and len(message.params) >= 2:
            target = fold(message.params[1])
            for pending in self._pending.values():
                if pending.target == target and pending.refusal is None:
                    pending.refusal = command
                    pending.retryable = _REFUSALS[command]

    def _privmsg(self, message: Message) -> Privmsg | None:
        sender = message.nick
        if sender is None or len(message.params) < 2:
            return None
        fold = self.casemap.fold
        if fold(sender) == fold(self.nick):
            return None  # our own message (echo-message, or a bouncer's replay)
        target, text = message.params[0], message.params[1]
        if text.startswith("\x01"):
            action = ctcp_action(text)
            if action is None:
                return None  # CTCP requests (VERSION, PING, DCC, ...) get no answer
            text = f"/me {action}"
        direct = fold(target) == fold(self.nick)
        if not direct and target[:1] not in self.chantypes:
            return None  # a server mask or status message: not a conversation
        msgid = message.tags.get("msgid")
        return Privmsg(
            sender=sender, target=target, text=strip_formatting(text), direct=direct,
            mentioned=direct or is_mention(text, (self.nick, self.config.nick),
                                           self.casemap),
            message_id=msgid or f"irc-{self.token}-in{self.lines_in}",
            server_id=bool(msgid))

    def _on_cap(self, message: Message) -> None:
        sub = message.param(1).upper()
        if sub == "LS":
            self._cap_ls.update(cap.partition("=")[0] for cap in message.params[-1].split())
            if message.param(2) == "*":
                return  # more to come
            wanted = sorted(WANTED_CAPS & self._cap_ls)
            if wanted:
                self._send("CAP", "REQ", " ".join(wanted))
            else:
                self._send("CAP", "END")
        elif sub == "ACK":
            self.caps.update(message.params[-1].split())
            self._send("CAP", "END")
        elif sub == "NAK":
            self._send("CAP", "END")

    def _on_isupport(self, tokens: tuple[str, ...]) -> None:
        for token in tokens:
            key, _, value = token.partition("=")
            if key == "CASEMAPPING" and value:
                self.casemap = Casemap.named(value)
            elif key == "CHANTYPES" and value:
                self.chantypes = value

    def _learn_prefix(self, prefix: str | None) -> None:
        if prefix and "!" in prefix and "@" in prefix:
            self._user, _, self._host = prefix.partition("!")[2].partition("@")
            self.prefix_len = len(prefix.encode())

    def _rejoin_later(self, channel: str) -> None:
        if self._nursery is None or self.casemap.fold(channel) in self._rejoining:
            return
        self._rejoining.add(self.casemap.fold(channel))

        async def rejoin() -> None:
            await trio.sleep(self.config.rejoin_delay)
            self._send("JOIN", channel)

        self._nursery.start_soon(rejoin)

    def _send(self, command: str, *params: str, urgent: bool = True) -> None:
        try:
            line = format_line(command, *params)
        except ProtocolError:  # e.g. a server PING token we cannot echo safely
            logger.debug("irc: dropped an unsendable %s", command)
            return
        self._outbox.put(line, urgent=urgent)


def _first(group: BaseExceptionGroup[IrcLinkLost]) -> IrcLinkLost:
    inner = group.exceptions[0]
    return _first(inner) if isinstance(inner, BaseExceptionGroup) else inner
