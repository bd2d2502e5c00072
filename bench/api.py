"""The human's side under load: API saturation against a bare server, and event fan-out
to many websocket subscribers.

- Saturation: ``wrk`` (an external load generator, Debian's package) against the
  plane's ``GET /v1/sessions`` (authenticated) and against a bare quart-trio
  hello-world on hypercorn (bench/bare_api.py), both served by this process's event
  loop, at rising connection counts, the two servers alternating; each server's
  saturation is its best req/s. Then each is held near half of its own saturation
  (every connection pacing its requests) for the latency there. The per-principal rate
  limit (50/s by default) is raised for the run: the point is the server, not the
  limiter. Rate-limited answers (429) are counted apart from every other answer all
  the same.
- Event fan-out: subscribers on ``/v1/events`` in a process of their own
  (bench/fanout_clients.py) while events are published at a steady rate; lag
  (publish to receipt) and drops (``stream.lagged``): one subscriber, then many with
  one frame per message, then many with batched messages (``batch=``).
"""

from __future__ import annotations

import functools
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

import attrs
import trio

from ironclaw.host.api import ApiSettings, Principals, bootstrap_owner, serve_api
from ironclaw.host.app import ControlPlane
from ironclaw.host.config import ControlPlaneConfig
from ironclaw.host.modelproxy import Credentials

from . import charts
from .bare_api import serve_bare
from .progress import Progress
from .report import SuiteResult, Table, cell
from .stats import absent, failed, ratio
from .wrk import available as wrk_available
from .wrk import run_wrk

TOKEN = "icw_bench_token_" + "b" * 32
ROOT = Path(__file__).resolve().parents[1]
PLANE, BARE = "plane GET /v1/sessions", "bare quart-trio hello-world"
BATCH = 256


@attrs.frozen
class BenchTick:
    type: ClassVar[str] = "bench.tick"
    n: int
    sent: float  # time.time() at publish


@attrs.frozen
class Params:
    connections: tuple[int, ...]
    seconds: float
    subscribers: int
    rate: float
    fanout_seconds: float


MODES = {
    "full": Params(connections=(8, 32, 128), seconds=5.0, subscribers=100, rate=2000.0,
                   fanout_seconds=3.0),
    "quick": Params(connections=(16, 64), seconds=2.0, subscribers=20, rate=500.0,
                    fanout_seconds=1.0),
    "smoke": Params(connections=(4,), seconds=1.0, subscribers=5, rate=100.0,
                    fanout_seconds=0.5),
}


# -- saturation ------------------------------------------------------------------------

async def _saturation(urls: dict[str, tuple[str, dict[str, str]]], p: Params,
                      progress: Progress) -> dict[str, Any]:
    steps: dict[str, list[dict[str, Any]]] = {name: [] for name in urls}
    with progress.phase("API saturation (wrk), plane and bare server alternating",
                        total=len(p.connections) * len(urls)) as ph:
        for i, connections in enumerate(p.connections):
            order = list(urls) if i % 2 == 0 else list(reversed(urls))
            for name in order:
                url, headers = urls[name]
                steps[name].append(await run_wrk(url, connections=connections,
                                                 seconds=p.seconds, headers=headers))
                ph.advance()
    peak = {name: max(runs, key=lambda r: r["requests_per_s"]) for name, runs in steps.items()}
    half: dict[str, dict[str, Any]] = {}
    with progress.phase("API latency at half of each server's saturation",
                        total=len(urls)) as ph:
        for name, (url, headers) in urls.items():
            target = peak[name]["requests_per_s"] / 2
            connections = peak[name]["connections"]
            # Each connection waits this long between requests: C / delay is the rate.
            delay_ms = max(1, round(connections * 1000 / target)) if target else 1
            half[name] = await run_wrk(url, connections=connections, seconds=p.seconds,
                                       headers=headers, delay_ms=delay_ms)
            half[name]["target_per_s"] = target
            ph.advance()
    return {"steps": steps, "peak": peak, "half": half}


# -- fan-out ---------------------------------------------------------------------------

async def _lines(stream: trio.abc.ReceiveStream) -> Any:
    buffer = b""
    while True:
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield line.decode("utf-8", "replace")
        data = await stream.receive_some(65536)
        if not data:
            if buffer:
                yield buffer.decode("utf-8", "replace")
            return
        buffer += data


