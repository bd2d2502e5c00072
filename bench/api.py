"""The human's side under load: API latency with many concurrent clients, and event
fan-out to many websocket subscribers.

- API latency: C concurrent clients (50, then 200) each issue authenticated
  ``GET /v1/sessions`` requests back to back; p50/p99 per request. The per-principal
  rate limit (50/s by default) is lifted: every client shares one token here, and the
  point is the server's latency, not the limiter's.
- Event fan-out: N websocket subscribers on ``/v1/events`` while events are published
  at a steady rate; lag (publish to receipt) and drops (``stream.lagged``), against a
  single subscriber measured in the same run.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

import attrs
import httpx
import trio
from trio_websocket import open_websocket_url

from ironclaw.host.api import ApiSettings, Principals, bootstrap_owner, serve_api
from ironclaw.host.app import ControlPlane
from ironclaw.host.config import ControlPlaneConfig
from ironclaw.host.modelproxy import Credentials

from .stats import summarise

TOKEN = "icw_bench_token_" + "b" * 32


@attrs.frozen
class BenchTick:
    type: ClassVar[str] = "bench.tick"
    n: int
    sent: float  # time.time() at publish


def _progress(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


async def _latency(base: str, clients: int, per_client: int) -> dict[str, Any]:
    samples: list[float] = []
    errors = 0
    headers = {"Authorization": f"Bearer {TOKEN}"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits,
                                 timeout=60) as http:
        async def client() -> None:
            nonlocal errors
            for _ in range(per_client):
                start = time.perf_counter()
                response = await http.get("/v1/sessions")
                samples.append(time.perf_counter() - start)
                errors += response.status_code != 200

        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(clients):
                nursery.start_soon(client)
        elapsed = time.perf_counter() - started
    return {"clients": clients, "requests": len(samples), "errors": errors,
            "requests_per_s": len(samples) / elapsed, **summarise(samples)}


async def _fanout(plane: Any, ws_base: str, subscribers: int, rate: float, seconds: float
                  ) -> dict[str, Any]:
    lags: list[float] = []
    missed = 0
    received = 0
    total = int(rate * seconds)
    ready = 0
    all_ready, all_seen = trio.Event(), trio.Event()

    def account() -> None:
        if received + missed >= total * subscribers:
            all_seen.set()

    async def subscriber() -> None:
        nonlocal missed, received, ready
        async with open_websocket_url(
                f"{ws_base}/v1/events?types=bench.*",
                extra_headers=[("Authorization", f"Bearer {TOKEN}")]) as ws:
            seen = 0
            while seen < total:
                frame = json.loads(await ws.get_message())
                kind = frame.get("type")
                if kind == "stream.ready":
                    ready += 1
                    if ready == subscribers:
                        all_ready.set()
                elif kind == "stream.lagged":
                    missed += frame["event"]["missed"]
                    seen += frame["event"]["missed"]
                    account()
                elif kind == "bench.tick":
                    lags.append(time.time() - frame["event"]["sent"])
                    received += 1
                    seen += 1
                    account()
                    if frame["event"]["n"] == total - 1:
                        return

    async with trio.open_nursery() as nursery:
        for _ in range(subscribers):
            nursery.start_soon(subscriber)
        with trio.fail_after(60):
            await all_ready.wait()
        interval = 1.0 / rate
        start = trio.current_time()
        for n in range(total):
            await trio.sleep_until(start + n * interval)
            plane.events.publish(BenchTick(n, time.time()))
        with trio.move_on_after(30):
            await all_seen.wait()
        nursery.cancel_scope.cancel()
    return {"subscribers": subscribers, "events": total, "rate_per_s": rate,
            "delivered": received, "dropped": missed, **summarise(lags or [0.0])}


async def _run(clients: tuple[int, ...], per_client: int, subscribers: int, rate: float,
               seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = ControlPlaneConfig(state_dir=root / "state", dev=True, runtime="process",
                                    key_dir=root / "k")
        async with trio.open_nursery() as nursery:
            plane = await nursery.start(ControlPlane(config, credentials=Credentials()).run)
            await bootstrap_owner(Principals(plane.store, plane.api_token_key),
                                  env_token=TOKEN)
            settings = ApiSettings(host="127.0.0.1", port=0, rate_per_second=1e6,
                                   rate_burst=1_000_000)
            (base,) = await nursery.start(functools.partial(
                serve_api, plane, settings, token_key=plane.api_token_key))
            latency = []
            for count in clients:
                _progress(f"API latency, {count} concurrent clients")
                latency.append(await _latency(base, count, per_client))
            ws_base = base.replace("http://", "ws://")
            _progress("event fan-out, 1 subscriber (baseline)")
            one = await _fanout(plane, ws_base, 1, rate, seconds)
            _progress(f"event fan-out, {subscribers} subscribers")
            many = await _fanout(plane, ws_base, subscribers, rate, seconds)
            nursery.cancel_scope.cancel()
    return {"latency": latency, "fanout": [one, many]}


def run(*, quick: bool = False) -> dict[str, Any]:
    logging.getLogger("ironclaw").setLevel(logging.ERROR)
    measured = trio.run(functools.partial(
        _run, (10, 20) if quick else (50, 200), 5 if quick else 20,
        10 if quick else 100, 100.0 if quick else 200.0, 1.0 if quick else 3.0))
    one, many = measured["fanout"]
    results = {f"api_{t['clients']}_clients": {k: t[k] for k in (
        "n", "median_ms", "p90_ms", "p99_ms", "min_ms", "max_ms")}
        for t in measured["latency"]}
    results["fanout_lag_1"] = {k: one[k] for k in ("n", "median_ms", "p90_ms", "p99_ms",
                                                   "min_ms", "max_ms")}
    results[f"fanout_lag_{many['subscribers']}"] = {k: many[k] for k in (
        "n", "median_ms", "p90_ms", "p99_ms", "min_ms", "max_ms")}
    return {"results": results, "latency": measured["latency"],
            "fanout": measured["fanout"],
            "ratios": {"fanout_p50_lag_many_over_one": many["median_ms"]
                       / max(one["median_ms"], 1e-6),
                       "api_p99_most_over_fewest_clients": measured["latency"][-1]["p99_ms"]
                       / measured["latency"][0]["p99_ms"]}}
