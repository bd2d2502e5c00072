"""python -m bench <suite> [--quick | --smoke] [--out DIR] [--no-write]

Suites: sandbox (the price of the wall), queue (the message path), scale (live
sandboxes per host), api (API latency and event fan-out), models (a real local model's
reply against the mock's, and the redactor's cost), or all; and, only when named,
redteam (what a hostile sandbox costs the other sessions) and chaos (nothing lost or
doubled while the control plane and agents are killed), which ``all`` leaves out
because they break things on purpose, and mcp (MCP servers in their own sandboxes: a
tool call's latency against a direct child, cold start, memory). ``queue-floor`` and
``e2e`` are the old names: the queue suite's floor alone, and the queue suite.
``python -m bench render FILE.json...`` redraws a saved run's Markdown and charts.

The suite's whole result is printed to stdout as one JSON document; progress goes to
stderr. Unless ``--no-write``, it is also written to ``bench/results/`` (or ``--out``)
as ``<suite>-<host>-<UTC stamp>.json``, ``.md`` and ``-<chart>.png``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
import time
from pathlib import Path

from .context import host_facts
from .progress import Progress
from .report import RESULTS, SuiteResult, write_report

SUITES = ("sandbox", "queue", "scale", "api", "models")
ON_DEMAND = ("redteam", "chaos", "mcp")  # run only when named, never by "all"
ALIASES = {"queue-floor": "queue", "e2e": "queue"}


def run_suite(name: str, args: argparse.Namespace, progress: Progress) -> SuiteResult:
    mode = args.mode
    runtimes = tuple(args.runtimes.split(",")) if args.runtimes else None
    if name == "sandbox":
        from . import sandbox
        variants = (*runtimes, "bare") if runtimes else sandbox.VARIANTS
        return sandbox.run(mode=mode, progress=progress, variants=variants,
                           image_preference=args.image, iterations=args.iterations)
    if name == "queue":
        from . import queue
        return queue.run(mode=mode, progress=progress, runtimes=runtimes,
                         iterations=args.iterations, floor_only=args.suite == "queue-floor",
                         sessions=args.sessions)
    if name == "scale":
        from . import scale
        return scale.run(mode=mode, progress=progress, runtimes=runtimes,
                         image_preference=args.image, max_live=args.max)
    if name == "models":
        from . import models
        return models.run(mode=mode, progress=progress)
    if name == "redteam":
        from . import redteam
        return redteam.run(mode=mode, progress=progress, runtimes=runtimes)
    if name == "mcp":
        from . import mcp
        return mcp.run(mode=mode, progress=progress)
    if name == "chaos":
        from . import chaos
        return chaos.run(mode=mode, progress=progress,
                         runtimes=tuple(r for r in runtimes if r != "crun")
                         if runtimes else None)
    from . import api
    return api.run(mode=mode, progress=progress)


def _counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("session counts are integers, e.g. 10,50") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("session counts must be at least 1")
    return counts


def render(paths: list[str]) -> int:
    """Redraw the Markdown and the charts of saved runs, from their JSON alone."""
    import importlib

    for name in paths:
        path = Path(name)
        payload = json.loads(path.read_text())
        suite = payload["suite"]
        module = importlib.import_module(
            f"bench.{ALIASES.get(suite, suite)}")
        result = SuiteResult.from_payload(payload)
        result.charts = module.charts_for(payload)
        if hasattr(module, "tables_for"):
            result.tables = module.tables_for(payload)
        for old in path.parent.glob(f"{path.stem}-*.png"):
            old.unlink()
        written = write_report(result, payload["host"], started=payload["started_utc"],
                               elapsed_s=payload["elapsed_s"], out_dir=path.parent,
                               base=path.stem)
        print("wrote " + " ".join(str(p) for p in written), file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["render"]:
        return render(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("suite", choices=(*SUITES, *ON_DEMAND, *ALIASES, "all"))
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", dest="mode", action="store_const", const="quick",
                      help="a reduced run (every suite together in under 5 minutes)")
    size.add_argument("--smoke", dest="mode", action="store_const", const="smoke",
                      help="the smallest run that exercises everything (tests)")
    parser.set_defaults(mode="full")
    parser.add_argument("--iterations", type=int, default=None,
                        help="override the main iteration count (sandbox: warm starts; "
                             "queue: warm replies)")
    parser.add_argument("--sessions", type=_counts, default=None,
                        help="queue: the throughput steps, comma-separated session counts "
                             "(e.g. 50)")
    parser.add_argument("--runtimes", default=None,
                        help="comma-separated OCI runtimes to compare (default: runsc,runc,"
                             "crun; absent ones are reported as absent)")
    parser.add_argument("--image", choices=("sealed", "busybox"), default="sealed",
                        help="sandbox image: the sealed agent image (default, falls back to "
                             "busybox with a note if it cannot be built) or the busybox "
                             "stand-in")
    parser.add_argument("--max", type=int, default=None, metavar="N",
                        help="scale: ramp to N live sandboxes (the count cap; default "
                             "the mode's)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    parser.add_argument("--no-write", action="store_true", help="print JSON only")
    parser.add_argument("--progress", dest="progress", action="store_true", default=None,
                        help="force the rich progress display")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    args = parser.parse_args(argv)
    if args.iterations is not None and args.iterations < 1:
        parser.error("--iterations must be at least 1")
    if args.max is not None and (args.max < 1 or args.suite != "scale"):
        parser.error("--max takes a count of at least 1, for the scale suite only")
    if args.runtimes:
        bad = set(args.runtimes.split(",")) - {"runsc", "runc", "crun"}
        if bad:
            parser.error(f"unknown runtime(s): {', '.join(sorted(bad))}")
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("ironclaw").setLevel(logging.ERROR)
    names = SUITES if args.suite == "all" else (ALIASES.get(args.suite, args.suite),)
    host = host_facts()
    documents = []
    for name in names:
        started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        t0 = time.monotonic()
        with Progress(args.progress, title=f"bench {name} ({args.mode}) on {host['host']}"
                      ) as progress:
            result = run_suite(name, args, progress)
        elapsed = time.monotonic() - t0
        if args.suite == "queue-floor":
            result.suite = "queue-floor"
        charts: list[str] = []
        if not args.no_write:
            paths = write_report(result, host, started=started, elapsed_s=elapsed,
                                 out_dir=args.out)
            charts = [p.name for p in paths if p.suffix == ".png"]
            print("wrote " + " ".join(str(p) for p in paths), file=sys.stderr)
        documents.append(result.payload(host, started, elapsed, charts))
    print(json.dumps(documents[0] if len(documents) == 1 else documents, indent=1,
                     default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