async def _fanout(plane: Any, ws_base: str, subscribers: int, rate: float, seconds: float,
                  batch: int) -> dict[str, Any]:
    total = max(1, int(rate * seconds))
    command = [sys.executable, "-m", "bench.fanout_clients", f"{ws_base}/v1/events", TOKEN,
               str(subscribers), str(total), str(batch)]
    process = await trio.lowlevel.open_process(command, stdout=subprocess.PIPE, cwd=ROOT)
    try:
        assert process.stdout is not None
        lines = _lines(process.stdout)
        with trio.fail_after(90):
            if await lines.__anext__() != "ready":
                raise RuntimeError("the subscribers did not connect")
        interval = 1.0 / rate
        start = trio.current_time()
        for n in range(total):
            await trio.sleep_until(start + n * interval)
            plane.events.publish(BenchTick(n, time.time()))
        with trio.fail_after(120):
            result = json.loads(await lines.__anext__())
            await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()
    return {"subscribers": subscribers, "events": total, "rate_per_s": rate,
            "batch": batch, "delivered": result.pop("received"), **result}


async def _run(p: Params, progress: Progress) -> dict[str, Any]:
    out: dict[str, Any] = {}
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
            bare = await nursery.start(serve_bare)
            why_not = wrk_available()
            if why_not is None:
                out["saturation"] = await _saturation(
                    {PLANE: (f"{base}/v1/sessions", {"Authorization": f"Bearer {TOKEN}"}),
                     BARE: (f"{bare}/", {})}, p, progress)
            else:
                out["saturation"] = {"absent": why_not}
            ws_base = base.replace("http://", "ws://")
            fanout = []
            for subscribers, batch in ((1, 1), (p.subscribers, 1), (p.subscribers, BATCH)):
                with progress.phase(f"event fan-out, {subscribers} subscriber(s), "
                                    f"{p.rate:.0f} events/s, batch {batch}"):
                    fanout.append(await _fanout(plane, ws_base, subscribers, p.rate,
                                                p.fanout_seconds, batch))
            out["fanout"] = fanout
            nursery.cancel_scope.cancel()
    return out


# -- the report ------------------------------------------------------------------------

STAT_KEYS = ("status", "unit", "n", "median", "p90", "p99", "min", "max", "mean")


def _fanout_name(f: dict[str, Any]) -> str:
    per = "one frame per message" if f["batch"] == 1 else f"batch={f['batch']}"
    return f"{f['subscribers']} subscriber(s), {per}"


def run(*, mode: str = "quick", progress: Progress) -> SuiteResult:
    p = MODES[mode]
    logging.getLogger("ironclaw").setLevel(logging.ERROR)
    measured = trio.run(_run, p, progress)
    sat = measured["saturation"]
    results: dict[str, dict[str, dict[str, Any]]] = {}
    if "absent" in sat:
        results["api_saturation"] = {PLANE: absent(sat["absent"]), BARE: absent(sat["absent"])}
        results["api_half_saturation"] = dict(results["api_saturation"])
    else:
        results["api_saturation"] = {
            name: {"status": "ok", "unit": "req/s", "n": 1, "median": run["requests_per_s"],
                   "connections": run["connections"]} for name, run in sat["peak"].items()}
        results["api_half_saturation"] = {
            name: {k: run[k] for k in STAT_KEYS} for name, run in sat["half"].items()}
    results["fanout_lag"] = {
        _fanout_name(f): ({k: f[k] for k in STAT_KEYS if k in f} if f.get("status") == "ok"
                          else failed(f.get("reason", "no samples")))
        for f in measured["fanout"]}
    one, many_single, many = measured["fanout"]
    ratios = {"plane saturation / bare saturation": ratio(
                  results["api_saturation"][PLANE], results["api_saturation"][BARE]),
              "plane p99 at half saturation / bare p99 at half saturation": ratio(
                  results["api_half_saturation"][PLANE],
                  results["api_half_saturation"][BARE], "p99"),
              "fan-out p99 lag, many batched / one": ratio(many, one, "p99"),
              "fan-out p99 lag, many one-per-message / many batched": ratio(
                  many_single, many, "p99")}
    tables = [_saturation_table(sat), _fanout_table(measured["fanout"])]
    method = {
        "saturation": f"wrk, 2 threads, {', '.join(map(str, p.connections))} connections, "
                      f"{p.seconds:g} s each, the two servers alternating; saturation = "
                      "best req/s; then each server held near half its own saturation "
                      "(paced connections) for its latency",
        "rate limit": "raised to 1,000,000/s for the run (one principal's token for every "
                      "connection); 429 answers are counted apart all the same",
        "servers": "the plane's API and the bare server share this process's Trio loop; "
                   "wrk runs in its own process",
        "fan-out": f"1, then {p.subscribers} subscribers (one frame per message, then "
                   f"batch={BATCH}) in a separate process; {p.rate:.0f} events/s for "
                   f"{p.fanout_seconds:g} s; lag = publish to receipt",
    }
    result = SuiteResult("api", mode, method, results, ratios, tables,
                         {"saturation": sat, "fanout": measured["fanout"]})
    result.charts = charts_for(result.payload({}, "", 0.0, []))
    return result


