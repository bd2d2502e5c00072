"""The request pipeline every route shares (size, auth, rate limit, role, query
parameters, JSON errors) and /readyz's checks, without a whole control plane."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import attrs
import pytest
import trio

from ironclaw.host.api import ApiSettings, Principals
from ironclaw.host.api.app import create_app
from ironclaw.host.api.context import ApiContext
from ironclaw.host.api.metrics import ApiMetrics
from ironclaw.host.api.readiness import Readiness, readiness
from ironclaw.host.gateway import NoSuchChange
from ironclaw.host.store import HostStore, open_host_store
from ironclaw.runtime import EventBus
from ironclaw.runtime.ratelimit import KeyedRateLimiter

KEY = secrets.token_bytes(32)


@attrs.define
class Pipeline:
    client: Any
    tokens: dict[str, str]

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[HostStore]:
    async with open_host_store(tmp_path / "host.db", secrets.token_bytes(32)) as opened:
        yield opened


@pytest.fixture
async def pipeline(store: HostStore) -> Pipeline:
    settings = ApiSettings(rate_per_second=1.0, rate_burst=3, max_body_bytes=1024)
    principals = Principals(store, KEY)
    tokens = {name: await principals.create(name, {role}) for name, role in
              (("olive", "owner"), ("vic", "viewer"), ("ann", "approver"))}
    handles = SimpleNamespace(gateway=None, audit=None, local=None, registry=None,
                              events=EventBus(), questions=None, sessions=None)
    ctx = ApiContext(handles=cast(Any, handles), settings=settings, principals=principals,
                     limiter=KeyedRateLimiter(settings.rate_per_second, settings.rate_burst),
                     metrics=ApiMetrics())
    return Pipeline(create_app(ctx).test_client(), tokens)


async def test_the_rate_limit_is_per_principal_with_retry_after(
        pipeline: Pipeline, autojump_clock: trio.testing.MockClock) -> None:
    for _ in range(3):
        assert (await pipeline.client.get("/v1/whoami", headers=pipeline.auth("olive"))
                ).status_code == 200
    limited = await pipeline.client.get("/v1/whoami", headers=pipeline.auth("olive"))
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "1"
    assert (await limited.get_json())["error"] == "rate_limited"
    # Another principal has its own bucket; the probes have none.
    assert (await pipeline.client.get("/v1/whoami", headers=pipeline.auth("vic"))
            ).status_code == 200
    for _ in range(10):
        assert (await pipeline.client.get("/healthz")).status_code == 200
    await trio.sleep(1.0)
    assert (await pipeline.client.get("/v1/whoami", headers=pipeline.auth("olive"))
            ).status_code == 200


async def test_failed_authentication_is_rate_limited_too(
        pipeline: Pipeline, autojump_clock: trio.testing.MockClock) -> None:
    statuses = [(await pipeline.client.get("/v1/whoami", headers={
        "Authorization": f"Bearer icw_guess-{n:012d}"})).status_code for n in range(5)]
    assert statuses == [401, 401, 401, 429, 429]


async def test_size_then_token_then_role_then_input(pipeline: Pipeline) -> None:
    big = b"{" + b" " * 2000 + b"}"
    # Too large: refused before anything else is looked at, and the connection dropped.
    response = await pipeline.client.post("/v1/changes", data=big,
                                          headers={"Content-Length": str(len(big))})
    assert response.status_code == 413 and response.headers["Connection"] == "close"
    assert (await pipeline.client.post("/v1/changes", data=b"{}")).status_code == 401
    refused = await pipeline.client.post("/v1/changes", data=b"{}",
                                         headers=pipeline.auth("vic"))
    assert refused.status_code == 403 and (await refused.get_json())["error"] == "forbidden"
    unknown = await pipeline.client.get("/v1/whoami?verbose=1", headers=pipeline.auth("ann"))
    assert unknown.status_code == 400
    assert "verbose" in (await unknown.get_json())["detail"]
    ok = await pipeline.client.get("/v1/whoami", headers=pipeline.auth("ann"))
    assert await ok.get_json() == {"name": "ann", "roles": ["approver"]}
    assert ok.headers["Cache-Control"] == "no-store"
    assert ok.headers["X-Content-Type-Options"] == "nosniff"


class Never:
    async def call(self, fn: object) -> int:
        await trio.sleep_forever()
        raise AssertionError


class Answers:
    async def retry_apply(self, change_id: str) -> None:
        await trio.lowlevel.checkpoint()
        raise NoSuchChange(change_id)


async def test_readiness_names_what_is_not_ready(autojump_clock: trio.testing.MockClock,
                                                 store: HostStore) -> None:
    handles = SimpleNamespace(store=Never(), gateway=Answers(),
                              delivery=SimpleNamespace(_nursery=None),
                              sessions=SimpleNamespace(running=True),
                              local=SimpleNamespace(serving=False))
    checks = await readiness(cast(Any, handles))
    assert checks == {"store": (False, "timed out"), "gateway": (True, None),
                      "delivery": (False, "the delivery actor is not running"),
                      "sessions": (True, None),
                      "local_channel": (False, "the local channel is not being served")}
    handles.store = store
    handles.delivery = SimpleNamespace(_nursery=object())
    handles.local = SimpleNamespace(serving=True)
    assert all(ok for ok, _ in (await readiness(cast(Any, handles))).values())


class Counting:
    def __init__(self) -> None:
        self.calls = 0

    async def call(self, fn: Any) -> int:
        self.calls += 1
        await trio.sleep(0.1)
        return 1


async def test_the_open_probe_runs_at_most_once_a_second(
        autojump_clock: trio.testing.MockClock) -> None:
    store = Counting()
    handles = SimpleNamespace(store=store, gateway=Answers(),
                              delivery=SimpleNamespace(running=True),
                              sessions=SimpleNamespace(running=True),
                              local=SimpleNamespace(serving=True))
    probe = Readiness(cast(Any, handles))
    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(probe.check)
    assert store.calls == 1
    await trio.sleep(2)
    assert all(ok for ok, _ in (await probe.check()).values())
    assert store.calls == 2
