"""A minimal IRC client on Trio sockets: the human on the other side of the IRC tests.

Independent of the adapter under test (it shares no code with
``ironclaw.host.channels.platforms.irc``): it registers, joins, talks, answers PING,
can become an IRC operator and ``KILL`` a nick, and records every ``PRIVMSG`` and
``NOTICE`` it receives, with the raw line, so a test can check what the server relayed.

    async with open_irc_client(port, "alice", ["#room"]) as alice:
        await alice.say("#room", "hello")
        line = await alice.wait_for(lambda m: m.text == "echo: hello")
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence

import attrs
import trio


@attrs.frozen
class Received:
    command: str  # PRIVMSG or NOTICE
    sender: str  # nick
    target: str
    text: str
    raw: bytes  # the whole line as relayed, CR LF included
    at: float  # trio.current_time() when it arrived


def _split(line: str) -> tuple[str, str, list[str]]:
    prefix = ""
    if line.startswith("@"):
        line = line.split(" ", 1)[1]
    if line.startswith(":"):
        prefix, line = line[1:].split(" ", 1)
    if " :" in line:
        head, trailing = line.split(" :", 1)
        words = [*head.split(), trailing]
    else:
        words = line.split()
    return prefix, words[0].upper(), words[1:]


class IrcClient:
    def __init__(self, stream: trio.SocketStream, nick: str) -> None:
        self._stream = stream
        self.nick = nick
        self.received: list[Received] = []
        self.lines: list[str] = []
        self.numerics: list[tuple[str, list[str]]] = []
        self._changed = trio.lowlevel.ParkingLot()
        self._send_lock = trio.Lock()
        self.closed = False

    async def send_raw(self, line: str) -> None:
        async with self._send_lock:
            await self._stream.send_all(line.encode() + b"\r\n")

    async def say(self, target: str, text: str) -> None:
        await self.send_raw(f"PRIVMSG {target} :{text}")

    async def join(self, channel: str) -> None:
        await self.send_raw(f"JOIN {channel}")
        await self.wait_line(lambda line: " JOIN " in line and channel.lower() in line.lower()
                             and line.startswith(f":{self.nick}!"))

    async def oper(self, name: str, password: str) -> None:
        await self.send_raw(f"OPER {name} {password}")
        await self.wait_numeric("381")

    async def kill(self, nick: str, reason: str = "test") -> None:
        await self.send_raw(f"KILL {nick} :{reason}")

    async def wait_for(self, predicate: Callable[[Received], bool], *,
                       after: int = 0) -> Received:
        """The first received message (from index ``after``) matching ``predicate``."""
        while True:
            for message in self.received[after:]:
                if predicate(message):
                    return message
            if self.closed:
                raise ConnectionError(f"{self.nick}'s connection closed")
            await self._changed.park()

    async def wait_count(self, predicate: Callable[[Received], bool], count: int
                         ) -> list[Received]:
        while True:
            matching = [message for message in self.received if predicate(message)]
            if len(matching) >= count:
                return matching
            if self.closed:
                raise ConnectionError(f"{self.nick}'s connection closed")
            await self._changed.park()

    async def wait_line(self, predicate: Callable[[str], bool], *, after: int = 0) -> str:
        while True:
            for line in self.lines[after:]:
                if predicate(line):
                    return line
            if self.closed:
                raise ConnectionError(f"{self.nick}'s connection closed")
            await self._changed.park()

    async def wait_numeric(self, numeric: str) -> list[str]:
        while True:
            for seen, params in self.numerics:
                if seen == numeric:
                    return params
            if self.closed:
                raise ConnectionError(f"{self.nick}'s connection closed")
            await self._changed.park()

    async def names(self, channel: str) -> list[str]:
        """Who is in ``channel`` now, by NAMES (prefixes like @ stripped)."""
        mark = len(self.lines)
        await self.send_raw(f"NAMES {channel}")
        end = await self.wait_line(lambda line: " 366 " in line, after=mark)
        nicks: list[str] = []
        for line in self.lines[mark:self.lines.index(end, mark)]:
            _, command, params = _split(line)
            if command == "353":
                nicks += [nick.lstrip("~&@%+") for nick in params[-1].split()]
        return nicks

    async def _read(self) -> None:
        buffer = b""
        try:
            while True:
                data = await self._stream.receive_some(65536)
                if not data:
                    return
                buffer += data
                while b"\n" in buffer:
                    raw, buffer = buffer.split(b"\n", 1)
                    self._on_line(raw + b"\n")
                    self._changed.unpark_all()
                    if raw.startswith(b"PING"):
                        await self.send_raw("PONG " + raw.decode().split(" ", 1)[1].strip())
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        finally:
            self.closed = True
            self._changed.unpark_all()

    def _on_line(self, raw: bytes) -> None:
        line = raw.rstrip(b"\r\n").decode("utf-8", "replace")
        self.lines.append(line)
        prefix, command, params = _split(line)
        if command in ("PRIVMSG", "NOTICE") and "!" in prefix and len(params) >= 2:
            self.received.append(Received(command, prefix.split("!")[0], params[0],
                                          params[1], raw, trio.current_time()))
        elif command.isdigit():
            self.numerics.append((command, params))


@contextlib.asynccontextmanager
async def open_irc_client(port: int, nick: str, channels: Sequence[str] = (), *,
                          password: str | None = None) -> AsyncIterator[IrcClient]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    client = IrcClient(stream, nick)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client._read)
        if password:
            await client.send_raw(f"PASS {password}")
        await client.send_raw(f"NICK {nick}")
        await client.send_raw(f"USER {nick} 0 * :{nick} the tester")
        await client.wait_numeric("001")
        for channel in channels:
            await client.join(channel)
        try:
            yield client
        finally:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await client.send_raw("QUIT :done")
            await stream.aclose()
            nursery.cancel_scope.cancel()
