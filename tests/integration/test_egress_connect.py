"""The egress broker's CONNECT mode: an HTTPS tunnel only to the hosts a server's
catalogue entry names *and* its agent group was granted, read fresh per tunnel.

Real parts: the group's grant in a real host.db (the gateway's ``Grants``), the broker
on a real unix socket, a real HTTPS server on loopback under a throwaway CA, and TLS
run end to end through the tunnel by the client, as an MCP server's HTTP client does.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import pytest
import trio

from ironclaw.host.egress.connect import ConnectProxy, ConnectRoute
from ironclaw.host.gateway.grants import EGRESS_HOSTS, Grants, set_grant
from ironclaw.host.registry import AgentGroup, Registry
from ironclaw.host.store import HostStore, open_host_store
from tests.fakes.https_upstream import HttpsUpstream, open_https_upstream
from tests.support.egress import GROUP, KEY, OTHER, UPSTREAM, egress_config, scratch_dir
from tests.support.events import RecordingSink


@pytest.fixture
def base() -> Iterator[Path]:
    with scratch_dir() as path:
        yield path


@attrs.define
class Tunnels:
    store: HostStore
    upstream: HttpsUpstream
    sink: RecordingSink
    socket: Path

    async def grant(self, *hosts: str) -> None:
        await self.store.call(set_grant, GROUP, EGRESS_HOSTS, list(hosts), "chg_test", 0)

    async def connect(self, target: str, method: str = "CONNECT"
                      ) -> tuple[bytes, trio.SocketStream]:
        stream = await trio.open_unix_socket(str(self.socket))
        await stream.send_all(f"{method} {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"
                              .encode())
        head = b""
        with trio.fail_after(20):
            while b"\r\n\r\n" not in head:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    break
                head += chunk
        return head.split(b"\r\n", 1)[0], stream

    async def get_through(self, host: str, path: str) -> bytes:
        status, stream = await self.connect(f"{host}:{self.upstream.port}")
        assert status.startswith(b"HTTP/1.1 200"), status
        context = ssl.create_default_context(cafile=str(self.upstream.ca_file))
        tls = trio.SSLStream(stream, context, server_hostname=host, https_compatible=True)
        await tls.send_all(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                           .encode())
        body = b""
        with trio.fail_after(20):
            while chunk := await tls.receive_some(65536):
                body += chunk
        await tls.aclose()
        return body

    def events(self) -> list[object]:
        return self.sink.of("egress.request")


@asynccontextmanager
async def open_tunnels(base: Path, entry_hosts: tuple[str, ...], *granted: str
                       ) -> AsyncIterator[Tunnels]:
    async with open_host_store(base / "host.db", KEY) as store, \
            open_https_upstream(base) as upstream:
        await Registry(store).put_agent_group(AgentGroup(id=GROUP, name="Web", folder=GROUP))
        sink = RecordingSink()
        proxy = ConnectProxy(Grants(store), config=egress_config(upstream), events=sink)
        world = Tunnels(store, upstream, sink, base / "fetch.sock")
        await world.grant(*granted)
        route = ConnectRoute("sess_1", GROUP, "fetch", world.socket, entry_hosts)
        async with proxy.open_route(route):
            yield world
        assert not world.socket.exists()


async def test_a_granted_host_of_the_entry_is_tunnelled_with_tls_end_to_end(
        base: Path) -> None:
    async with open_tunnels(base, (UPSTREAM,), UPSTREAM) as tunnels:
        body = await tunnels.get_through(UPSTREAM, "/echo/through")
        assert body.startswith(b"HTTP/1.1 200")
        assert b"/echo/through" in body
        assert tunnels.upstream.sni[-1] == UPSTREAM
    event = tunnels.events()[-1]
    assert (event.operation, event.outcome, event.host, event.upstream) == (  # type: ignore[attr-defined]
        "connect", "ok", UPSTREAM, True)
    assert event.response_bytes > 0  # type: ignore[attr-defined]


@pytest.mark.parametrize(("entry", "granted"), [
    ((UPSTREAM,), ()),          # the entry names it, the group was not granted it
    ((OTHER,), (UPSTREAM,)),    # granted to the group, but not the server's host
], ids=["not-granted", "not-in-entry"])
async def test_a_host_must_be_both_the_entrys_and_granted(
        base: Path, entry: tuple[str, ...], granted: tuple[str, ...]) -> None:
    async with open_tunnels(base, entry, *granted) as tunnels:
        status, stream = await tunnels.connect(f"{UPSTREAM}:{tunnels.upstream.port}")
        await stream.aclose()
    assert status.startswith(b"HTTP/1.1 403"), status
    assert tunnels.upstream.requests == []
    assert tunnels.events()[-1].outcome == "host_not_allowed"  # type: ignore[attr-defined]


async def test_a_revocation_refuses_the_next_tunnel(base: Path) -> None:
    async with open_tunnels(base, (UPSTREAM,), UPSTREAM) as tunnels:
        assert b"/echo/one" in await tunnels.get_through(UPSTREAM, "/echo/one")
        await tunnels.grant()
        status, stream = await tunnels.connect(f"{UPSTREAM}:{tunnels.upstream.port}")
        await stream.aclose()
    assert status.startswith(b"HTTP/1.1 403"), status


@pytest.mark.parametrize(("method", "target", "outcome"), [
    ("GET", f"http://{UPSTREAM}/echo", "scheme_not_allowed"),
    ("CONNECT", "127.0.0.1:443", "host_not_allowed"),
    ("CONNECT", f"{UPSTREAM}:8443", "port_not_allowed"),
], ids=["plain-http", "ip-literal", "other-port"])
async def test_anything_but_https_to_a_named_host_is_refused(
        base: Path, method: str, target: str, outcome: str) -> None:
    async with open_tunnels(base, (UPSTREAM,), UPSTREAM) as tunnels:
        status, stream = await tunnels.connect(target, method)
        await stream.aclose()
    assert status.startswith(b"HTTP/1.1 403"), status
    assert tunnels.events()[-1].outcome == outcome  # type: ignore[attr-defined]


async def test_a_tunnel_that_does_not_start_tls_is_closed(base: Path) -> None:
    async with open_tunnels(base, (UPSTREAM,), UPSTREAM) as tunnels:
        status, stream = await tunnels.connect(f"{UPSTREAM}:{tunnels.upstream.port}")
        assert status.startswith(b"HTTP/1.1 200")
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        with trio.fail_after(20):
            assert await stream.receive_some(4096) == b""
        await stream.aclose()
    assert tunnels.events()[-1].outcome == "scheme_not_allowed"  # type: ignore[attr-defined]
