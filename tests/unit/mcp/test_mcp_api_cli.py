"""``GET /v1/mcp/servers`` and ``ironctl mcp list|show`` against a live control plane
(dev mode, the real API on a loopback port): the catalogue as configured, and each
server's grants as the gateway applied them."""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
import trio

from ironclaw.contract.enums import DecisionOutcome
from ironclaw.host.api import ApiSettings, Principals, bootstrap_owner, serve_api
from ironclaw.host.app import ControlPlane
from ironclaw.host.config.devseed import DEMO_GROUP
from ironclaw.host.gateway import Principal
from ironclaw.host.keys import FileMasterKeySource, KeyStore, Purpose
from ironclaw.host.mcp import McpCatalogEntry, McpConfig, McpServerEntry
from ironclaw.host.modelproxy import Credentials
from tests.support.ironctl import Result, ironctl
from tests.support.plane import dev_plane_config

TOKEN = "icw_mcp_owner_token_" + "k" * 24
OWNER = Principal("operator", frozenset({"owner"}))
CATALOGUE = McpConfig(servers=(
    McpCatalogEntry(McpServerEntry(name="time", command="mcp-server-time",
                                   args=("--local-timezone", "UTC")),
                    tools=frozenset({"get_current_time", "convert_time"})),
    McpCatalogEntry(McpServerEntry(name="git", command="mcp-server-git",
                                   session_workspace=True)),
))


@attrs.frozen
class Live:
    addr: str

    async def ironctl(self, *argv: str) -> Result:
        return await ironctl(None, "--addr", self.addr, "--timeout", "30", *argv,
                             token=TOKEN)


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Live]:
    config = dev_plane_config(tmp_path / "state", tmp_path / "keys", mcp=CATALOGUE)
    config.state_dir.mkdir(mode=0o700, parents=True)
    with KeyStore.open(config.state_dir, FileMasterKeySource.in_state_dir(config.state_dir)
                       ) as keys:
        token_key = keys.subkey(Purpose.API_TOKEN_HASH)
    async with trio.open_nursery() as nursery:
        handles = await nursery.start(ControlPlane(config, credentials=Credentials()).run)
        principals = Principals(handles.store, token_key, audit=handles.audit)
        assert await bootstrap_owner(principals, env_token=TOKEN) is None
        stored = await handles.gateway.submit(
            "mcp_access", DEMO_GROUP, {"servers": {"time": ["get_current_time"]}},
            requested_by=OWNER)
        await handles.gateway.decide(stored.change.id, DecisionOutcome.APPROVE, OWNER)
        binds = await nursery.start(functools.partial(
            serve_api, handles, ApiSettings(host="127.0.0.1", port=0), token_key=token_key))
        yield Live(binds[0])
        nursery.cancel_scope.cancel()


async def test_the_catalogue_and_its_grants_are_listed_and_shown(live: Live) -> None:
    listed = await live.ironctl("--json", "mcp", "list")
    assert listed.code == 0, listed
    found = json.loads(listed.out)
    assert found["enabled"] is True
    time, git = found["servers"]
    assert (time["name"], time["command"], time["args"], time["tools"]) == (
        "time", "mcp-server-time", ["--local-timezone", "UTC"],
        ["convert_time", "get_current_time"])
    assert time["grants"] == [{"agent_group_id": DEMO_GROUP, "tools": ["get_current_time"]}]
    assert (git["tools"], git["session_workspace"], git["grants"]) == (None, True, [])

    table = await live.ironctl("mcp", "list")
    assert table.code == 0
    assert "mcp-server-time --local-timezone UTC" in table.out and DEMO_GROUP in table.out

    shown = await live.ironctl("mcp", "show", "time")
    assert shown.code == 0
    assert f"{DEMO_GROUP}: get_current_time" in shown.out

    missing = await live.ironctl("--json", "mcp", "show", "nope")
    assert missing.code == 4  # not found
    assert "no MCP server 'nope'" in missing.out + missing.err
