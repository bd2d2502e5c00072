"""``ironctl redteam``: attack a live sandbox from inside and report what held.

Unlike the other commands this one talks to no API: it stands up its own control
plane in a scratch directory on this host (it needs root and an OCI runtime), engages
real sessions and runs the probes of :mod:`ironclaw.redteam`. Exit 0 only when every
probe is contained; 1 when any is not; 2 when the harness could not run at all.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import trio

from .context import Ctx

SCRATCH_PARENT = Path("/var/tmp")


async def cmd_redteam(ctx: Ctx) -> int:
    # Imported here: the harness pulls in the whole control plane, which the other
    # (API client) commands never need.
    from ironclaw.host.config import choose_runtime
    from ironclaw.host.isolation.runtimes import RuntimeKind
    from ironclaw.redteam.harness import WEAKENINGS, render_table, run_redteam

    args = ctx.args
    if os.geteuid() != 0:
        ctx.console.note("ironctl redteam: needs root (it runs OCI sandboxes)")
        return 2
    try:
        name, _ = choose_runtime(args.runtime)
    except ValueError as exc:
        ctx.console.note(f"ironctl redteam: {exc}")
        return 2
    if name == "process":
        ctx.console.note("ironctl redteam: no OCI runtime here; the 'process' runtime "
                         "has no wall to test")
        return 2
    if args.weaken is not None and args.weaken not in WEAKENINGS:
        ctx.console.note(f"ironctl redteam: --weaken must be one of {', '.join(WEAKENINGS)}")
        return 2
    workdir = Path(await trio.to_thread.run_sync(
        lambda: tempfile.mkdtemp(prefix="ironclaw-redteam-", dir=SCRATCH_PARENT)))
    await trio.Path(workdir).chmod(0o711)
    try:
        report = await run_redteam(
            RuntimeKind(name), workdir, sessions=args.sessions, weakening=args.weaken,
            progress=lambda line: ctx.console.note(f"redteam: {line}"))
    except Exception as exc:  # the harness itself failed: say so, never "contained"
        ctx.console.note(f"ironctl redteam: the harness could not run: "
                         f"{type(exc).__name__}: {exc}")
        return 2
    finally:
        await trio.to_thread.run_sync(lambda: shutil.rmtree(workdir, ignore_errors=True))
    if args.json_report:
        await trio.Path(args.json_report).write_text(
            json.dumps(report.to_json(), indent=2) + "\n")
    if ctx.json_mode:
        ctx.console.json(report.to_json())
    else:
        ctx.console.line(render_table(report))
    return 0 if report.contained else 1
