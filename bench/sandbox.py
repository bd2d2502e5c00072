"""``sandbox``: the price of the wall.

Every runtime runs the same hardened bundle (the production spec from ``build_spec``;
only ``process.args`` differs per workload), and the bare process runs the same program
on the host as the floor. Workloads, each interleaved round-robin across runtimes:

- cold start: a fresh copy of the rootfs, page caches dropped where permitted, then
  a start-and-exit (``noop``), timed around the runtime's ``run`` command;
- warm start: the same, on the staged rootfs with warm caches;
- CPU-bound, syscall-bound and file-I/O workloads, sized (by calibrating on the bare
  process) to run well past launch cost; the workload reports its own in-sandbox
  elapsed time, so launch cost is separable from the work;
- the agent: launch to first heartbeat, then its idle memory;
- memory per live sandbox, with 1 and several sandboxes live: PSS and RSS of every
  process in the runtime's tree (for runsc: the CLI, the Sentry, the gofer and the
  ptrace stubs, attributed by role), divided by the number of sandboxes.

Ratios are reported against runc and against the bare process, from the same run.
"""

from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from ironclaw.host.isolation.spec import SandboxLimits, UserMapping
from ironclaw.host.isolation.standin import build_busybox_rootfs

from . import charts
from .progress import Progress
from .report import SuiteResult, Table, cell, fmt_value
from .sandboxkit import (
    BARE,
    HOST_SIDE,
    ROLES,
    VARIANTS,
    BenchImage,
    Live,
    OciTarget,
    RunResult,
    Slot,
    Target,
    Workdir,
    Workload,
    cgroup_memory_mib,
    drop_caches,
    find_image,
    fresh_rootfs,
    live_set,
    make_targets,
    tree_memory,
    wait_ready,
)
from .stats import absent, failed, interleave, ratio, summarise

__all__ = ["SEED", "VARIANTS", "charts_for", "run"]


@attrs.frozen
class Params:
    warm: int
    warm_warmup: int
    cold: int
    work_runs: int
    work_warmup: int
    seconds: dict[str, float]  # target bare-process seconds per workload
    agent: int
    mem_counts: tuple[int, ...]
    mem_rounds: int
    settle_s: float


MODES = {
    "full": Params(warm=20, warm_warmup=2, cold=10, work_runs=8, work_warmup=1,
                   seconds={"cpu": 2.0, "syscall": 0.5, "io": 0.5}, agent=8,
                   mem_counts=(1, 4), mem_rounds=3, settle_s=2.0),
    "quick": Params(warm=5, warm_warmup=1, cold=3, work_runs=3, work_warmup=0,
                    seconds={"cpu": 0.5, "syscall": 0.15, "io": 0.15}, agent=3,
                    mem_counts=(1, 2), mem_rounds=1, settle_s=1.0),
    "smoke": Params(warm=2, warm_warmup=1, cold=1, work_runs=1, work_warmup=0,
                    seconds={"cpu": 0.05, "syscall": 0.02, "io": 0.02}, agent=1,
                    mem_counts=(1,), mem_rounds=1, settle_s=0.5),
}
WORKLOADS = ("cpu", "syscall", "io")
TIME_MEASURES = ("cold_start", "warm_start", "start_minimal", "agent_ready", "cpu", "syscall",
                 "io")
LABELS = {"cold_start": "cold start", "warm_start": "warm start",
          "start_minimal": "warm start,\nruntime only",
          "agent_ready": "agent: launch to\nfirst heartbeat", "cpu": "CPU-bound\n(in sandbox)",
          "syscall": "syscall-bound\n(in sandbox)", "io": "file I/O + fsync\n(in sandbox)"}
RATIO_PAIRS = (("runsc", "runc"), ("runsc", BARE), ("runc", BARE), ("crun", "runc"),
               ("crun", BARE))

