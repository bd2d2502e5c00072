"""PNG charts (matplotlib, Agg backend: no display needed).

Every chart has a title naming the host and date, axis labels with units, and shows a
case that did not run as the word "absent" (or "failed") in its slot, never as a zero
bar. Where values span orders of magnitude the value axis is logarithmic, and says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

__all__ = ["ChartFn", "Panel", "curve_panels", "grouped_bars", "lines", "stacked_bars"]

ChartFn = Callable[[Path, str], Path]  # (png path, subtitle) -> the path written

COLOURS = {"runsc": "#c0392b", "runc": "#2471a3", "crun": "#229954", "bare": "#7f8c8d",
           "process": "#7f8c8d", "floor": "#34495e", "anchor replay (2 s poll)": "#d68910"}
FALLBACK = ["#8e44ad", "#16a085", "#d35400", "#2c3e50", "#27ae60", "#e67e22"]
LAYERS = ["#95a5a6", "#2471a3", "#c0392b", "#f39c12", "#8e44ad", "#16a085", "#2c3e50"]
DPI = 110


def _colour(name: str, index: int) -> str:
    if name in COLOURS:
        return COLOURS[name]
    first = name.split(" ")[0]
    return COLOURS.get(first, FALLBACK[index % len(FALLBACK)])


def _ok(entry: Any) -> bool:
    return isinstance(entry, Mapping) and entry.get("status") == "ok"


def _wants_log(values: Sequence[float], forced: bool | None) -> bool:
    if forced is not None:
        return forced
    positive = [v for v in values if v > 0]
    return len(positive) > 1 and max(positive) / min(positive) >= 30


def _label(ax: Any, x: float, value: float, unit: str, crowd: int) -> None:
    if value >= 100:
        text = f"{value:.0f}"
    elif value >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    ax.annotate(text, (x, value), xytext=(0, 2), textcoords="offset points", ha="center",
                va="bottom", fontsize=6 if crowd > 4 else 7, rotation=90 if crowd > 4 else 0)


def _finish(fig: Any, ax: Any, path: Path, title: str, subtitle: str) -> Path:
    ax.set_title(f"{title}\n{subtitle}", fontsize=11)
    ax.grid(axis="y", alpha=0.3, which="both")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def grouped_bars(path: Path, *, title: str, subtitle: str, groups: Sequence[str],
                 variants: Sequence[str], data: Mapping[str, Mapping[str, Any]],
                 ylabel: str, log: bool | None = None, reference: float | None = None,
                 value_key: str = "median", group_labels: Mapping[str, str] | None = None,
                 colours: Mapping[str, str] | None = None) -> Path:
    """One cluster of bars per group (a workload), one bar per variant (a runtime).

    Each entry of ``data[group][variant]`` is a summary (bar at its median, whisker
    from min to p90, a dot at p99), a bare number, or an absent/failed status."""
    width = 0.8 / max(1, len(variants))
    fig, ax = plt.subplots(figsize=(min(13.0, max(7.0, 1.5 + 1.3 * len(groups) * max(
        1, len(variants)) / 3)), 4.8))
    heights: list[float] = []
    for g in groups:
        for v in variants:
            e: Any = data.get(g, {}).get(v)
            if _ok(e):
                heights += [e[value_key], e.get("max", e[value_key])]
            elif isinstance(e, int | float) and not isinstance(e, bool):
                heights.append(float(e))
    use_log = _wants_log(heights, log)
    floor = min((h for h in heights if h > 0), default=1.0)

    def colour(name: str, index: int) -> str:
        return (colours or {}).get(name) or _colour(name, index)

    for vi, variant in enumerate(variants):
        for gi, group in enumerate(groups):
            x = gi + (vi - (len(variants) - 1) / 2) * width
            entry: Any = data.get(group, {}).get(variant)
            if _ok(entry):
                value = entry[value_key]
                ax.bar(x, value, width * 0.92, color=colour(variant, vi),
                       label=variant if gi == 0 else None)
                _label(ax, x, value, entry.get("unit", ""), len(variants))
                if "min" in entry and "p90" in entry:
                    low, high = max(0.0, value - entry["min"]), max(0.0, entry["p90"] - value)
                    ax.errorbar(x, value, yerr=[[low], [high]], fmt="none", ecolor="black",
                                elinewidth=1, capsize=2)
                if "p99" in entry:
                    ax.plot(x, entry["p99"], marker=".", color="black", markersize=4)
            elif isinstance(entry, int | float) and not isinstance(entry, bool):
                ax.bar(x, float(entry), width * 0.92, color=colour(variant, vi),
                       label=variant if gi == 0 else None)
                _label(ax, x, float(entry), "", len(variants))
            else:
                status = entry.get("status", "absent") if isinstance(entry, Mapping) \
                    else "absent"
                ax.bar(x, 0, width * 0.92, color=colour(variant, vi),
                       label=variant if gi == 0 else None)
                ax.text(x, floor if use_log else 0, status, rotation=90, ha="center",
                        va="bottom", fontsize=8, color="dimgray")
    labels = [(group_labels or {}).get(g, g) for g in groups]
    ax.set_xticks(range(len(groups)), labels, fontsize=9)
    if use_log:
        ax.set_yscale("log")
        ylabel += " (log scale)"
    if reference is not None:
        ax.axhline(reference, color="black", linewidth=0.8, linestyle="--")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if any(_ok(data.get(g, {}).get(v)) and "p90" in data[g][v] for g in groups
           for v in variants):
        ax.text(0.0, -0.16, "bar: median; whisker: min to p90; dot: p99",
                transform=ax.transAxes, fontsize=7, color="dimgray")
    return _finish(fig, ax, path, title, subtitle)


def stacked_bars(path: Path, *, title: str, subtitle: str, variants: Sequence[str],
                 layers: Sequence[str], data: Mapping[str, Any], ylabel: str) -> Path:
    """One bar per variant, stacked by layer (memory by process role). An entry that
    is not a mapping of layer -> value is drawn as its status text."""
    fig, ax = plt.subplots(figsize=(max(6.5, 1.6 * len(variants) + 2), 4.8))
    tops = [sum(v for v in data[n].values() if isinstance(v, int | float))
            for n in variants if isinstance(data.get(n), Mapping) and
            data[n].get("status", "ok") == "ok"]
    top = max(tops, default=1.0)
    for li, layer in enumerate(layers):
        for vi, variant in enumerate(variants):
            entry = data.get(variant)
            if not isinstance(entry, Mapping) or entry.get("status", "ok") != "ok":
                continue
            bottom = sum(float(entry.get(prev, 0.0)) for prev in layers[:li])
            value = float(entry.get(layer, 0.0))
            if value > 0:
                ax.bar(vi, value, 0.6, bottom=bottom, color=LAYERS[li % len(LAYERS)],
                       label=layer if layer not in ax.get_legend_handles_labels()[1] else None)
    for vi, variant in enumerate(variants):
        entry = data.get(variant)
        if isinstance(entry, Mapping) and entry.get("status", "ok") == "ok":
            total = sum(float(entry.get(layer, 0.0)) for layer in layers)
            ax.text(vi, total + top * 0.01, f"{total:.1f}", ha="center", va="bottom",
                    fontsize=8)
        else:
            status = entry.get("status", "absent") if isinstance(entry, Mapping) else "absent"
            ax.text(vi, top * 0.02, status, rotation=90, ha="center", va="bottom",
                    fontsize=9, color="dimgray")
    ax.set_xticks(range(len(variants)), list(variants))
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8, loc="upper right")
    return _finish(fig, ax, path, title, subtitle)


def lines(path: Path, *, title: str, subtitle: str, xlabel: str, ylabel: str,
          series: Mapping[str, Sequence[tuple[float, float]]],
          series2: Mapping[str, Sequence[tuple[float, float]]] | None = None,
          ylabel2: str = "", log: bool | None = None, log2: bool | None = None,
          vlines: Sequence[tuple[float, str]] = (), logx: bool = False) -> Path:
    """Lines per series; optional second y axis (dashed) for ``series2``."""
    fig, ax = plt.subplots(figsize=(8, 4.8))
    values: list[float] = []
    for i, (name, points) in enumerate(series.items()):
        if points:
            xs, ys = zip(*points, strict=True)
            values += [y for y in ys if not math.isnan(y)]
            ax.plot(xs, ys, marker="o", color=_colour(name, i), label=name)
    if _wants_log(values, log):
        ax.set_yscale("log")
        ylabel += " (log scale)"
    if logx:
        ax.set_xscale("log")
        xlabel += " (log scale)"
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    handles, labels = ax.get_legend_handles_labels()
    if series2:
        ax2 = ax.twinx()
        values2: list[float] = []
        for i, (name, points) in enumerate(series2.items()):
            if points:
                xs, ys = zip(*points, strict=True)
                values2 += list(ys)
                ax2.plot(xs, ys, marker="s", linestyle="--", alpha=0.8,
                         color=_colour(name, i + 2), label=name)
        if _wants_log(values2, log2):
            ax2.set_yscale("log")
            ylabel2 += " (log scale)"
        ax2.set_ylabel(ylabel2)
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    for x, text in vlines:
        ax.axvline(x, color="black", linestyle=":", linewidth=1)
        ax.annotate(text, (x, 0.97), xycoords=("data", "axes fraction"),
                    fontsize=8, ha="right", va="top", rotation=90)
    if handles:
        ax.legend(handles, labels, fontsize=8, loc="upper left")
    return _finish(fig, ax, path, title, subtitle)


@attrs.frozen
class Panel:
    series: Mapping[str, Sequence[tuple[float, float]]]
    label: str
    bounds: Mapping[str, float] = attrs.field(factory=dict)  # name -> y of a bound line
    bound_label: str = "bound"
    log: bool | None = None  # None: log scale when the values span orders of magnitude


def curve_panels(path: Path, *, title: str, subtitle: str, xlabel: str,
                 panels: Sequence[Panel], marks: Mapping[str, tuple[float, str]] | None = None
                 ) -> Path:
    """Stacked panels sharing the x axis, one line per runtime in each; ``marks`` puts
    a star on each runtime's point at x with a legend text (its knee)."""
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.6 + 2.2 * len(panels)),
                             sharex=True, squeeze=False)
    for row, panel in enumerate(panels):
        ax = axes[row][0]
        values: list[float] = []
        for i, (name, points) in enumerate(panel.series.items()):
            if not points:
                continue
            xs, ys = zip(*points, strict=True)
            values += list(ys)
            colour = _colour(name, i)
            ax.plot(xs, ys, marker="o", color=colour, label=name)
            mark = (marks or {}).get(name)
            if mark is not None and mark[0] in xs:
                y = ys[xs.index(mark[0])]
                ax.plot([mark[0]], [y], marker="*", markersize=14, color=colour,
                        markeredgecolor="black", label=f"{name}: {mark[1]}" if row == 0 else None)
        for i, (name, y) in enumerate(panel.bounds.items()):
            ax.axhline(y, color=_colour(name, i), linestyle="--", linewidth=1,
                       label=f"{name} {panel.bound_label}")
            values.append(y)
        label = panel.label
        if _wants_log(values, panel.log):
            ax.set_yscale("log")
            label += " (log scale)"
        ax.set_ylabel(label, fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axes[-1][0].set_xlabel(xlabel)
    axes[0][0].set_title(f"{title}\n{subtitle}", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path
