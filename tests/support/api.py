"""Shared parts of the API end-to-end tests: a real control plane in dev mode (mock
model, no provider keys from the environment) with the API served by hypercorn on
loopback, and principals of each role."""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
import trio_websocket

from ironclaw.host.api import ApiSettings, Principals, bootstrap_owner, serve_api
from ironclaw.host.app import ControlPlane, ControlPlaneHandles
from ironclaw.host.config import ControlPlaneConfig
from ironclaw.host.mailboxes import StopSession
from ironclaw.host.modelproxy import Credentials
from tests.support.plane import dev_plane_config


def plane_config(tmp_path: Path) -> ControlPlaneConfig:
    return dev_plane_config(tmp_path / "state", tmp_path / "keys")


@attrs.define
class Api:
    handles: ControlPlaneHandles
    url: str
    port: int
    principals: Principals
    tokens: dict[str, str]
    client: httpx.AsyncClient

    def auth(self, who: str = "owner") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    async def get(self, path: str, who: str = "owner", **kw: Any) -> httpx.Response:
        return await self.client.get(self.url + path, headers=self.auth(who), **kw)

    async def post(self, path: str, body: object, who: str = "owner") -> httpx.Response:
        return await self.client.post(self.url + path, json=body, headers=self.auth(who))

    def ws(self, path: str, who: str = "owner", *, mode: str = "header",
           **kw: Any) -> AbstractAsyncContextManager[trio_websocket.WebSocketConnection]:
        headers = []
        protocols = list(kw.pop("subprotocols", []))
        if mode == "header":
            headers.append((b"Authorization", f"Bearer {self.tokens[who]}".encode()))
        elif mode == "subprotocol":
            protocols += ["ironclaw.v1", f"bearer.{self.tokens[who]}"]
        return trio_websocket.open_websocket(
            "127.0.0.1", self.port, path, use_ssl=False, extra_headers=headers,
            subprotocols=protocols or None, **kw)


async def receive_json(ws: trio_websocket.WebSocketConnection, within: float = 30
                       ) -> dict[str, Any]:
    with trio.fail_after(within):
        frame: dict[str, Any] = json.loads(await ws.get_message())
    return frame


TEST_SETTINGS = ApiSettings(host="127.0.0.1", port=0, rate_per_second=1000.0,
                            rate_burst=5000, max_body_bytes=64 * 1024)


@pytest.fixture(name="api_settings")
def default_settings() -> ApiSettings:
    return TEST_SETTINGS


@pytest.fixture(name="api")
async def running_api(tmp_path: Path, api_settings: ApiSettings,
                      request: pytest.FixtureRequest) -> AsyncIterator[Api]:
    """A running control plane with the API in front; import this fixture (and
    ``default_settings``, unless the module defines its own ``api_settings``). A module
    may set ``GATEWAY`` (a GatewayConfig) for the plane's gateway, and ``MCP`` (an
    McpConfig) for its MCP catalogue."""
    config = plane_config(tmp_path)
    gateway = getattr(request.module, "GATEWAY", None)
    if gateway is not None:
        config = attrs.evolve(config, gateway=gateway)
    mcp = getattr(request.module, "MCP", None)
    if mcp is not None:
        config = attrs.evolve(config, mcp=mcp)
    async with trio.open_nursery() as nursery:
        handles: ControlPlaneHandles = await nursery.start(
            ControlPlane(config, credentials=Credentials()).run)
        token_key = handles.api_token_key  # the key store's api-token-hash sub-key
        principals = Principals(handles.store, token_key, audit=handles.audit)
        owner = await bootstrap_owner(principals)
        assert owner is not None
        tokens = {"owner": owner}
        for name, roles in (("viewer", {"viewer"}), ("approver", {"approver"}),
                            ("admin", {"admin"})):
            tokens[name] = await principals.create(name, roles)
        binds = await nursery.start(functools.partial(
            serve_api, handles, api_settings, token_key=token_key))
        url = binds[0]
        async with httpx.AsyncClient(timeout=60) as client:
            yield Api(handles, url, int(url.rsplit(":", 1)[1]), principals, tokens, client)
        await retire_sessions(handles)
        nursery.cancel_scope.cancel()


async def retire_sessions(handles: ControlPlaneHandles) -> None:
    """Stop live sessions before tearing the plane down. (Cancelling the whole tree
    while a session's tail is handing a batch to delivery can race delivery's own
    shutdown; that race is the runtime's to fix, not these tests' to trip over.)"""
    with trio.move_on_after(30):
        for session_id in handles.sessions.live_ids():
            await handles.sessions.mailbox.send(StopSession(session_id, "test over"))
            await handles.sessions.wait_retired(session_id)