# The anchor's figures for the same questions: THEIRS, an expectation profile taken
# from gVisor guidance, not a measurement, and their one published CI run (a GitHub
# runner, runsc's systrap platform, a busybox bundle without seccomp, median of 25).
SEED = {
    "expectation (theirs, not measured)": {
        "cpu": "near native (within a few percent)",
        "memory": "tens of MiB per sandbox (Sentry + gofer)",
        "start": "additive, low hundreds of ms",
        "syscall": "1.5x to 2.5x on syscall/I-O-heavy work",
    },
    "published CI run (theirs; runsc systrap vs runc, 4 vCPU Azure VM)": {
        "cold_start": "77 ms vs 38 ms (2.0x)", "warm_start": "18 ms vs 5 ms (3.6x)",
        "cpu": "21 ms vs 5 ms (launch-dominated)",
        "syscall": "21 ms vs 5 ms (launch-dominated)", "memory": "not captured (read 0)",
    },
}


def _report_s(result: RunResult) -> float:
    result.check()
    report = result.report()
    if "error" in report:
        raise RuntimeError(str(report["error"]))
    return float(report["elapsed_s"])


def _calibrate(bare: Target, image: BenchImage, slot: Slot, name: str, target_s: float
               ) -> tuple[int, float]:
    """Iterations for ``name`` to take about ``target_s`` on the bare process."""
    n = {"cpu": 20_000, "syscall": 5_000, "io": 20}[name] if image.kind == "sealed" else \
        {"cpu": 50_000, "syscall": 2_000, "io": 5}[name]
    elapsed = 0.0
    for _ in range(4):
        elapsed = _report_s(bare.run(Workload(name, iterations=n), slot))
        if elapsed >= 0.2 or elapsed >= target_s:
            break
        n *= 4 if elapsed < 0.05 else 2
    per = elapsed / n if elapsed > 0 else 1e-4
    iterations = max(1, round(target_s / per))
    return iterations, per * iterations


