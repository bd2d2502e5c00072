"""``ironctl redteam``: attack a live sandbox from inside and report what held.

Unlike the other commands this one talks to no API: it stands up its own control
plane in a scratch directory on this host (it needs root and an OCI runtime), engages
real sessions and runs the probes of :mod:`ironclaw.redteam`: the first family (the
way out of the sandbox) or, with ``--family host``, the second (the agent attacks the
host). Exit 0 only when every probe is contained; 1 when any is not; 2 when the
harness could not run at all.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from .context import Ctx

if TYPE_CHECKING:
    from ironclaw.redteam.harness import RedTeamReport

SCRATCH_PARENT = Path("/var/tmp")


async def cmd_redteam(ctx: Ctx) -> int:
    # Imported here: the harness pulls in the whole control plane, which the other
    # (API client) commands never need.
    from ironclaw.host.config import choose_runtime
    from ironclaw.host.isolation.runtimes import RuntimeKind
    from ironclaw.redteam.harness import WEAKENINGS, render_table, run_redteam
    from ironclaw.redteam.hostattack import (
        HOST_WEAKENINGS,
        HostAttackReport,
        render_host_table,
        run_host_attacks,
    )

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
    host = args.family == "host"
    if args.pool and (host or name != "runsc"):
        ctx.console.note("ironctl redteam: --pool is for the wall family under runsc")
        return 2
    known = HOST_WEAKENINGS if host else WEAKENINGS
    if args.weaken is not None and args.weaken not in known:
        ctx.console.note(f"ironctl redteam: --weaken for the {args.family} family must be "
                         f"one of {', '.join(known)}")
        return 2
    workdir = Path(await trio.to_thread.run_sync(
        lambda: tempfile.mkdtemp(prefix="ironclaw-redteam-", dir=SCRATCH_PARENT)))
    await trio.Path(workdir).chmod(0o711)
    progress = lambda line: ctx.console.note(f"redteam: {line}")  # noqa: E731
    report: RedTeamReport | HostAttackReport
    try:
        if host:
            report = await run_host_attacks(RuntimeKind(name), workdir, quick=not args.full,
                                            weakening=args.weaken, progress=progress)
        else:
            report = await run_redteam(RuntimeKind(name), workdir, sessions=args.sessions,
                                       weakening=args.weaken, pool=args.pool,
                                       progress=progress)
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
        ctx.console.line(render_host_table(report) if isinstance(report, HostAttackReport)
                         else render_table(report))
    return 0 if report.contained else 1
