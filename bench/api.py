"""The human's side under load: API latency with many concurrent clients, and event
fan-out to many websocket subscribers.

- API latency: C concurrent clients (50, then 200; fewer with --quick and --smoke)
  each issue authenticated ``GET /v1/sessions`` requests back to back; p50/p99 per
  request. The per-principal
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

from . import charts
from .progress import Progress
from .report import SuiteResult, Table, cell
from .stats import ratio, summarise

TOKEN = "icw_bench_token_" + "b" * 32


@attrs.frozen
class BenchTick:
    type: ClassVar[str] = "bench.tick"
    n: int
    sent: float  # time.time() at publish


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
            "delivered": received, "dropped": missed, **summarise(lags)}


async def _run(clients: tuple[int, ...], per_client: int, subscribers: int, rate: float,
               seconds: float, progress: Progress) -> dict[str, Any]:
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
                with progress.phase(f"API latency, {count} concurrent clients"):
                    latency.append(await _latency(base, count, per_client))
            ws_base = base.replace("http://", "ws://")
            with progress.phase("event fan-out, 1 subscriber (baseline)"):
                one = await _fanout(plane, ws_base, 1, rate, seconds)
            with progress.phase(f"event fan-out, {subscribers} subscribers"):
                many = await _fanout(plane, ws_base, subscribers, rate, seconds)
            nursery.cancel_scope.cancel()
    return {"latency": latency, "fanout": [one, many]}


@attrs.frozen
class Params:
    clients: tuple[int, ...]
    per_client: int
    subscribers: int
    rate: float
    seconds: float


MODES = {
    "full": Params(clients=(50, 200), per_client=20, subscribers=100, rate=200.0, seconds=3.0),
    "quick": Params(clients=(10, 20), per_client=5, subscribers=10, rate=100.0, seconds=1.0),
    "smoke": Params(clients=(5, 10), per_client=3, subscribers=5, rate=50.0, seconds=0.5),
}
STAT_KEYS = ("status", "unit", "n", "median", "p90", "p99", "min", "max", "mean")


def run(*, mode: str = "quick", progress: Progress) -> SuiteResult:
    p = MODES[mode]
    logging.getLogger("ironclaw").setLevel(logging.ERROR)
    measured = trio.run(functools.partial(_run, p.clients, p.per_client, p.subscribers,
                                          p.rate, p.seconds, progress))
    one, many = measured["fanout"]
    latency = {f"{t['clients']} clients": {k: t.get(k) for k in (*STAT_KEYS, "reason")
                                           if k in t} for t in measured["latency"]}
    fanout = {"1 subscriber": {k: one.get(k) for k in (*STAT_KEYS, "reason") if k in one},
              f"{many['subscribers']} subscribers": {k: many.get(k) for k in
                                                    (*STAT_KEYS, "reason") if k in many}}
    results = {"api_latency": latency, "fanout_lag": fanout}
    ratios = {"fanout p50 lag, many / one": ratio(many, one),
              "api p99, most / fewest clients": ratio(measured["latency"][-1],
                                                     measured["latency"][0], "p99")}
    rows = [[f"API GET /v1/sessions, {t['clients']} clients", cell(t), cell(t, "p90"),
             cell(t, "p99"), f"{t['requests_per_s']:.0f} req/s, {t['errors']} errors"]
            for t in measured["latency"]]
    rows += [[f"event fan-out, {f['subscribers']} subscriber(s)", cell(f), cell(f, "p90"),
              cell(f, "p99"), f"{f['events']} events at {f['rate_per_s']:.0f}/s, "
              f"{f['delivered']} frames delivered, {f['dropped']} dropped"]
             for f in measured["fanout"]]
    method = {
        "API latency": f"{', '.join(map(str, p.clients))} concurrent clients, each "
                       f"{p.per_client} authenticated GET /v1/sessions back to back; "
                       "per-principal rate limit lifted (all clients share one token)",
        "fan-out": f"1 then {p.subscribers} websocket subscribers on /v1/events while "
                   f"{p.rate:.0f} events/s are published for {p.seconds:g} s; lag = publish "
                   "to receipt",
        "where the clients run": "in the server's process and Trio thread (pessimistic)",
    }
    result = SuiteResult("api", mode, method, results, ratios,
                         [Table("API latency and event fan-out",
                                ["measure", "p50", "p90", "p99", "notes"], rows)],
                         {"latency": measured["latency"], "fanout": measured["fanout"]})
    result.charts = charts_for(result.payload({}, "", 0.0, []))
    return result


def charts_for(payload: dict[str, Any]) -> dict[str, charts.ChartFn]:
    """The api charts, drawn from a saved result (``python -m bench render``)."""
    latency, fanout = payload["results"]["api_latency"], payload["results"]["fanout_lag"]
    keys = (("p50", "median"), ("p90", "p90"), ("p99", "p99"))
    return {
        "latency": lambda path, sub: charts.grouped_bars(
            path, title="api: request latency under concurrent clients", subtitle=sub,
            groups=["p50", "p90", "p99"], variants=list(latency),
            data={k: {v: _pick(latency[v], key) for v in latency} for k, key in keys},
            ylabel="milliseconds"),
        "fanout": lambda path, sub: charts.grouped_bars(
            path, title="api: event fan-out lag (publish to receipt)", subtitle=sub,
            groups=["p50", "p90", "p99"], variants=list(fanout),
            data={k: {v: _pick(fanout[v], key) for v in fanout} for k, key in keys},
            ylabel="milliseconds"),
    }


def _pick(entry: dict[str, Any], key: str) -> Any:
    return entry[key] if entry.get("status") == "ok" else entry
