"""Write a suite's results as JSON and a Markdown table under bench/results/."""

from __future__ import annotations

import datetime as dt
import json
import socket
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).with_name("results")


def write_report(suite: str, payload: dict[str, Any], table: list[list[str]],
                 headers: list[str], out_dir: Path = RESULTS) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    base = out_dir / f"{suite}-{socket.gethostname()}-{stamp}"
    json_path = base.with_suffix(".json")
    json_path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in table]
    md_path = base.with_suffix(".md")
    md_path.write_text(f"# {suite} ({stamp})\n\n" + "\n".join(lines) + "\n")
    return json_path, md_path
