"""``scale``: how many live sandboxes one host holds.

For each runtime (runsc first, then runc), idle agents are started one after another
in steps (1, 2, 4, 8, ...) and left running. After each step the suite reads every
sandbox's process tree (PSS), the host's MemAvailable, and the start latencies of the
sandboxes that step added (launch to first heartbeat). It stops at the first of:

- memory: the host has given up more than ``MEM_FRACTION`` of the MemAvailable it had
  when the ramp started, or its MemAvailable fell under ``FREE_FLOOR`` of MemTotal (the
  host is shared: the ramp leaves the others their room);
- latency: the step's p90 start latency passed ``LATENCY_FACTOR`` times the median
  start latency of a lone sandbox (measured just before the ramp);
- a sandbox failed to start;
- the count cap (the mode's, or ``--max N``) or the time cap.

After the ramp, the CPU that the live sandboxes burn while idle is read over a window
(``idle_cpu_s``: 60 s in the full mode), at one live sandbox and at the last count,
per process role (so the ptrace stubs show apart from the Sentry and the gofer).

The knee is the last step that broke no bound. Everything started is stopped at the
end, on error or on Ctrl-C too, and the work directory is reconciled.
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import attrs

from ironclaw.host.isolation.spec import SandboxLimits, UserMapping

from . import charts
from .progress import Progress
from .report import SuiteResult, Table, fmt_value
from .sandboxkit import (
    HOST_SIDE,
    ROLE_STUBS,
    Live,
    Slot,
    Target,
    Workdir,
    Workload,
    find_image,
    idle_cpu,
    make_targets,
    tree_memory,
    wait_ready,
)
from .stats import absent, failed, percentile

__all__ = ["LATENCY_FACTOR", "MEM_FRACTION", "run"]

MEM_FRACTION = 0.5
FREE_FLOOR = 0.25
LATENCY_FACTOR = 4.0
# Per extra sandbox beyond the mode's cap: a start takes about a second under runsc.
TIME_PER_SANDBOX_S = 4.0


@attrs.frozen
class Params:
    steps: tuple[int, ...]
    time_cap_s: float
    baseline_runs: int
    settle_s: float
    idle_cpu_s: float = 60.0


MODES = {
    "full": Params(steps=(1, 2, 4, 8, 12, 16, 24, 32, 40, 48, 56, 64), time_cap_s=300,
                   baseline_runs=3, settle_s=2.0),
    "quick": Params(steps=(1, 2, 4, 8), time_cap_s=60, baseline_runs=2, settle_s=1.0,
                    idle_cpu_s=5.0),
    "smoke": Params(steps=(1, 2), time_cap_s=30, baseline_runs=1, settle_s=0.5,
                    idle_cpu_s=1.0),
}


def steps_up_to(count: int) -> tuple[int, ...]:
    """Doubling to 32, then every 32, ending exactly at ``count``."""
    if count < 1:
        raise ValueError("--max must be at least 1")
    steps = [n for n in (1, 2, 4, 8, 16) if n < count]
    steps += range(32, count, 32)
    return (*steps, count)


def with_max(p: Params, count: int | None) -> Params:
    """The mode's parameters with its count cap replaced by ``count`` (``--max``)."""
    if count is None:
        return p
    return attrs.evolve(p, steps=steps_up_to(count),
                        time_cap_s=max(p.time_cap_s, TIME_PER_SANDBOX_S * count))
DEFAULT_RUNTIMES = ("runsc", "runc")


def _meminfo_mib(field: str) -> float:
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/meminfo")


def _mem_available_mib() -> float:
    return _meminfo_mib("MemAvailable")


def _idle_cpu(target: Target, lives: list[Live], seconds: float) -> dict[str, Any]:
    """CPU per idle sandbox over ``seconds``, as a share of one core, by role."""
    def roles() -> dict[str, list[int]]:
        merged: dict[str, list[int]] = {}
        for live in lives:
            for role, pids in target.roles(live).items():
                merged.setdefault(role, []).extend(pids)
        return merged

    used = idle_cpu(roles, seconds)
    per = {role: cpu / seconds / len(lives) * 100 for role, cpu in used.items()}
    return {"live": len(lives), "window_s": seconds,
            "core_percent_per_sandbox": per.pop("total"), "by_role_percent": per}


