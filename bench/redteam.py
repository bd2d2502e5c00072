"""What a hostile sandbox costs everyone else: the second red-team family, measured.

For each probe of :mod:`ironclaw.redteam.hostprobes` (a FIFO where the host reads, a
foreign schema, a connection flood, ...), under runsc and runc: the bystander
session's reply p50 and p99 while the probe runs, against the baseline windows of the
same run (a busy but honest sandbox, first and last), the event loop's lag p99 and
maximum, and the host's resident-memory peak. One control plane per runtime; every
figure of a runtime comes from its one run (:func:`run_host_attacks`). Needs root.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import trio

from ironclaw.host.isolation.runtimes import OciRuntime, RuntimeKind
from ironclaw.redteam.hostattack import HostAttackReport, run_host_attacks

from . import charts
from .progress import Progress
from .report import SuiteResult, Table, cell
from .sandboxkit import image_cache_dir
from .stats import absent, failed, summarise

RUNTIMES = ("runsc", "runc")
# mode -> (short form?, hold seconds, only these probes)
MODES: dict[str, tuple[bool, float | None, tuple[str, ...]]] = {
    "full": (False, None, ()),
    "quick": (True, None, ()),
    "smoke": (True, 2.0, ("host.heartbeat.fifo",)),
}


def _one(kind: RuntimeKind, mode: str, progress: Progress) -> HostAttackReport:
    quick, hold, only = MODES[mode]
    work = Path(tempfile.mkdtemp(prefix="ironclaw-bench-rt-", dir="/var/tmp"))
    work.chmod(0o711)
    try:
        return trio.run(functools.partial(
            run_host_attacks, kind, work, quick=quick, hold_s=hold, only=only,
            image_cache=image_cache_dir(),
            progress=lambda line: progress.log(f"{kind.value}: {line}")))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(*, mode: str = "quick", progress: Progress,
        runtimes: tuple[str, ...] | None = None) -> SuiteResult:
    logging.getLogger("ironclaw").setLevel(logging.CRITICAL + 1)
    reports: dict[str, dict[str, Any]] = {}
    for name in runtimes or RUNTIMES:
        if os.geteuid() != 0:
            reports[name] = absent("needs root (it runs OCI sandboxes)")
        elif OciRuntime.find(RuntimeKind(name), Path("/var/tmp")) is None:
            reports[name] = absent(f"{name} is not installed")
        else:
            try:
                reports[name] = _one(RuntimeKind(name), mode, progress).to_json()
            except Exception as exc:  # one runtime failing leaves the others' figures
                reports[name] = failed(f"{type(exc).__name__}: {exc}"[:300])
    payload = {"results": _results(reports), "extra": {"reports": reports}}
    result = SuiteResult(
        "redteam", mode,
        {"family": "the second red-team family (ironctl redteam --family host)",
         "windows": "one fresh attacked session per probe; the bystander is pinged back "
                    "to back for the probe's hold (at least); baseline: the same launch "
                    "spending the sandbox's whole CPU budget, first and last, the noisier "
                    "counts",
         "contained": "bystander p99 <= 2x baseline, loop lag <= 250 ms, RSS growth < "
                      "100 MiB, attacked session quarantined or failing only itself"},
        payload["results"], _ratios(reports), tables_for(payload), payload["extra"],
        ratio_section=False)
    result.charts = charts_for(payload)
    return result


def _results(reports: dict[str, dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    replies: dict[str, dict[str, Any]] = {}
    for name, report in reports.items():
        if "observations" not in report:
            replies[name] = report
            continue
        replies[f"{name}: baseline"] = summarise(report["baseline"]["replies_ms"], scale=1.0)
        for o in report["observations"]:
            if "replies_ms" in o["figures"]:
                replies[f"{name}: {o['probe']}"] = summarise(o["figures"]["replies_ms"],
                                                             scale=1.0)
    return {"bystander_reply": replies}


def _ratios(reports: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    ratios: dict[str, float | None] = {}
    for name, report in reports.items():
        if "observations" not in report:
            continue
        base = report["baseline"]["reply_p99_ms"] or None
        worst = max((o["figures"].get("reply_p99_ms") or 0 for o in report["observations"]),
                    default=0)
        ratios[f"{name}: worst bystander p99 / baseline p99"] = (
            round(worst / base, 2) if base else None)
    return ratios


def tables_for(payload: dict[str, Any]) -> list[Table]:
    tables = []
    replies = payload["results"]["bystander_reply"]
    for name, report in payload["extra"]["reports"].items():
        if "observations" not in report:
            tables.append(Table(f"{name}", ["status"], [[report.get("reason", "")]]))
            continue
        base = report["baseline"]
        rows = [["baseline (busy, honest)", cell(replies.get(f"{name}: baseline")),
                 cell(replies.get(f"{name}: baseline"), "p99"),
                 f"{base['loop_lag_p99_ms']:.0f}", f"{base['rss_peak_mib']:.0f}", "-"]]
        for o in report["observations"]:
            f = o["figures"]
            entry = replies.get(f"{name}: {o['probe']}")
            rows.append([o["probe"], cell(entry), cell(entry, "p99"),
                         f"{f.get('loop_lag_p99_ms', float('nan')):.0f}",
                         f"{f.get('rss_peak_mib', float('nan')):.0f}",
                         ("contained" if o["contained"] else "NOT: " + o["verdict"])[:90]])
        tables.append(Table(
            f"{name} ({report['runtime_version']}), hold {report['hold_s']:g} s",
            ["probe", "bystander p50", "bystander p99", "loop lag p99 ms",
             "host RSS peak MiB", "verdict"], rows))
    return tables


def charts_for(payload: dict[str, Any]) -> dict[str, charts.ChartFn]:
    """One cluster per probe, one bar per runtime: the bystander's median reply, with
    its p99 as the dot."""
    replies = payload["results"]["bystander_reply"]
    runtimes = [r for r in RUNTIMES if any(v.startswith(f"{r}: ") for v in replies)]
    probes = list(dict.fromkeys(v.split(": ", 1)[1] for v in replies if ": " in v))
    if not runtimes:
        return {}
    return {"bystander": lambda path, sub: charts.grouped_bars(
        path, title="redteam: a bystander's reply while another sandbox attacks the host",
        subtitle=sub, groups=probes, variants=runtimes,
        data={p: {r: replies.get(f"{r}: {p}", absent("not run")) for r in runtimes}
              for p in probes},
        ylabel="milliseconds")}