def _saturation_table(sat: dict[str, Any]) -> Table:
    headers = ["server", "connections", "req/s", "p50", "p99", "2xx", "429", "other"]
    if "absent" in sat:
        return Table("API saturation (wrk)", headers, [[PLANE, "-", "absent", "-", "-", "-",
                                                        "-", sat["absent"]]])
    rows = []
    for name, runs in sat["steps"].items():
        for r in runs:
            rows.append([name, str(r["connections"]), f"{r['requests_per_s']:.0f}", cell(r),
                         cell(r, "p99"), str(r["ok"]), str(r["status_429"]),
                         str(r["status_other"] + r["socket_errors"] + r["timeouts"])])
    for name, r in sat["half"].items():
        rows.append([f"{name}, paced to half", f"{r['connections']} (every {r['delay_ms']} ms)",
                     f"{r['requests_per_s']:.0f}", cell(r), cell(r, "p99"), str(r["ok"]),
                     str(r["status_429"]),
                     str(r["status_other"] + r["socket_errors"] + r["timeouts"])])
    return Table("API saturation (wrk)", headers, rows,
                 "429 = rate-limited answers, counted apart; other = any other non-2xx "
                 "answer, socket error or timeout.")


def _fanout_table(fanout: list[dict[str, Any]]) -> Table:
    rows = [[_fanout_name(f), cell(f), cell(f, "p90"), cell(f, "p99"),
             f"{f['events']} events at {f['rate_per_s']:.0f}/s: {f['delivered']} frames "
             f"delivered, {f['dropped']} dropped, {f['messages']} messages, "
             f"{f['cut']} subscriber(s) cut off"]
            for f in fanout]
    return Table("Event fan-out lag (publish to receipt)",
                 ["subscribers", "p50", "p90", "p99", "notes"], rows)


def charts_for(payload: dict[str, Any]) -> dict[str, charts.ChartFn]:
    """The api charts, drawn from a saved result (``python -m bench render``)."""
    sat = payload["results"]["api_saturation"]
    half, fanout = payload["results"]["api_half_saturation"], payload["results"]["fanout_lag"]
    keys = (("p50", "median"), ("p90", "p90"), ("p99", "p99"))
    return {
        "saturation": lambda path, sub: charts.grouped_bars(
            path, title="api: saturation, plane vs bare quart-trio (wrk)", subtitle=sub,
            groups=["req/s"], variants=list(sat),
            data={"req/s": {v: _pick(sat[v], "median") for v in sat}},
            ylabel="requests per second"),
        "latency": lambda path, sub: charts.grouped_bars(
            path, title="api: latency at half of saturation", subtitle=sub,
            groups=["p50", "p90", "p99"], variants=list(half),
            data={k: {v: _pick(half[v], key) for v in half} for k, key in keys},
            ylabel="milliseconds"),
        "fanout": lambda path, sub: charts.grouped_bars(
            path, title="api: event fan-out lag (publish to receipt)", subtitle=sub,
            groups=["p50", "p90", "p99"], variants=list(fanout),
            data={k: {v: _pick(fanout[v], key) for v in fanout} for k, key in keys},
            ylabel="milliseconds", log=True),
    }


def _pick(entry: dict[str, Any], key: str) -> Any:
    return entry[key] if entry.get("status") == "ok" else entry