def _stop_all(target: Target, lives: list[Live]) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda live: _quiet_stop(target, live), lives))
    lives.clear()


def _quiet_stop(target: Target, live: Live) -> None:
    try:
        target.stop(live)
    except Exception as exc:  # cleanup goes on; reconcile catches what is left
        print(f"  could not stop {live.cid}: {exc}")


def _ramp(target: Target, workdir: Workdir, p: Params, progress: Progress
          ) -> dict[str, Any]:
    mapping = UserMapping()

    def slot(_i: int) -> Slot:
        return Slot.make(workdir, mapping)  # a new session for every launch

    # A lone sandbox's start latency, the reference for the latency bound.
    singles: list[float] = []
    for _ in range(p.baseline_runs):
        live = target.launch(Workload("agent"), slot(0))
        try:
            singles.append(wait_ready(live))
        finally:
            target.stop(live)
    baseline = statistics.median(singles)
    lives: list[Live] = []
    curve: list[dict[str, Any]] = []
    started = time.monotonic()
    avail0 = _mem_available_mib()
    floor = FREE_FLOOR * _meminfo_mib("MemTotal")
    idle: list[dict[str, Any]] = []
    stop_reason = "count cap reached, no bound broken"
    knee: int | None = None
    try:
        with progress.phase(f"scale {target.name}: ramp to {p.steps[-1]}",
                            total=p.steps[-1]) as ph:
            for count in p.steps:
                if time.monotonic() - started > p.time_cap_s:
                    stop_reason = f"time cap ({p.time_cap_s:.0f} s) reached"
                    break
                step_latencies: list[float] = []
                broke = None
                while len(lives) < count:
                    live = target.launch(Workload("agent"), slot(len(lives)))
                    lives.append(live)
                    try:
                        step_latencies.append(wait_ready(live, timeout=120))
                    except Exception as exc:
                        broke = f"sandbox {len(lives)} failed to start: {exc}"
                        break
                    ph.advance()
                    ph.note(f"scale {target.name}: {len(lives)} live")
                if broke:
                    stop_reason = broke
                    break
                time.sleep(p.settle_s)
                pss = 0.0
                by_role: dict[str, float] = {}
                for live in lives:
                    if live.popen.poll() is not None:
                        broke = f"a sandbox exited while idle (rc {live.popen.returncode})"
                    for role, used in tree_memory(target.roles(live)).items():
                        pss += used["pss_mib"]
                        by_role[role] = by_role.get(role, 0.0) + used["pss_mib"] / count
                avail = _mem_available_mib()
                lat = sorted(step_latencies)
                point = {"count": count, "pss_per_sandbox_mib": pss / count,
                         "pss_per_sandbox_by_role_mib": by_role,
                         "pss_total_mib": pss, "host_used_mib": avail0 - avail,
                         "host_used_per_sandbox_mib": (avail0 - avail) / count,
                         "mem_available_mib": avail,
                         "start_p50_ms": statistics.median(lat) * 1000,
                         "start_p90_ms": percentile(lat, 0.9) * 1000,
                         "started_this_step": len(lat),
                         "elapsed_s": round(time.monotonic() - started, 1)}
                curve.append(point)
                if broke:
                    stop_reason = broke
                    break
                if count == 1 and p.idle_cpu_s:
                    idle.append(_idle_cpu(target, lives, p.idle_cpu_s))
                if avail < floor:
                    stop_reason = (f"memory floor: {avail:.0f} MiB available < "
                                   f"{FREE_FLOOR:.0%} of the host's memory")
                    break
                if avail0 - avail > MEM_FRACTION * avail0:
                    stop_reason = (f"memory bound: {avail0 - avail:.0f} MiB used > "
                                   f"{MEM_FRACTION:.0%} of {avail0:.0f} MiB available")
                    break
                if point["start_p90_ms"] > LATENCY_FACTOR * baseline * 1000:
                    stop_reason = (f"latency bound: p90 start {point['start_p90_ms']:.0f} ms >"
                                   f" {LATENCY_FACTOR:g} x {baseline * 1000:.0f} ms (1 sandbox)")
                    break
                knee = count
        if len(lives) > 1 and p.idle_cpu_s and all(
                live.popen.poll() is None for live in lives):
            with progress.phase(f"scale {target.name}: idle CPU of {len(lives)}"):
                idle.append(_idle_cpu(target, lives, p.idle_cpu_s))
    finally:
        with progress.phase(f"scale {target.name}: stopping {len(lives)} sandboxes"):
            _stop_all(target, lives)
    return {"status": "ok", "baseline_start_ms": baseline * 1000,
            "baseline_samples_ms": [s * 1000 for s in singles], "curve": curve,
            "knee": knee, "stop_reason": stop_reason,
            "mem_available_at_start_mib": avail0,
            "max_live": max((pt["count"] for pt in curve), default=0), "idle_cpu": idle}


