"""Driving ``wrk`` (Debian's package), the external load generator of the api suite.

One run is ``wrk`` for a fixed time against one URL with C connections, optionally
paced (each connection waits ``delay_ms`` between its requests, which is how a plain
``wrk`` holds a rate below saturation). A Lua script counts the answers by status, so
rate-limited answers (429) are reported apart from other non-2xx ones, and prints one
JSON line with the totals and wrk's latency percentiles, which this module parses.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import trio

__all__ = ["available", "run_wrk"]

MARK = "WRKJSON "
SCRIPT = r"""
local threads = {}
local pace = tonumber(os.getenv("WRK_DELAY_MS") or "0")
if pace > 0 then
  function delay() return pace end
end
function setup(thread) table.insert(threads, thread) end
function init(args) ok = 0; limited = 0; other = 0 end
function response(status, headers, body)
  if status == 429 then limited = limited + 1
  elseif status >= 200 and status < 300 then ok = ok + 1
  else other = other + 1 end
end
function done(summary, latency, requests)
  local o, l, x = 0, 0, 0
  for _, t in ipairs(threads) do
    o = o + t:get("ok"); l = l + t:get("limited"); x = x + t:get("other")
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"ok":%d,"status_429":%d,"status_other":%d,' ..
    '"socket_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"min_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, o, l, x, e.connect + e.read + e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.min, latency.max, latency.mean))
end
"""


def available() -> str | None:
    """None if wrk can run here, else why not."""
    return None if shutil.which("wrk") else "wrk not found on PATH (apt-get install wrk)"


async def run_wrk(url: str, *, connections: int, seconds: float, threads: int = 2,
                  headers: dict[str, str] | None = None, delay_ms: int = 0
                  ) -> dict[str, Any]:
    """One wrk run; the totals, req/s and latency (ms) of every answer."""
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        script = Path(tmp) / "count.lua"
        script.write_text(SCRIPT)
        command = ["wrk", f"-t{min(threads, connections)}", f"-c{connections}",
                   f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", str(script)]
        for name, value in (headers or {}).items():
            command += ["-H", f"{name}: {value}"]
        command.append(url)
        env = {**os.environ, "WRK_DELAY_MS": str(delay_ms)}
        done = await trio.run_process(command, capture_stdout=True, capture_stderr=True,
                                      env=env, check=False)
    out = done.stdout.decode("utf-8", "replace")
    line = next((ln for ln in out.splitlines() if ln.startswith(MARK)), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): "
                           f"{done.stderr.decode('utf-8', 'replace')[-500:]}")
    raw = json.loads(line[len(MARK):])
    seconds_run = raw["duration_us"] / 1e6
    return {"connections": connections, "delay_ms": delay_ms,
            "seconds": seconds_run, "requests": raw["requests"],
            "requests_per_s": raw["requests"] / seconds_run if seconds_run else 0.0,
            "ok": raw["ok"], "status_429": raw["status_429"],
            "status_other": raw["status_other"], "socket_errors": raw["socket_errors"],
            "timeouts": raw["timeouts"],
            "status": "ok", "unit": "ms", "n": raw["requests"],
            "median": raw["p50_us"] / 1000, "p90": raw["p90_us"] / 1000,
            "p99": raw["p99_us"] / 1000, "max": raw["max_us"] / 1000,
            "mean": raw["mean_us"] / 1000, "min": raw["min_us"] / 1000}
