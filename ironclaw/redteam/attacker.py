"""The attacker of the second red-team family: one probe, run where the agent stands.

Under runc and crun the probe is ``exec``-ed into the attacked session's sandbox;
under runsc it is the init of a sibling sandbox with the session's binds (see
harness.py for why). Its one JSON line says what it did. A probe whose own syscalls may
hang for good (a connect to a host socket past its cap, under gVisor) keeps its tally
in a progress file in the outbound directory: the attacker is then ended a moment
after its final tally, and the tally is its line when its output never came back.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import trio

from ironclaw.contract.untrusted_files import read_untrusted
from ironclaw.host.isolation import SandboxExited
from ironclaw.host.isolation.oci import OciIsolator, SpecHook, container_id
from ironclaw.host.isolation.runtimes import OciRuntime
from ironclaw.host.isolation.spec import AGENT_UID

from .harness import _parse, _session_spec
from .hostprobes import BUSYBOX, HostProbe, progress_path

__all__ = ["ATTACKER_DEADLINE_S", "Inside", "run_attacker"]

# An attacker still running this long after its start is killed, and said nothing (red).
ATTACKER_DEADLINE_S = 60.0
# A probe that keeps a progress file (hostprobes.progress_path): how often the harness
# looks at it, how long after its final tally the attacker may still exit by itself,
# and the most of it that is read.
TALLY_POLL_S = 0.5
FINAL_TALLY_GRACE_S = 3.0
TALLY_MAX_BYTES = 4096


@attrs.frozen
class Inside:
    """What the attacker said about itself: ``contained`` None when it said nothing;
    ``hung`` when its report came from its progress file because it never exited."""

    contained: bool | None
    observed: str
    hung: bool = False


async def run_attacker(runtime: OciRuntime, make_isolator: Callable[[SpecHook], OciIsolator],
                       state: Path, keys: Path, session_id: str, probe: HostProbe,
                       outbound: Path) -> Inside:
    """Run the probe where the agent stands; its line says what it did. A probe that
    keeps a progress file is ended once its final tally is written, and read from
    that file when its own output never came back (it hung in a syscall)."""
    script = probe.script()
    tally = outbound / Path(progress_path(probe.name)).name if probe.reports_progress else None
    output, note = b"", f"no exit within {ATTACKER_DEADLINE_S:.0f} s: killed"
    attacker = trio.CancelScope(deadline=trio.current_time() + ATTACKER_DEADLINE_S)

    async def attack(watching: trio.CancelScope) -> None:
        nonlocal output, note
        with attacker:
            if runtime.gvisor:
                def as_attacker(config: dict[str, Any]) -> dict[str, Any]:
                    config["process"]["args"] = [BUSYBOX, "sh", "-c", script]
                    return config

                try:
                    await make_isolator(as_attacker).run(
                        _session_spec(state, keys, session_id),
                        container_name=f"ic-probe-h-{session_id}")
                except SandboxExited as exited:
                    output, note = exited.stderr_tail, f"exit {exited.returncode}"
            else:
                argv = runtime.exec_argv(container_id(session_id),
                                         [BUSYBOX, "sh", "-c", script], uid=AGENT_UID)
                done = await trio.run_process(argv, capture_stdout=True,
                                              capture_stderr=True, check=False)
                output = done.stdout + done.stderr
                note = (f"exit {done.returncode}: "
                        + done.stderr.decode("utf-8", "replace")[-300:])
        watching.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(attack, nursery.cancel_scope)
        if tally is not None:
            nursery.start_soon(_end_after_final_tally, tally, attacker)
    found = _parse(output, 0, 1, note)
    mine = [o for o in found if o.probe == probe.name]
    if mine:
        return Inside(mine[0].contained, mine[0].observed)
    last = await _read_tally(tally) if tally is not None else None
    if last is not None:
        return Inside(last.get("contained") is True, str(last.get("observed", ""))[:300]
                      + "; then it hung in its own sandbox until the harness ended it",
                      hung=True)
    return Inside(None, f"the probe reported nothing ({note[:200]})")


async def _read_tally(path: Path) -> dict[str, Any] | None:
    """The probe's last tally (the file is the sandbox's: read as hostile)."""
    try:
        raw = await trio.to_thread.run_sync(
            lambda: read_untrusted(path, max_bytes=TALLY_MAX_BYTES))
        tally = json.loads(raw.decode("utf-8", "replace").strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        return None
    return tally if isinstance(tally, dict) and tally.get("probe") else None


async def _end_after_final_tally(path: Path, attacker: trio.CancelScope) -> None:
    """End an attacker whose final tally is written but which has not exited (its
    children hang in a connect) a moment later, instead of at the deadline."""
    while True:
        await trio.sleep(TALLY_POLL_S)
        tally = await _read_tally(path)
        if tally is not None and tally.get("final") is True:
            await trio.sleep(FINAL_TALLY_GRACE_S)
            attacker.cancel()
            return