def _memory_sample(target: Target, lives: list[Live], readings: int = 3
                   ) -> dict[str, Any]:
    """Per-sandbox PSS/RSS (MiB), by role; the median of ``readings`` 0.3 s apart."""
    totals: list[tuple[float, float, dict[str, float], float | None]] = []
    for i in range(readings):
        if i:
            time.sleep(0.3)
        pss = rss = 0.0
        roles: dict[str, float] = {}
        cg_total: float | None = 0.0
        for live in lives:
            if live.popen.poll() is not None:
                raise RuntimeError(f"{target.name} sandbox exited while idle "
                                   f"(rc {live.popen.returncode})")
            for role, mem in tree_memory(target.roles(live)).items():
                pss += mem["pss_mib"]
                rss += mem["rss_mib"]
                roles[role] = roles.get(role, 0.0) + mem["pss_mib"]
            cg = cgroup_memory_mib(live.cgroup)
            cg_total = None if cg is None or cg_total is None else cg_total + cg
        n = len(lives)
        totals.append((pss / n, rss / n, {k: v / n for k, v in roles.items()},
                       None if cg_total is None else cg_total / n))
    totals.sort(key=lambda t: t[0])
    pss, rss, roles, cg = totals[len(totals) // 2]
    return {"pss_mib": pss, "rss_mib": rss, "roles_pss_mib": roles, "cgroup_mib": cg}


def _launch_idle(target: Target, workdir: Workdir, count: int, settle_s: float,
                 slots: list[Slot]) -> tuple[list[float], dict[str, Any]]:
    """Start ``count`` agents, wait for every first heartbeat, let them settle, read
    their memory, stop them. Returns the ready times and the memory sample."""
    # A fresh slot (a new session: new queue files) for every launch. Reusing one would
    # restart an agent on an outbound queue it wrote before, which is another case
    # (under runsc it starts slower every time: see the notes on the fence clock).
    del slots[:]
    slots.extend(Slot.make(workdir, UserMapping()) for _ in range(count))
    with live_set(target) as lives:
        ready: list[float] = []
        for slot in slots:
            live = target.launch(Workload("agent"), slot)
            lives.append(live)
            try:
                ready.append(wait_ready(live))
            except Exception as exc:
                tail = getattr(target, "stderr_tail", lambda _l: "")(live)
                raise RuntimeError(f"{exc}; stderr: {tail!r}") from None
        time.sleep(settle_s)
        memory = _memory_sample(target, lives)
    return ready, memory


def run(*, mode: str = "quick", progress: Progress, variants: tuple[str, ...] = VARIANTS,
        image_preference: str = "sealed", iterations: int | None = None) -> SuiteResult:
    p = MODES[mode]
    if iterations is not None:
        p = attrs.evolve(p, warm=iterations)
    with Workdir() as workdir:
        return _run(p, mode, progress, variants, image_preference, workdir)


def _run(p: Params, mode: str, progress: Progress, variants: tuple[str, ...],
         image_preference: str, workdir: Workdir) -> SuiteResult:
    notes: list[str] = []
    with progress.phase("preparing the image"):
        image, image_notes = find_image(workdir, prefer=image_preference)
    notes += image_notes
    targets, missing = make_targets(image, workdir, variants)
    bare = targets.get(BARE)
    slot = Slot.make(workdir, UserMapping())
    results: dict[str, dict[str, dict[str, Any]]] = {}

    def fill(measure: str, samples: dict[str, list[float]], failures: dict[str, str],
             unit: str = "ms", scale: float = 1000.0,
             errors: dict[str, list[str]] | None = None) -> None:
        entry: dict[str, dict[str, Any]] = {}
        for name in variants:
            if name in missing:
                entry[name] = absent(missing[name])
            elif name in failures:
                entry[name] = failed(failures[name])
            else:
                entry[name] = summarise(samples.get(name, []), unit=unit, scale=scale)
                if errors and errors.get(name):  # tolerated failures: counted, shown
                    entry[name]["failed_samples"] = len(errors[name])
                    entry[name]["failure"] = errors[name][-1]
                    notes.append(f"{measure} on {name}: {len(errors[name])} failed "
                                 f"sample(s), e.g. {errors[name][-1][:200]}")
        results[measure] = entry

    # Calibrate the workloads on the bare process.
    calibration: dict[str, dict[str, Any]] = {}
    sizes: dict[str, int] = {}
    if bare is not None:
        with progress.phase("calibrating workloads on the bare process"):
            for name in WORKLOADS:
                n, predicted = _calibrate(bare, image, slot, name, p.seconds[name])
                sizes[name] = n
                calibration[name] = {"iterations": n, "bare_seconds_predicted":
                                     round(predicted, 3), "target_seconds": p.seconds[name]}
    else:
        sizes = {"cpu": 20_000, "syscall": 5_000, "io": 50}

    order = [n for n in variants if n in targets]
    # Warm start.
    # Warm start: the image's own start-and-exit, and (when the image is the sealed
    # one) the runtime alone, starting a static busybox `true` on the same spec.
    noop = Workload("noop")
    minimal = None
    if image.kind == "sealed":
        try:
            minimal = BenchImage("busybox", build_busybox_rootfs(workdir.fresh("minimal")),
                                 description="busybox /bin/true")
        except FileNotFoundError as exc:
            notes.append(f"runtime-only start not measured: {exc}")
    cases: dict[str, Callable[[], float]] = {}
    for name in order:
        cases[f"warm_start|{name}"] = _timed(targets[name], noop, slot)
        if minimal is not None:
            cases[f"start_minimal|{name}"] = _timed(targets[name], noop, slot, minimal)
    with progress.phase("warm start", total=(p.warm + p.warm_warmup) * len(cases)) as ph:
        warm = interleave(cases, iterations=p.warm, warmup=p.warm_warmup,
                          on_sample=lambda _n: ph.advance())
    for measure in ("warm_start", "start_minimal"):
        if measure == "start_minimal" and minimal is None:
            continue
        fill(measure, {k.split("|")[1]: v for k, v in warm.items()
                       if k.startswith(measure + "|")},
             {k.split("|")[1]: v for k, v in warm.failures.items()
              if k.startswith(measure + "|")})

    # Cold start.
    dropped: list[str] = []

    def cold_case(target: Target) -> Callable[[], float]:
        def case() -> float:
            rootfs = fresh_rootfs(image, workdir)
            try:
                ok, why = drop_caches()
                dropped.append("dropped" if ok else why)
                result = target.run(noop, slot, rootfs=rootfs).check()
                return result.wall_s
            finally:
                shutil.rmtree(rootfs.parent, ignore_errors=True)
        return case

    with progress.phase("cold start (fresh rootfs, caches dropped)",
                        total=p.cold * len(order)) as ph:
        cold = interleave({n: cold_case(targets[n]) for n in order}, iterations=p.cold,
                          on_sample=lambda _n: ph.advance())
    fill("cold_start", cold, cold.failures)
    drop_status = ("page caches dropped before every cold start" if dropped and all(
        d == "dropped" for d in dropped) else f"page caches NOT dropped: {sorted(set(dropped))}")

    # Workloads.
    for name in WORKLOADS:
        work = Workload(name, iterations=sizes[name])
        with progress.phase(f"{name} workload ({sizes[name]} iterations)",
                            total=(p.work_runs + p.work_warmup) * len(order)) as ph:
            samples = interleave({n: _inner(targets[n], work, slot) for n in order},
                                 iterations=p.work_runs, warmup=p.work_warmup,
                                 on_sample=lambda _n: ph.advance())
        fill(name, {n: [s[0] for s in v] for n, v in samples.items()}, samples.failures)
        fill(f"{name}_wall", {n: [s[1] for s in v] for n, v in samples.items()},
             samples.failures)

    # The agent: launch to first heartbeat, idle memory (1 sandbox).
    slots: list[Slot] = []
    memory: dict[int, dict[str, list[dict[str, Any]]]] = {}
    with progress.phase("agent: first heartbeat and idle memory",
                        total=p.agent * len(order)) as ph:
        def agent_case(target: Target) -> Callable[[], dict[str, Any]]:
            def case() -> dict[str, Any]:
                ready, mem = _launch_idle(target, workdir, 1, p.settle_s, slots)
                return {"ready": ready[0], "memory": mem}
            return case
        agent = interleave({n: agent_case(targets[n]) for n in order}, iterations=p.agent,
                           on_sample=lambda _n: ph.advance(), tolerate=1)
    fill("agent_ready", {n: [s["ready"] for s in v] for n, v in agent.items()},
         agent.failures, errors=agent.errors)
    memory[1] = {n: [s["memory"] for s in v] for n, v in agent.items()}
    mem_failures = {1: dict(agent.failures)}
    for count in p.mem_counts:
        if count == 1:
            continue
        with progress.phase(f"memory with {count} live sandboxes each",
                            total=p.mem_rounds * len(order)) as ph:
            def many_case(target: Target, count: int = count) -> Callable[[], dict[str, Any]]:
                def case() -> dict[str, Any]:
                    return _launch_idle(target, workdir, count, p.settle_s, slots)[1]
                return case
            many = interleave({n: many_case(targets[n]) for n in order},
                              iterations=p.mem_rounds, on_sample=lambda _n: ph.advance(),
                              tolerate=1)
        memory[count] = dict(many)
        mem_failures[count] = dict(many.failures)
    roles: dict[str, dict[str, Any]] = {}
    for count, per in memory.items():
        fill(f"memory_pss_{count}", {n: [m["pss_mib"] for m in v] for n, v in per.items()},
             mem_failures[count], unit="MiB", scale=1.0)
        fill(f"memory_rss_{count}", {n: [m["rss_mib"] for m in v] for n, v in per.items()},
             mem_failures[count], unit="MiB", scale=1.0)
        roles[str(count)] = {n: _median_roles(v) for n, v in per.items() if v}
        cgroup = {n: [m["cgroup_mib"] for m in v if m["cgroup_mib"] is not None]
                  for n, v in per.items()}
        fill(f"memory_cgroup_{count}", cgroup, mem_failures[count], unit="MiB", scale=1.0)
        if BARE in results[f"memory_cgroup_{count}"]:
            results[f"memory_cgroup_{count}"][BARE] = {
                "status": "n/a", "reason": "the bare process has no container cgroup"}
    return _assemble(p, mode, image, notes, results, roles, calibration, drop_status,
                     targets, missing, variants, minimal is not None)


def _timed(target: Target, work: Workload, slot: Slot, image: BenchImage | None = None
           ) -> Callable[[], float]:
    def case() -> float:
        return target.run(work, slot, image=image).check().wall_s
    return case


def _inner(target: Target, work: Workload, slot: Slot) -> Callable[[], tuple[float, float]]:
    def case() -> tuple[float, float]:
        result = target.run(work, slot, timeout=900)
        return _report_s(result), result.wall_s
    return case


def _median_roles(samples: list[dict[str, Any]]) -> dict[str, float]:
    keys = sorted({k for s in samples for k in s["roles_pss_mib"]})
    return {k: statistics.median(s["roles_pss_mib"].get(k, 0.0) for s in samples)
            for k in keys}


def _assemble(p: Params, mode: str, image: BenchImage, notes: list[str],
              results: dict[str, dict[str, dict[str, Any]]], roles: dict[str, Any],
              calibration: dict[str, Any], drop_status: str, targets: dict[str, Target],
              missing: dict[str, str], variants: tuple[str, ...],
              has_minimal: bool) -> SuiteResult:
    time_measures = tuple(m for m in TIME_MEASURES if m != "start_minimal" or has_minimal)
    ratios: dict[str, float | None] = {}
    mem_key = f"memory_pss_{p.mem_counts[0]}"
    for measure in (*time_measures, mem_key):
        for a, b in RATIO_PAIRS:
            if a in variants and b in variants:
                ratios[f"{measure} {a}/{b}"] = ratio(results[measure].get(a),
                                                     results[measure].get(b))
    limits = SandboxLimits()
    method = {
        "iterations": f"warm start {p.warm} (+{p.warm_warmup} discarded), cold start "
                      f"{p.cold}, workloads {p.work_runs} (+{p.work_warmup} discarded), "
                      f"agent {p.agent}, memory {p.mem_rounds} round(s) at "
                      f"{', '.join(map(str, p.mem_counts))} live sandbox(es)",
        "interleaving": "round-robin across runtimes, order rotated every round",
        "image": image.description,
        "bundle": "production spec (build_spec): read-only rootfs, userns 65532, no caps, "
                  "no_new_privs, seccomp allowlist, netns with lo only, cgroup limits "
                  f"{limits.memory_bytes >> 20} MiB / {limits.cpus:g} CPU / pids "
                  f"{limits.pids} (runsc {limits.gvisor_pids}); only process.args differs",
        "timing": "wall clock around `<runtime> run --bundle` in the foreground; CPU, "
                  "syscall and I/O figures are the workload's own in-sandbox elapsed time",
        "starts": "cold and warm start run the image's start-and-exit (sealed image: the "
                  "frozen agent's `--workload noop`, i.e. interpreter start-up); 'runtime "
                  "only' runs a static busybox `true` on the same spec (the anchor's "
                  "`exit 0`)",
        "cold start": drop_status + "; rootfs freshly copied for every run",
        "memory": "PSS and RSS (smaps_rollup) of every process in the runtime's tree, "
                  "per sandbox; median of 3 readings after a settle of "
                  f"{p.settle_s:g} s; cgroup figure is memory.usage (page cache included)",
        "host side": HOST_SIDE,
        "workload sizes": ", ".join(f"{k} {v['iterations']} iterations (~{v['target_seconds']}"
                                    " s bare)" for k, v in calibration.items()) or "default",
    }
    head = ["measure", *variants]
    time_rows = []
    for measure in (*time_measures, "cpu_wall", "syscall_wall", "io_wall"):
        label = LABELS.get(measure, measure.replace("_wall", " (wall, incl. launch)"))
        time_rows.append([label.replace("\n", " "),
                          *[_cell_p(results[measure].get(v)) for v in variants]])
    mem_rows = []
    for count in p.mem_counts:
        for kind in ("pss", "rss", "cgroup"):
            measure = f"memory_{kind}_{count}"
            mem_rows.append([f"{kind.upper() if kind != 'cgroup' else 'cgroup charge'} per "
                             f"sandbox, {count} live",
                             *[cell(results[measure].get(v)) for v in variants]])
    role_rows = []
    first = str(p.mem_counts[0])
    for name in variants:
        for role, value in sorted((roles.get(first, {}).get(name) or {}).items()):
            role_rows.append([name, role, fmt_value(value, "MiB")])
    ratio_rows = []
    pairs = [(a, b) for a, b in RATIO_PAIRS if a in variants and b in variants]
    for measure in (*time_measures, mem_key):
        ratio_rows.append([LABELS.get(measure, measure).replace("\n", " "),
                           *[_fmt_ratio(ratios.get(f"{measure} {a}/{b}")) for a, b in pairs]])
    tables = [
        Table("Times (median, with p90 and p99)", head, time_rows,
              "Each cell: median (p90 / p99). CPU, syscall and I/O rows are measured inside "
              "the sandbox by the workload itself; the wall rows add the launch."),
        Table("Memory per live sandbox (median)", head, mem_rows),
        Table(f"Memory by process role ({first} live sandbox, PSS)",
              ["runtime", "role", "PSS per sandbox"], role_rows),
        Table("Overhead ratios (medians, same run)", ["measure"] + [f"{a} ÷ {b}" for a, b in
                                                                   pairs], ratio_rows),
        _seed_table(results, ratios, mem_key),
    ]
    absent_notes = [f"{name}: absent ({why})" for name, why in missing.items()]
    notes += absent_notes
    if image.kind != "sealed":
        notes.append("The bundle ran the busybox stand-in, not the sealed agent image: the "
                     "workloads are shell loops (syscall loop = builtin test/read of files; "
                     "I/O = dd with fsync, which also forks), and 'agent' is a heartbeat "
                     "write then sleep. Compare ratios within this run only.")
    extra = {"image": attrs.asdict(image, value_serializer=lambda _i, _a, v: str(v)
                                   if isinstance(v, Path) else v),
             "calibration": calibration, "memory_roles_pss_mib": roles, "seed": SEED,
             "variants": list(variants),
             "runtime_argv": {n: t.runtime.run_argv(Path("<bundle>"), "<id>")
                              for n, t in targets.items() if isinstance(t, OciTarget)}}
    result = SuiteResult("sandbox", mode, method, results, ratios, tables, extra, notes,
                         ratio_section=False)
    result.charts = charts_for(result.payload({}, "", 0.0, []))
    return result


RATIO_COLOURS = {"runsc ÷ runc": "#c0392b", "runsc ÷ bare": "#f1948a",
                 "runc ÷ bare": "#2471a3", "crun ÷ runc": "#229954", "crun ÷ bare": "#82e0aa"}


def charts_for(payload: dict[str, Any]) -> dict[str, charts.ChartFn]:
    """The sandbox charts, drawn from a saved result (``python -m bench render``)."""
    results, ratios = payload["results"], payload["ratios"]
    variants = list(payload["extra"]["variants"])
    roles = payload["extra"]["memory_roles_pss_mib"]
    time_measures = [m for m in TIME_MEASURES if m in results]
    counts = sorted(int(k.rsplit("_", 1)[1]) for k in results if k.startswith("memory_pss_"))
    first = str(counts[0])
    mem_key = f"memory_pss_{first}"
    pairs = [f"{a} ÷ {b}" for a, b in RATIO_PAIRS if a in variants and b in variants]
    keys = {f"{a} ÷ {b}": f"{a}/{b}" for a, b in RATIO_PAIRS}
    groups = [*time_measures, mem_key]
    layers = [r for r in ROLES if any(r in v for v in (roles.get(first) or {}).values())]
    return {
        "times": lambda path, sub: charts.grouped_bars(
            path, title="sandbox: start and workload times by runtime", subtitle=sub,
            groups=time_measures, variants=variants, data=results,
            ylabel="milliseconds", group_labels=LABELS),
        "overhead": lambda path, sub: charts.grouped_bars(
            path, title="sandbox: overhead ratios (median ÷ median, same run)", subtitle=sub,
            groups=groups, variants=pairs, colours=RATIO_COLOURS,
            data={m: {pair: (ratios.get(f"{m} {keys[pair]}") if ratios.get(
                f"{m} {keys[pair]}") is not None else {"status": "n/a"}) for pair in pairs}
                for m in groups},
            ylabel="ratio (1 = no overhead)", reference=1.0,
            group_labels={**LABELS, mem_key: f"memory PSS\n({first} live)"}),
        "memory": lambda path, sub: charts.stacked_bars(
            path, title=f"sandbox: memory per live sandbox by process role ({first} live)",
            subtitle=sub, variants=variants, layers=layers,
            data={n: (roles.get(first, {}).get(n) or results[mem_key].get(n) or
                      {"status": "absent"}) for n in variants},
            ylabel="PSS per sandbox (MiB)"),
    }


def _cell_p(entry: dict[str, Any] | None) -> str:
    if not entry or entry.get("status") != "ok":
        return cell(entry)
    return f"{cell(entry)} ({cell(entry, 'p90')} / {cell(entry, 'p99')})"


def _fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else fmt_value(value, "x")


def _seed_table(results: dict[str, Any], ratios: dict[str, float | None], mem_key: str
                ) -> Table:
    expect = SEED["expectation (theirs, not measured)"]
    ci = SEED["published CI run (theirs; runsc systrap vs runc, 4 vCPU Azure VM)"]

    def ours(measure: str) -> str:
        a, b = ratios.get(f"{measure} runsc/runc"), ratios.get(f"{measure} runsc/bare")
        runsc = results.get(measure, {}).get("runsc")
        return (f"runsc {cell(runsc)}; ÷ runc {_fmt_ratio(a)}; ÷ bare {_fmt_ratio(b)}")

    rows = [
        ["CPU-bound", expect["cpu"], ci["cpu"], ours("cpu")],
        ["syscall-bound", expect["syscall"], ci["syscall"], ours("syscall")],
        ["file I/O", expect["syscall"], "not measured", ours("io")],
        ["cold start", expect["start"], ci["cold_start"], ours("cold_start")],
        ["warm start", expect["start"], ci["warm_start"], ours("warm_start")],
        ["warm start, runtime only (busybox true)", expect["start"], ci["warm_start"],
         ours("start_minimal")],
        ["memory per sandbox", expect["memory"], ci["memory"],
         f"runsc {cell(results.get(mem_key, {}).get('runsc'))} PSS; runc "
         f"{cell(results.get(mem_key, {}).get('runc'))}; bare "
         f"{cell(results.get(mem_key, {}).get('bare'))}"],
    ]
    return Table("Seed figures (THEIRS) next to ours", [
        "measure", "theirs: expectation profile (not measured)",
        "theirs: published CI run (systrap, busybox, no seccomp)", "ours (this run)"], rows,
        "The two middle columns are the anchor project's figures, quoted as facts; they were "
        "not measured here. Ours use the ptrace platform (see the host notes).")
