"""The per-session accept loop bounds what a sandbox can make the host do: connections
beyond the cap are not accepted at all, and accepts are paced. A session's socket
lifecycle leaves nothing behind, and never a successor's socket or registration."""

from __future__ import annotations

import contextlib
import errno
import socket
from pathlib import Path

import attrs
import pytest
import trio
import trio.testing

from ironclaw.host.sessions.doorbell import MAX_CONNECTIONS, Doorbell
from ironclaw.host.sockets.serving import accept_connections, open_session_socket


@attrs.frozen
class Route:
    session_id: str
    socket_path: Path


@attrs.define(eq=False)
class Served:
    route: Route
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    done: trio.Event = attrs.field(factory=trio.Event)
    connections: int = 0


async def test_a_session_socket_is_bound_registered_and_removed_whatever_ends_it(
        tmp_path: Path) -> None:
    session = Served(Route("s1", tmp_path / "sock" / "s1.sock"))
    sessions: dict[str, Served] = {}
    with pytest.raises(RuntimeError, match="handler failed"):
        async with open_session_socket(session, sessions) as listener:
            assert sessions == {"s1": session}
            client = await trio.open_unix_socket(str(session.route.socket_path))
            server = await listener.accept()
            await client.send_all(b"x")
            assert await server.receive_some(1) == b"x"
            await client.aclose()
            await server.aclose()
            raise RuntimeError("handler failed")
    assert sessions == {} and session.done.is_set()
    assert not session.route.socket_path.exists()


async def test_a_session_socket_spares_its_successor(tmp_path: Path) -> None:
    path = tmp_path / "sock" / "s1.sock"
    first, second = Served(Route("s1", path)), Served(Route("s1", path))
    sessions: dict[str, Served] = {}
    first_life, second_life = contextlib.AsyncExitStack(), contextlib.AsyncExitStack()
    await first_life.enter_async_context(open_session_socket(first, sessions))
    # A successor rebinds the path (the first socket is stale to it) and registers.
    await second_life.enter_async_context(open_session_socket(second, sessions))
    await first_life.aclose()
    assert first.done.is_set() and sessions == {"s1": second} and path.exists()
    await second_life.aclose()
    assert second.done.is_set() and sessions == {} and not path.exists()


async def open_listener(path: Path) -> trio.SocketListener:
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await sock.bind(str(path))
    sock.listen(256)
    return trio.SocketListener(sock)


async def test_accepts_are_paced_whatever_the_client_does(
        tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    listener = await open_listener(tmp_path / "s.sock")
    accepted_at: list[float] = []
    all_in = trio.Event()

    async def handle(stream: trio.SocketStream) -> None:
        accepted_at.append(trio.current_time())
        await stream.aclose()
        if len(accepted_at) == 30:
            all_in.set()

    # Rates whose steps are exact in binary, so virtual time adds up exactly.
    async with listener, trio.open_nursery() as nursery:
        nursery.start_soon(lambda: accept_connections(
            listener, None, max_connections=100, connections=nursery, handle=handle,
            accept_rate=8.0, accept_burst=4))
        for _ in range(30):  # a connect-and-close loop
            await (await trio.open_unix_socket(str(tmp_path / "s.sock"))).aclose()
        await all_in.wait()
        nursery.cancel_scope.cancel()
    # 4 banked, then 8 a second: the 30th accept comes 26/8 virtual seconds in.
    assert accepted_at[-1] - accepted_at[0] >= 26 / 8


async def test_over_the_cap_nothing_is_accepted_until_a_connection_ends(
        tmp_path: Path) -> None:
    listener = await open_listener(tmp_path / "s.sock")
    release = trio.Event()
    open_now = 0
    handled = 0

    async def handle(stream: trio.SocketStream) -> None:
        nonlocal open_now, handled
        open_now += 1
        handled += 1
        async with stream:
            await release.wait()
        open_now -= 1

    async with listener, trio.open_nursery() as nursery:
        nursery.start_soon(lambda: accept_connections(
            listener, None, max_connections=3, connections=nursery, handle=handle))
        clients = [await trio.open_unix_socket(str(tmp_path / "s.sock")) for _ in range(10)]
        await trio.testing.wait_all_tasks_blocked()
        assert handled == 3 and open_now == 3  # seven wait in the kernel, unaccepted
        release.set()
        with trio.fail_after(10):
            while handled < 10:  # noqa: ASYNC110 (counting, not an event)
                await trio.sleep(0.01)
        for client in clients:
            await client.aclose()
        nursery.cancel_scope.cancel()


async def test_the_doorbell_serves_at_most_its_cap(tmp_path: Path) -> None:
    (tmp_path / "sock").mkdir(mode=0o755)
    bell = Doorbell(tmp_path / "sock" / "wake.sock")
    async with trio.open_nursery() as nursery:
        await nursery.start(bell.serve)
        clients = [await trio.open_unix_socket(str(bell.path))
                   for _ in range(MAX_CONNECTIONS + 3)]
        await trio.testing.wait_all_tasks_blocked()
        assert bell.connected == MAX_CONNECTIONS
        bell.ring()
        for client in clients[:MAX_CONNECTIONS]:
            with trio.fail_after(10):
                assert await client.receive_some(1) == b"\x01"
        await clients[0].aclose()  # one leaves: the first one waiting is let in
        await trio.testing.wait_all_tasks_blocked()
        assert bell.connected == MAX_CONNECTIONS
        bell.ring()
        with trio.fail_after(10):
            assert await clients[MAX_CONNECTIONS].receive_some(1) == b"\x01"
        for client in clients[1:]:
            await client.aclose()
        nursery.cancel_scope.cancel()


async def test_descriptor_pressure_is_ridden_out_without_losing_a_slot(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        autojump_clock: trio.abc.Clock) -> None:
    """EMFILE from accept() is waited out, and the slot it held is given back: with a
    cap of one, the connection after three failed accepts is still served."""
    listener = await open_listener(tmp_path / "s.sock")
    failures = 3
    real_accept = trio.SocketListener.accept

    async def accept(self: trio.SocketListener) -> trio.SocketStream:
        nonlocal failures
        if failures:
            failures -= 1
            await trio.lowlevel.checkpoint()
            raise OSError(errno.EMFILE, "Too many open files")
        return await real_accept(self)

    monkeypatch.setattr(trio.SocketListener, "accept", accept)
    served = trio.Event()

    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.send_all(b"ok")
        served.set()

    async with listener, trio.open_nursery() as nursery:
        nursery.start_soon(lambda: accept_connections(
            listener, None, max_connections=1, connections=nursery, handle=handle))
        client = await trio.open_unix_socket(str(tmp_path / "s.sock"))
        with trio.fail_after(10):
            await served.wait()
            assert await client.receive_some(2) == b"ok"
        assert failures == 0
        await client.aclose()
        nursery.cancel_scope.cancel()
