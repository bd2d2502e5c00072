"""The chaos suite: does anything accepted get lost or answered twice when the control
plane and its agents are killed, under each runtime? (``python -m bench chaos``)

One run per runtime (process, runc, runsc; an absent one is reported absent), each in a
fresh state directory, driven by :mod:`bench.chaos_scenario`: webhook chats with an
external receiver counting replies by idempotency key, the control plane killed with
SIGKILL mid-turn, mid-delivery and during a sandbox start and restarted, agents killed
and frozen. It reports, per runtime: the faults made, events accepted, lost and
doubled, stray replies, what was left behind, inbound rows not pruned, and recovery
time (restart to the first reply of the backlog, p50 and p99).

Modes: ``full`` (``make chaos``) makes over 100 control-plane kills under runsc;
``quick`` a few per runtime; ``smoke`` the smallest run, ``process`` only.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from pathlib import Path
from typing import Any

import attrs
import trio

from . import charts
from .chaos_scenario import ChaosPlan, run_scenario
from .progress import Progress
from .queue import plane_availability
from .report import SuiteResult, Table
from .sandboxkit import clean_state, image_cache_dir
from .stats import absent, failed, summarise

RUNTIMES = ("process", "runc", "runsc")


@attrs.frozen
class Params:
    plans: dict[str, tuple[int, int, int]]  # runtime -> (plane faults, agent kills, stops)
    chats: int = 3
    drain_timeout_s: float = 180.0


# A plane fault of the "start" phase kills twice (once at random, then during the
# start that follows the restart), so the kills made exceed the faults planned.
MODES = {
    "full": Params({"process": (30, 30, 3), "runc": (30, 30, 3), "runsc": (80, 30, 3)}),
    "quick": Params({"process": (5, 10, 1), "runc": (5, 10, 1), "runsc": (5, 10, 1)},
                    drain_timeout_s=90.0),
    "smoke": Params({"process": (2, 2, 1)}, chats=2, drain_timeout_s=60.0),
}


def run(*, mode: str = "quick", progress: Progress,
        runtimes: tuple[str, ...] | None = None) -> SuiteResult:
    p = MODES[mode]
    # Named runtimes run alone (``--runtimes runsc``: only runsc); by default all three.
    names = tuple(n for n in (runtimes or RUNTIMES) if n in p.plans)
    scratch = Path(tempfile.mkdtemp(prefix="ironclaw-bench-chaos-", dir="/var/tmp"))
    scratch.chmod(0o711)  # sandboxes reach their state from inside a user namespace
    outcomes: dict[str, dict[str, Any]] = {}
    try:
        availability = plane_availability(names, scratch)
        for name in names:
            if availability[name] is not None:
                continue
            faults, kills, stops = p.plans[name]
            plan = ChaosPlan(name, faults, kills, stops, chats=p.chats,
                             drain_timeout_s=p.drain_timeout_s)
            root = scratch / name
            root.mkdir(mode=0o711)
            with progress.phase(f"chaos under {name}") as phase:
                try:
                    outcome = trio.run(functools.partial(
                        run_scenario, plan, root, image_cache=image_cache_dir(),
                        log=phase.note))
                    outcomes[name] = outcome.summary()
                except Exception as exc:
                    outcomes[name] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
                finally:
                    clean_state(root / "state")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return assemble(mode, p, outcomes, availability)


def assemble(mode: str, p: Params, outcomes: dict[str, dict[str, Any]],
             availability: dict[str, str | None]) -> SuiteResult:
    results: dict[str, dict[str, dict[str, Any]]] = {"recovery": {}}
    for name, why in availability.items():
        if why is not None:
            results["recovery"][name] = absent(why)
        elif "error" in outcomes.get(name, {"error": "did not run"}):
            results["recovery"][name] = failed(outcomes.get(name, {}).get("error", "?"))
        else:
            results["recovery"][name] = summarise(outcomes[name]["recovery_s"], unit="s",
                                                  scale=1.0)
    method = {
        "plans": {n: dict(zip(("plane_faults", "agent_kills", "stops"), plan, strict=True))
                  for n, plan in p.plans.items()},
        "chats": p.chats, "drain_timeout_s": p.drain_timeout_s,
        "driver": "signed webhook events, each retried with its id until 200; replies "
                  "counted by Idempotency-Key on a real HTTP receiver on loopback",
        "faults": "control plane SIGKILL mid-turn, mid-delivery (the receiver kills it "
                  "before answering a reply) and during a sandbox start, each followed "
                  "by a restart; agent SIGKILL (every process of the sandbox); agent "
                  "SIGSTOP until the sweeper acts",
        "recovery": "from the restart (spawn of the new control plane) to the first reply "
                    "to an event that was waiting when the old one died",
    }
    result = SuiteResult("chaos", mode, method, results, ratios={},
                         extra={"outcomes": outcomes, "availability": availability},
                         notes=[f"{n}: absent ({why})" for n, why in availability.items()
                                if why is not None], ratio_section=False)
    result.tables = tables_for(result.payload({}, "", 0.0, []))
    result.charts = charts_for(result.payload({}, "", 0.0, []))
    return result


def tables_for(payload: dict[str, Any]) -> list[Table]:
    outcomes = payload["extra"]["outcomes"]
    rows = []
    for name, o in outcomes.items():
        if "error" in o:
            rows.append([name, "error: " + o["error"][:80], *[""] * 8])
            continue
        kills = o["plane_kills"]
        rows.append([name, str(o["plane_kills_total"]),
                     ", ".join(f"{k} {v}" for k, v in sorted(kills.items())),
                     str(o["agent_kills"]), str(o["stops"]), str(o["events"]),
                     str(o["lost"]), str(o["doubled"]),
                     str(o["stray"] + o["apologies"]),
                     "none" if not o["leftovers"] and not o["inbound_left"] else
                     f"{len(o['leftovers'])} left, {o['inbound_left']} rows"])
    faults = Table("Faults and outcome per runtime",
                   ["runtime", "plane kills", "by phase", "agent kills", "agent stops",
                    "events accepted", "lost", "doubled", "stray", "left behind"], rows,
                   note="lost: an accepted event never answered; doubled: answered under "
                        "two or more idempotency keys; stray: a reply to no accepted event "
                        "(apologies included); left behind: containers, bundles and "
                        "cgroups after a clean stop, and inbound rows not pruned.")
    recovery = payload["results"]["recovery"]
    rec_rows = []
    for name, entry in recovery.items():
        if entry.get("status") == "ok":
            rec_rows.append([name, str(entry["n"]), f"{entry['median']:.2f}",
                             f"{entry['p99']:.2f}", f"{entry['max']:.2f}"])
        else:
            rec_rows.append([name, entry.get("status", "?"), entry.get("reason", "")[:60],
                             "", ""])
    return [faults, Table("Recovery: restart to the first reply of the backlog (s)",
                          ["runtime", "n", "p50", "p99", "max"], rec_rows,
                          note="One run; nearest-rank percentiles (p99 is the maximum "
                               "under 100 samples).")]


def charts_for(payload: dict[str, Any]) -> dict[str, charts.ChartFn]:
    recovery = payload["results"]["recovery"]
    names = list(recovery)
    return {"recovery": lambda path, sub: charts.grouped_bars(
        path, title="chaos: restart to the first reply of the backlog", subtitle=sub,
        groups=["p50", "p99"], variants=names,
        data={"p50": {n: _value(recovery[n], "median") for n in names},
              "p99": {n: _value(recovery[n], "p99") for n in names}},
        ylabel="seconds")}


def _value(entry: dict[str, Any], key: str) -> Any:
    return entry[key] if entry.get("status") == "ok" else entry
