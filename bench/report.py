"""A suite's result, and how it is written: JSON, a Markdown report, PNG charts.

Files go to ``bench/results/`` (or ``--out``), named ``<suite>-<host>-<UTC stamp>``:
``.json`` (everything, machine-readable), ``.md`` (the tables, the context, the
method, links to the charts) and ``-<chart>.png``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from .charts import ChartFn
from .context import short_host

__all__ = ["RESULTS", "SCHEMA", "SuiteResult", "Table", "cell", "fmt_value", "write_report"]

RESULTS = Path(__file__).with_name("results")
TIMES = "\u00d7"  # the multiplication sign, for ratios
SCHEMA = "ironclaw-bench/2"



@attrs.define
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]]
    note: str = ""


@attrs.define
class SuiteResult:
    suite: str
    mode: str
    method: dict[str, Any]
    results: dict[str, dict[str, dict[str, Any]]]  # measure -> variant -> summary
    ratios: dict[str, float | None]
    tables: list[Table] = attrs.Factory(list)
    extra: dict[str, Any] = attrs.Factory(dict)
    notes: list[str] = attrs.Factory(list)
    charts: dict[str, ChartFn] = attrs.Factory(dict)  # name -> drawer
    ratio_section: bool = True  # False when a table already shows the ratios

    def payload(self, host: Mapping[str, Any], started: str, elapsed_s: float,
                chart_files: list[str]) -> dict[str, Any]:
        return {"schema": SCHEMA, "suite": self.suite, "mode": self.mode,
                "started_utc": started, "elapsed_s": round(elapsed_s, 2),
                "host": dict(host), "method": self.method, "results": self.results,
                "ratios": self.ratios, "extra": self.extra, "notes": self.notes,
                "tables": [attrs.asdict(t) for t in self.tables],
                "ratio_section": self.ratio_section, "charts": chart_files}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> SuiteResult:
        return cls(payload["suite"], payload["mode"], dict(payload["method"]),
                   dict(payload["results"]), dict(payload["ratios"]),
                   [Table(**t) for t in payload["tables"]], dict(payload["extra"]),
                   list(payload["notes"]), ratio_section=payload.get("ratio_section", True))


def fmt_value(value: float | None, unit: str = "ms") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if unit == "ms":
        if value >= 10_000:
            return f"{value / 1000:.1f} s"
        if value >= 1000:
            return f"{value / 1000:.2f} s"
        if value >= 100:
            return f"{value:.0f} ms"
        if value >= 10:
            return f"{value:.1f} ms"
        return f"{value:.2f} ms"
    if unit == "x":
        return f"{value:.2f}{TIMES}"
    if abs(value) >= 100:
        return f"{value:.0f} {unit}"
    return f"{value:.1f} {unit}"


def cell(entry: Mapping[str, Any] | None, key: str = "median") -> str:
    """A table cell: the value with its unit, or the status (absent, failed)."""
    if not entry:
        return "absent"
    if entry.get("status") != "ok":
        return str(entry.get("status", "absent"))
    return fmt_value(entry.get(key), entry.get("unit", "ms"))


def _md_table(table: Table) -> str:
    lines = [f"### {table.title}", ""]
    if table.note:
        lines += [table.note, ""]
    lines.append("| " + " | ".join(table.headers) + " |")
    lines.append("|" + "|".join("---" for _ in table.headers) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in table.rows]
    return "\n".join(lines)


def _host_lines(host: Mapping[str, Any]) -> list[str]:
    runtimes = []
    for name, info in (host.get("runtimes") or {}).items():
        if info.get("status") == "present":
            extra = f", platform {info['platform']}" if info.get("platform") else ""
            runtimes.append(f"{name} ({info.get('version', '?')}{extra})")
        else:
            runtimes.append(f"{name}: absent")
    virt = (host.get("virtualisation") or {}).get("summary", "unknown")
    return [
        f"- host `{host.get('host')}`: {host.get('os')}, kernel {host.get('kernel')}, "
        f"{host.get('machine')}",
        f"- CPU: {host.get('cpu_model')}, {host.get('cpus')} logical CPUs; memory "
        f"{host.get('mem_total_mib')} MiB ({host.get('mem_available_mib')} MiB available "
        f"at start); load at start {host.get('load_avg_at_start')}",
        f"- cgroups: {host.get('cgroup')}; virtualisation: {virt}",
        f"- runtimes: {'; '.join(runtimes) or 'none'}",
        f"- Python {host.get('python')}, SQLCipher {host.get('sqlcipher')}, "
        f"SQLite {host.get('sqlite')}",
    ]


def render_markdown(result: SuiteResult, host: Mapping[str, Any], started: str,
                    elapsed_s: float, chart_files: list[str]) -> str:
    out = [f"# bench `{result.suite}` ({result.mode}): {host.get('host')}, {started}", ""]
    out += ["## Context", "", *_host_lines(host), ""]
    out += ["## Method", ""]
    for key, value in result.method.items():
        out.append(f"- {key.replace('_', ' ')}: {value}")
    out += [f"- elapsed: {elapsed_s:.0f} s", ""]
    out += ["## Results", ""]
    for table in result.tables:
        out += [_md_table(table), ""]
    if result.ratios and result.ratio_section:
        shown = {k: v for k, v in result.ratios.items() if v is not None}
        out += ["### Ratios (same run)", "", "| ratio | value |", "|---|---|"]
        out += [f"| {name} | {fmt_value(value, 'x')} |" for name, value in shown.items()]
        if len(shown) < len(result.ratios):
            out += ["", f"{len(result.ratios) - len(shown)} more ratio(s) are n/a: one side "
                    "was absent or failed (see the JSON)."]
        out.append("")
    if result.notes:
        out += ["## Notes", ""] + [f"- {note}" for note in result.notes] + [""]
    if chart_files:
        out += ["## Charts", ""] + [f"![{name}]({name})" for name in chart_files] + [""]
    return "\n".join(out)


def write_report(result: SuiteResult, host: Mapping[str, Any], *, started: str,
                 elapsed_s: float, out_dir: Path = RESULTS, base: str | None = None
                 ) -> list[Path]:
    """Write ``<base>.json``, ``<base>.md`` and ``<base>-<chart>.png``; ``base`` is
    ``<suite>-<host>-<UTC stamp>`` unless given (re-rendering a saved run)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if base is None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        base = f"{result.suite}-{short_host()}-{stamp}"
    subtitle = f"{host.get('host')}, {started[:10]} ({result.mode} run)"
    written: list[Path] = []
    chart_files: list[str] = []
    for name, draw in result.charts.items():
        path = out_dir / f"{base}-{name}.png"
        try:
            draw(path, subtitle)
        except Exception as exc:  # a chart bug must not lose the measurements
            result.notes.append(f"chart {name} failed: {type(exc).__name__}: {exc}")
            continue
        written.append(path)
        chart_files.append(path.name)
    json_path = out_dir / f"{base}.json"
    json_path.write_text(json.dumps(result.payload(host, started, elapsed_s, chart_files),
                                    indent=2, sort_keys=False, default=str) + "\n")
    md_path = out_dir / f"{base}.md"
    md_path.write_text(render_markdown(result, host, started, elapsed_s, chart_files))
    return [json_path, md_path, *written]
