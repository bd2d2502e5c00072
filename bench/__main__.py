"""python -m bench <suite> [--iterations N] [--quick]"""

from __future__ import annotations

import argparse
import json
import sys

from .report import write_report
from .stats import host_facts

SUITES = ("queue-floor", "e2e", "api")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("suite", choices=SUITES)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="a short run (30 iterations)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    iterations = 30 if args.quick else args.iterations
    if iterations < 1:
        parser.error("--iterations must be at least 1")
    print(f"bench {args.suite}: {iterations} iterations (interleaved)...", file=sys.stderr)
    if args.suite == "api":
        from . import api
        result = api.run(quick=args.quick)
    elif args.suite == "e2e":
        from . import e2e
        result = e2e.run(iterations=iterations,
                         session_counts=(1, 3) if args.quick else (1, 10, 50),
                         per_session=5 if args.quick else 20)
    else:
        from . import queue_floor
        result = queue_floor.run(iterations=iterations, warmup=max(5, iterations // 10))
    payload = {"suite": args.suite, "host": host_facts(), **result}
    rows = [[name, f"{s['median_ms']:.3f}", f"{s['p90_ms']:.3f}", f"{s['p99_ms']:.3f}",
             str(s["n"])] for name, s in result["results"].items()]
    rows += [[f"ratio {name}", f"{value:.2f}x", "", "", ""]
             for name, value in result["ratios"].items()]
    rows += [[f"throughput {t['sessions']} sessions", f"{t['messages_per_s']:.1f} msg/s",
              f"lost {t['lost']}", f"duplicated {t['duplicated']}", str(t["messages"])]
             for t in result.get("throughput", [])]
    print(json.dumps(result["results"], indent=1))
    print(json.dumps(result["ratios"], indent=1))
    if "throughput" in result:
        print(json.dumps(result["throughput"], indent=1))
    if "fanout" in result:
        print(json.dumps({"latency": result["latency"], "fanout": result["fanout"]},
                         indent=1))
    if not args.no_write:
        paths = write_report(args.suite, payload, rows,
                             ["measure", "median ms", "p90 ms", "p99 ms", "n"])
        print("wrote", *paths, file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