def run(*, mode: str = "quick", progress: Progress, runtimes: tuple[str, ...] | None = None,
        image_preference: str = "sealed", max_live: int | None = None) -> SuiteResult:
    """``max_live``: the count cap (``--max``), instead of the mode's last step."""
    p = with_max(MODES[mode], max_live)
    names = runtimes or DEFAULT_RUNTIMES
    with Workdir() as workdir:
        with progress.phase("preparing the image"):
            image, notes = find_image(workdir, prefer=image_preference)
        targets, missing = make_targets(image, workdir, names)
        ramps: dict[str, dict[str, Any]] = {}
        for name in names:
            if name in missing:
                ramps[name] = absent(missing[name])
                continue
            try:
                ramps[name] = _ramp(targets[name], workdir, p, progress)
            except Exception as exc:
                ramps[name] = failed(f"{type(exc).__name__}: {exc}")
    results: dict[str, dict[str, dict[str, Any]]] = {"knee": {}, "pss_per_sandbox_at_knee": {}}
    for name, ramp in ramps.items():
        if ramp.get("status") != "ok":
            results["knee"][name] = {k: v for k, v in ramp.items()}
            results["pss_per_sandbox_at_knee"][name] = {k: v for k, v in ramp.items()}
            continue
        knee = ramp["knee"]
        at = next((pt for pt in ramp["curve"] if pt["count"] == knee), None)
        results["knee"][name] = ({"status": "ok", "unit": "sandboxes", "n": 1, "median": knee,
                                  "bound_broken": bound_broken(ramp)}
                                 if knee is not None else
                                 failed("bound broken at the first step"))
        results["pss_per_sandbox_at_knee"][name] = (
            {"status": "ok", "unit": "MiB", "n": 1, "median": at["pss_per_sandbox_mib"]}
            if at else failed("no knee"))
    limits = SandboxLimits()
    method = {
        "steps": ", ".join(map(str, p.steps)) + " live sandboxes (idle agents)",
        "bounds": f"stop when host memory used since the ramp began > {MEM_FRACTION:.0%} of "
                  f"MemAvailable at its start, or a step's p90 start latency > "
                  f"{LATENCY_FACTOR:g}x a lone sandbox's median start, or a start fails, "
                  f"or MemAvailable < {FREE_FLOOR:.0%} of MemTotal",
        "idle CPU": f"user+system time of every process of every live sandbox over "
                    f"{p.idle_cpu_s:g} s, at 1 live and at the last count, as % of one "
                    "core per sandbox",
        "caps": f"{p.steps[-1]} sandboxes, {p.time_cap_s:.0f} s per runtime",
        "image": image.description,
        "start latency": "launch (`<runtime> run`, foreground) to the agent's first heartbeat",
        "host side": HOST_SIDE,
        "per-sandbox limits": f"{limits.memory_bytes >> 20} MiB, {limits.cpus:g} CPU",
        "memory": "PSS of every process in every sandbox's tree, divided by the count; "
                  "host-used = drop in MemAvailable since the ramp began, per sandbox",
    }
    notes += [f"{n}: absent ({why})" for n, why in missing.items()]
    extra = {"ramps": ramps,
             "bounds": {"mem_fraction": MEM_FRACTION, "latency_factor": LATENCY_FACTOR}}
    result = SuiteResult("scale", mode, method, results, {}, [], extra, notes,
                         ratio_section=False)
    result.tables = tables_for(result.payload({}, "", 0.0, []))
    result.charts = charts_for(result.payload({}, "", 0.0, []))
    return result


def bound_broken(ramp: dict[str, Any]) -> bool:
    """Did the ramp stop on a bound (a knee), or on a cap (the knee is above it)?"""
    return not str(ramp.get("stop_reason", "")).startswith(("count cap", "time cap"))


