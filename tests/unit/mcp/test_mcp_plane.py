"""Where the plane cannot run MCP servers as strongly as its agents (no launcher for its
runtime), it runs none, and the gateway refuses every grant of one: a human never
approves an MCP grant that would have no effect."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from ironclaw.contract.enums import ChangeStatus
from ironclaw.host.app import ControlPlane
from ironclaw.host.config.devseed import DEMO_GROUP
from ironclaw.host.gateway import Principal
from ironclaw.host.mcp import McpConfig, launch
from ironclaw.host.modelproxy import Credentials
from tests.support.mcp import time_server
from tests.support.plane import dev_plane_config

OWNER = Principal("operator", frozenset({"owner"}))


@pytest.mark.parametrize("launcher", [True, False])
async def test_an_mcp_grant_is_refused_where_no_launcher_runs_the_servers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, launcher: bool) -> None:
    if not launcher:
        monkeypatch.setattr(launch, "LAUNCHERS", {})
    config = dev_plane_config(tmp_path / "state", tmp_path / "keys",
                              mcp=McpConfig(servers=(time_server(),)))
    async with trio.open_nursery() as nursery:
        plane = await nursery.start(ControlPlane(config, credentials=Credentials()).run)
        stored = await plane.gateway.submit("mcp_access", DEMO_GROUP,
                                            {"servers": {"time": "*"}}, requested_by=OWNER)
        assert stored.status is (ChangeStatus.PENDING if launcher else ChangeStatus.REJECTED)
        nursery.cancel_scope.cancel()
