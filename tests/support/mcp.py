"""Shared pieces for the MCP broker tests: a real host.db holding the group's grant,
a catalogue of real servers (``mcp-server-time`` and ``mcp-server-git`` from PyPI, and
the hostile server in ``tests/fakes``) run by the process launcher, and the broker
serving sessions on real unix sockets."""

from __future__ import annotations

import secrets
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio

from ironclaw.contract.ids import new_session_id
from ironclaw.contract.mcp import CALL_PATH, MCP_HOST, TOOLS_PATH
from ironclaw.host.gateway.grants import MCP_ACCESS, Grants, set_grant
from ironclaw.host.mcp import (
    McpBroker,
    McpCatalogEntry,
    McpConfig,
    McpLimits,
    McpRoute,
    McpServerEntry,
    ProcessLauncher,
)
from ironclaw.host.registry import AgentGroup, Registry
from ironclaw.host.store import HostStore, open_host_store
from tests.support.events import RecordingSink

KEY = secrets.token_bytes(32)
GROUP = "tools"
HOSTILE = Path(__file__).resolve().parents[1] / "fakes" / "mcp_hostile_server.py"


def time_server() -> McpCatalogEntry:
    return McpCatalogEntry(McpServerEntry(name="time", command="mcp-server-time",
                                          args=("--local-timezone", "UTC")))


def hostile_server(mode: str = "good", name: str = "hostile") -> McpCatalogEntry:
    return McpCatalogEntry(McpServerEntry(name=name, command=sys.executable,
                                          args=(str(HOSTILE), mode)))


@contextmanager
def scratch_dir() -> Iterator[Path]:
    # Short, so socket paths fit sun_path.
    path = Path(tempfile.mkdtemp(prefix="mcp-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@attrs.define
class Session:
    route: McpRoute

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=str(self.route.socket_path)),
            base_url=f"http://{MCP_HOST}", timeout=60)

    async def tools(self) -> dict[str, Any]:
        async with self.client() as client:
            response = await client.get(TOOLS_PATH)
        assert response.status_code == 200, response.text
        return {tool["name"]: tool for tool in response.json()["tools"]}

    async def call(self, name: str, arguments: dict[str, Any] | None = None
                   ) -> httpx.Response:
        async with self.client() as client:
            return await client.post(CALL_PATH, json={"name": name,
                                                      "arguments": arguments or {}})


@attrs.define
class World:
    store: HostStore
    broker: McpBroker
    sink: RecordingSink
    base: Path
    nursery: trio.Nursery

    async def grant(self, servers: dict[str, Any], group: str = GROUP) -> None:
        """What an approved mcp_access change's apply writes."""
        await self.store.call(set_grant, group, MCP_ACCESS, {"servers": servers},
                              "chg_test", 0)

    async def session(self, group: str = GROUP) -> Session:
        sid = new_session_id()
        root = self.base / "s" / sid[-12:]
        route = McpRoute(sid, group, root / "mcp.sock", servers_dir=root / "mcp",
                         group_servers_dir=self.base / "mcp" / group,
                         workspace=self.base / "workspace")
        await self.broker.serve_session(route)
        return Session(route)

    def calls(self) -> list[Any]:
        return self.sink.of("mcp.call")

    def servers(self) -> list[Any]:
        return self.sink.of("mcp.server")


@asynccontextmanager
async def open_world(base: Path, *entries: McpCatalogEntry,
                     groups: tuple[str, ...] = (GROUP,), **limits: Any
                     ) -> AsyncIterator[World]:
    config = McpConfig(servers=entries, limits=McpLimits(**limits))
    async with open_host_store(base / "host.db", KEY) as store:
        registry = Registry(store)
        for group in groups:
            await registry.put_agent_group(AgentGroup(id=group, name=group.title(),
                                                      folder=group))
        sink = RecordingSink()
        broker = McpBroker(Grants(store), ProcessLauncher(), config=config, events=sink)
        async with trio.open_nursery() as nursery:
            await nursery.start(broker.run)
            yield World(store, broker, sink, base, nursery)
            nursery.cancel_scope.cancel()
