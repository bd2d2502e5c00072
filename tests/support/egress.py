"""Shared pieces for the egress broker tests: a real host.db holding the group's grant,
a real HTTPS upstream on loopback under a throwaway CA, and the broker serving one
session on a real unix socket."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio

from ironclaw.contract.ids import new_session_id
from ironclaw.host.egress import (
    EgressBroker,
    EgressConfig,
    EgressLimits,
    EgressRoute,
    Resolver,
)
from ironclaw.host.gateway.grants import EGRESS_HOSTS, Grants, set_grant
from ironclaw.host.registry import AgentGroup, Registry
from ironclaw.host.store import HostStore, open_host_store
from tests.fakes.https_upstream import NAMES, HttpsUpstream, open_https_upstream
from tests.support.events import RecordingSink

KEY = secrets.token_bytes(32)
GROUP = "web"
UPSTREAM, OTHER, SEARCH = NAMES
LOOPBACK = "127.0.0.1"


@contextmanager
def scratch_dir() -> Iterator[Path]:
    # Short, so socket paths fit sun_path without the /proc/self/fd fallback.
    path = Path(tempfile.mkdtemp(prefix="eg-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@attrs.define
class World:
    store: HostStore
    upstream: HttpsUpstream
    broker: EgressBroker
    sink: RecordingSink
    route: EgressRoute
    base: Path

    async def grant(self, *hosts: str, group: str = GROUP) -> None:
        """What an approved egress change's apply does: replace the group's list."""
        await self.store.call(set_grant, group, EGRESS_HOSTS, list(hosts), "chg_test", 0)

    def client(self, path: Path | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=str(path or self.route.socket_path)),
            base_url="http://egress.ironclaw.invalid", timeout=20)

    async def post(self, path: str, payload: Any, **kwargs: Any) -> httpx.Response:
        async with self.client() as client:
            return await client.post(path, json=payload, **kwargs)

    async def fetch(self, url: str, **fields: Any) -> httpx.Response:
        return await self.post("/v1/fetch", {"url": url, **fields})

    def url(self, path: str, host: str = UPSTREAM, scheme: str = "https") -> str:
        return self.upstream.url(path, host, scheme)

    def events(self) -> list[Any]:
        return self.sink.of("egress.request")


def egress_config(upstream: HttpsUpstream, names: tuple[str, ...] = NAMES,
                  **overrides: Any) -> EgressConfig:
    """Every test name pinned to loopback and open as a local service on the upstream's
    port; a test takes entries away to see the refusals."""
    fields: dict[str, Any] = {
        "ca_bundle": upstream.ca_file,
        "static_hosts": {name: LOOPBACK for name in names},
        "allow_loopback_hosts": tuple(f"{name}:{upstream.port}" for name in names),
        "search_url": upstream.url("/search?q={query}&format=json", SEARCH),
        "limits": EgressLimits(rate=1000.0, burst=1000),
    }
    fields.update(overrides)
    return EgressConfig(**fields)


@asynccontextmanager
async def open_world(base: Path, *hosts: str, group: str = GROUP,
                     resolver: Resolver | None = None, names: tuple[str, ...] = NAMES,
                     **overrides: Any) -> AsyncIterator[World]:
    async with open_host_store(base / "host.db", KEY) as store, \
            open_https_upstream(base) as upstream:
        registry = Registry(store)
        await registry.put_agent_group(AgentGroup(id=group, name="Web", folder=group))
        if hosts:
            await store.call(set_grant, group, EGRESS_HOSTS, list(hosts), "chg_seed", 0)
        sink = RecordingSink()
        broker = EgressBroker(Grants(store), config=egress_config(upstream, names, **overrides),
                              events=sink, resolver=resolver)
        async with trio.open_nursery() as nursery:
            await nursery.start(broker.run)
            sid = new_session_id()
            route = EgressRoute(sid, group, base / "s" / sid[:12] / "egress.sock")
            await broker.serve_session(route)
            yield World(store, upstream, broker, sink, route, base)
            nursery.cancel_scope.cancel()
