"""Shared by the IRC channel tests: settings for the adapter under test, waits on what
the person on IRC sees, and an adapter run outside the control plane."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import trio

from ironclaw.host.channels.adapters import AdapterContext, create_adapter
from ironclaw.host.channels.base import InboundEvent
from ironclaw.host.channels.ledger import MemoryDeliveryLedger
from ironclaw.host.channels.platforms.irc import IrcAdapter
from ironclaw.host.channels.platforms.irc.link import IrcLinkLost
from ironclaw.host.channels.settings import ChannelSettings
from ironclaw.host.channels.state import ChannelState
from ironclaw.host.store import open_host_store
from ironclaw.runtime import EventBus
from tests.fakes.irc_client import IrcClient, Received

NICK = "ironclaw"
ROOM = "#room"


def irc_settings(port: int, *, environ: dict[str, str] | None = None,
                 **options: object) -> ChannelSettings:
    values: dict[str, object] = {
        "server": "127.0.0.1", "port": port, "tls": False, "nick": NICK,
        "channels": [ROOM], "send_rate": 10, "send_burst": 8, "connect_timeout": 10,
        "deliver_wait": 2}
    values.update(options)
    return ChannelSettings("irc", "", values, environ=environ or {})


def from_bot(text: str | None = None, target: str | None = None
             ) -> Callable[[Received], bool]:
    def match(message: Received) -> bool:
        return (message.sender.startswith(NICK) and message.command == "PRIVMSG"
                and (text is None or message.text == text)
                and (target is None or message.target.lower() == target.lower()))
    return match


async def bot_in(client: IrcClient, channel: str = ROOM) -> None:
    """Wait until the bot is in ``channel`` (as the server sees it)."""
    mark = len(client.lines)
    if any(nick.startswith(NICK) for nick in await client.names(channel)):
        return
    await client.wait_line(lambda line: " JOIN " in line and line.startswith(f":{NICK}"),
                           after=mark)


async def next_event(bus: EventBus, kind: str, predicate: Callable[[object], bool],
                     since: int) -> object:
    async with bus.subscribe(kind, since=since) as subscription:
        async for item in subscription:
            event = getattr(item, "event", None)
            if event is not None and predicate(event):
                return event
    raise AssertionError("the event bus closed")



class Running:
    """An adapter serving outside the plane; what it hands over is accepted at once."""

    def __init__(self, adapter: IrcAdapter) -> None:
        self.adapter = adapter
        self.received: list[InboundEvent] = []
        self.up = False
        self._changed = trio.lowlevel.ParkingLot()

    async def route(self, receive: trio.MemoryReceiveChannel[InboundEvent]) -> None:
        async for event in receive:
            self.received.append(event)
            self._changed.unpark_all()
            assert event.accepted is not None
            event.accepted.ok(None)

    async def wait_received(self, count: int) -> list[InboundEvent]:
        while len(self.received) < count:
            await self._changed.park()
        return self.received


Start = Callable[[ChannelSettings], Awaitable[Running]]


@pytest.fixture(name="adapter_on")
async def adapter_on_fixture(tmp_path: Path) -> AsyncIterator[Start]:
    """``await adapter_on(settings)``: an adapter serving (outside the plane) once
    registered; what fails before that is raised."""
    async with open_host_store(tmp_path / "host.db", secrets.token_bytes(32)) as store, \
            trio.open_nursery() as nursery:

        async def start(settings: ChannelSettings) -> Running:
            context = AdapterContext(state=ChannelState(store, "irc", ""),
                                     ledger=MemoryDeliveryLedger(),
                                     http=None)  # type: ignore[arg-type]
            adapter = create_adapter(settings, context)
            assert isinstance(adapter, IrcAdapter)
            running = Running(adapter)
            send, receive = trio.open_memory_channel[InboundEvent](0)
            nursery.start_soon(running.route, receive)

            async def serve(*, task_status: trio.TaskStatus[None]) -> None:
                try:
                    await adapter.serve(send, task_status=task_status)
                except IrcLinkLost:
                    if adapter.link is None and not running.up:
                        raise  # before it was up: the test wants to see why
                    # after: the servers closing at the end of a test

            await nursery.start(serve)
            running.up = True
            return running

        yield start
        nursery.cancel_scope.cancel()


