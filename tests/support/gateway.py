"""Shared pieces for the gateway tests: a real host.db, a seeded registry, the gateway
actor running in a nursery, and in-memory stand-ins for its three collaborators."""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import attrs
import trio

from ironclaw.contract.enums import ChangeStatus
from ironclaw.contract.gateway import ChangeRequest
from ironclaw.host.gateway import Gateway, GatewayConfig, MountRoot, Principal
from ironclaw.host.registry import (
    AgentGroup,
    Persona,
    Registry,
    Role,
    RoleGrant,
    Wiring,
)
from ironclaw.host.store import HostStore, open_host_store

KEY = secrets.token_bytes(32)
START_US = 1_800_000_000_000_000

OWNER = Principal("olivia", frozenset({"owner"}))
ADMIN = Principal("adam", frozenset({"admin"}))
APPROVER = Principal("april", frozenset({"approver"}))
VIEWER = Principal("victor", frozenset({"viewer"}))

CONFIG = GatewayConfig(mount_roots=(MountRoot("/srv"),),
                       mcp_catalog={"github": ["search_issues", "create_issue"]})

_KIND = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+")
_KEY = re.compile(r"[a-z_]{1,40}")


class MemoryAudit:
    """The AuditSink protocol, held to the real log's ids-and-counts rule."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, dict[str, Any]]] = []

    async def append(self, kind: str, /, **fields: str | int | bool | None) -> int:
        await trio.lowlevel.checkpoint()
        assert _KIND.fullmatch(kind), kind
        for key, value in fields.items():
            assert _KEY.fullmatch(key), key
            assert value is None or isinstance(value, bool | int | str), (key, value)
            assert not isinstance(value, str) or len(value) <= 256, key
        self.entries.append((kind, dict(fields)))
        return len(self.entries)

    def kinds_for(self, change_id: str) -> list[str]:
        return [kind for kind, fields in self.entries if fields.get("change_id") == change_id]

    def find(self, kind: str, change_id: str) -> list[dict[str, Any]]:
        return [fields for k, fields in self.entries
                if k == kind and fields.get("change_id") == change_id]


class FakeNotifier:
    def __init__(self) -> None:
        self.calls: list[tuple[str, ChangeStatus, str]] = []
        self._changed = trio.Event()

    async def change_resolved(self, change: ChangeRequest, status: ChangeStatus) -> None:
        await trio.lowlevel.checkpoint()
        self.calls.append((change.id, status, change.requested_by))
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, change_id: str, status: ChangeStatus) -> None:
        while True:
            changed = self._changed
            if any(c[:2] == (change_id, status) for c in self.calls):
                return
            await changed.wait()


class FakeRespawner:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def respawn_group(self, agent_group_id: str, reason: str) -> None:
        await trio.lowlevel.checkpoint()
        self.calls.append((agent_group_id, reason))


class TestClock:
    """Wall time that moves with Trio's clock, so autojump_clock drives TTLs."""

    __test__ = False

    def __init__(self, start_us: int = START_US) -> None:
        self._offset = start_us - round(trio.current_time() * 1e6)

    def now_us(self) -> int:
        return self._offset + round(trio.current_time() * 1e6)

    async def sleep_until(self, at_us: int) -> None:
        await trio.lowlevel.checkpoint()
        while self.now_us() < at_us:  # noqa: ASYNC110 - float rounding may fall short
            await trio.sleep_until(max((at_us - self._offset) / 1e6,
                                       trio.current_time() + 1e-6))


@attrs.define
class Harness:
    store: HostStore
    registry: Registry
    gateway: Gateway
    audit: MemoryAudit
    notifier: FakeNotifier
    respawner: FakeRespawner
    messaging_group: str


async def seed(registry: Registry) -> str:
    await registry.put_agent_group(AgentGroup(
        id="demo", name="Demo", folder="demo",
        persona=Persona("I am Demo", "curious", "be helpful"),
        enabled_tools=cast(Any, ("search",))))
    await registry.put_agent_group(AgentGroup(id="other", name="Other", folder="other"))
    mg = await registry.ensure_messaging_group("local", "chat1")
    await registry.put_wiring(Wiring(id="w1", messaging_group_id=mg.id,
                                     agent_group_id="demo", pattern="^demo"))
    await registry.grant_role(RoleGrant("local:olivia", Role.OWNER))
    return mg.id


@asynccontextmanager
async def open_gateway(path: Path, *, config: GatewayConfig = CONFIG,
                       audit: MemoryAudit | None = None, fresh: bool = True,
                       **options: Any) -> AsyncIterator[Harness]:
    async with open_host_store(path, KEY) as store:
        registry = Registry(store)
        if fresh:
            mg = await seed(registry)
        else:
            found = await registry.find_messaging_group("local", "chat1")
            assert found is not None
            mg = found.id
        audit = audit or MemoryAudit()
        notifier, respawner = FakeNotifier(), FakeRespawner()
        gateway = Gateway(store, audit, config=config, notifier=notifier,
                          respawner=respawner, clock=options.pop("clock", None) or TestClock(),
                          **options)
        async with trio.open_nursery() as nursery:
            await nursery.start(gateway.run)
            yield Harness(store, registry, gateway, audit, notifier, respawner, mg)
            nursery.cancel_scope.cancel()