def knee_text(ramp: dict[str, Any]) -> str:
    if ramp.get("knee") is None:
        return "none (the first step broke a bound)"
    if bound_broken(ramp):
        return str(ramp["knee"])
    return f">= {ramp['knee']} (cap reached, no bound broken)"


def tables_for(payload: dict[str, Any]) -> list[Table]:
    """The scale tables, from a saved result (``python -m bench render``)."""
    rows, curve_rows, cpu_rows = [], [], []
    for name, ramp in payload["extra"]["ramps"].items():
        if ramp.get("status") != "ok":
            rows.append([name, ramp["status"], "-", "-", "-", ramp.get("reason", "")])
            continue
        for idle in ramp.get("idle_cpu", ()):
            stubs = idle["by_role_percent"].get(ROLE_STUBS)
            cpu_rows.append([name, str(idle["live"]), f"{idle['window_s']:g} s",
                             f"{idle['core_percent_per_sandbox']:.2f} %",
                             "-" if stubs is None else f"{stubs:.2f} %"])
        at = next((pt for pt in ramp["curve"] if pt["count"] == ramp["knee"]), None)
        rows.append([name, knee_text(ramp), fmt_value(ramp["baseline_start_ms"]),
                     fmt_value(at["pss_per_sandbox_mib"], "MiB") if at else "-",
                     str(ramp["max_live"]), ramp["stop_reason"]])
        for pt in ramp["curve"]:
            curve_rows.append([name, str(pt["count"]),
                               fmt_value(pt["pss_per_sandbox_mib"], "MiB"),
                               fmt_value(pt["host_used_mib"], "MiB"),
                               fmt_value(pt["start_p50_ms"]), fmt_value(pt["start_p90_ms"]),
                               f"{pt['elapsed_s']:.0f} s"])
    return [
        Table("Knee (live sandboxes before a bound broke)",
              ["runtime", "knee", "lone start", "PSS per sandbox at knee", "max live",
               "stopped because"], rows,
              "A knee written '>= N' means the ramp reached its cap with no bound broken: "
              "the host holds at least N; where it would break is not measured."),
        Table("Curve", ["runtime", "live", "PSS per sandbox", "host memory used",
                        "start p50 (step)", "start p90 (step)", "elapsed"], curve_rows,
              "host memory used = the drop in MemAvailable since the ramp began (other "
              "tenants' work moves it too; PSS is the sandboxes' own)."),
        Table("Idle CPU per sandbox", ["runtime", "live", "window",
                                       "per sandbox (% of a core)", "of which ptrace stubs"],
              cpu_rows, "user+system time of each sandbox's whole process tree while its "
              "agent waits for work."),
    ]


def charts_for(payload: dict[str, Any]) -> dict[str, charts.ChartFn]:
    """The scale chart, drawn from a saved result (``python -m bench render``)."""
    ramps = payload["extra"]["ramps"]
    bounds = payload["extra"]["bounds"]
    ok = {n: r for n, r in ramps.items() if r.get("status") == "ok"}
    panels = [
        charts.Panel({n: [(pt["count"], pt["pss_per_sandbox_mib"]) for pt in r["curve"]]
                      for n, r in ok.items()}, "PSS per sandbox (MiB)"),
        charts.Panel({n: [(pt["count"], pt["host_used_mib"]) for pt in r["curve"]]
                      for n, r in ok.items()},
                     "host memory used since\nthe ramp began (MiB)",
                     {n: bounds["mem_fraction"] * r["mem_available_at_start_mib"]
                      for n, r in ok.items()}, "memory bound", log=False),
        charts.Panel({n: [(pt["count"], pt["start_p90_ms"]) for pt in r["curve"]]
                      for n, r in ok.items()}, "start p90 of the step (ms)",
                     {n: bounds["latency_factor"] * r["baseline_start_ms"]
                      for n, r in ok.items()}, "latency bound", log=False),
    ]
    marks = {n: (float(r["knee"]), ("knee" if bound_broken(r) else "cap reached")
                 + f" ({r['knee']})") for n, r in ok.items() if r["knee"] is not None}
    return {"curve": lambda path, sub: charts.curve_panels(
        path, title="scale: memory and start latency as live sandboxes are added",
        subtitle=sub, xlabel="live sandboxes (idle agents)", panels=panels, marks=marks)}
