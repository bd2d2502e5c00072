"""``python -m bench.checkpoint [N]``: gVisor checkpoint/restore of a booted agent,
against a fresh start, on this host's runsc. Prints one JSON document.

The warm pool (``ironclaw.host.sessions.warmpool``) was chosen over restoring a
checkpoint; this is the measurement behind that choice (docs/benchmarks.md). Each
round, on the production spec and command line (``bench.sandboxkit``):

- fresh: ``runsc run`` of the sealed agent, launch to its first heartbeat (boot, imports,
  queues opened);
- checkpoint: ``runsc checkpoint`` of that booted agent (the container stops), its wall
  time and image size;
- restore: ``runsc restore --detach`` of the image into a new container on the same
  bundle, launch to the command's return, and to the restored agent's next heartbeat
  (its interval is cut to 20 ms for this, so the wait for a beat costs at most that).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import attrs

from ironclaw.contract.agent_config import AgentConfig
from ironclaw.host.isolation.runtimes import runtime_version
from ironclaw.host.isolation.spec import UserMapping

from .sandboxkit import OciTarget, Slot, Workdir, Workload, find_image, make_targets, wait_ready
from .sandboxkit.targets import ENV

HEARTBEAT_S = 0.02


def _beat_fast(slot: Slot) -> None:
    config = AgentConfig.parse(slot.config_file.read_bytes())
    slot.config_file.write_bytes(attrs.evolve(config,
                                              heartbeat_interval_s=HEARTBEAT_S).render().encode())


def _wait_beat_after(path: Path, after: float, timeout: float = 30.0) -> float:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        try:
            if path.stat().st_mtime > after:
                return time.perf_counter()
        except FileNotFoundError:
            pass
        time.sleep(0.001)
    raise TimeoutError("no heartbeat after restore")


def _round(target: OciTarget, workdir: Workdir) -> dict[str, Any]:
    slot = Slot.make(workdir, UserMapping())
    _beat_fast(slot)
    live = target.launch(Workload("agent"), slot)
    try:
        fresh = wait_ready(live)
        time.sleep(0.5)  # imports done, first turn of its loops taken
        image = workdir.fresh("checkpoint")
        base = [target.runtime.binary, "--root", str(target.runtime.root),
                "--platform=ptrace", "--network=none", "--host-uds=open", "--oci-seccomp"]
        started = time.perf_counter()
        subprocess.run([*base, "checkpoint", "--image-path", str(image), live.cid],
                       check=True, capture_output=True, timeout=120)
        checkpoint_s = time.perf_counter() - started
        live.popen.wait(timeout=30)
        size = sum(p.stat().st_size for p in image.iterdir())
        subprocess.run([*base, "delete", "--force", live.cid], capture_output=True,
                       timeout=30, check=False)
        restored = live.cid + "-r"
        wall_before = time.time()
        started = time.perf_counter()
        subprocess.run([*base, "restore", "--detach", "--image-path", str(image),
                        "--bundle", str(live.bundle), restored], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,  # kept by
                       timeout=120, cwd=live.bundle, env=ENV)  # the detached sandbox
        restore_s = time.perf_counter() - started
        beat_s = _wait_beat_after(slot.heartbeat, wall_before) - started
        subprocess.run([*base, "delete", "--force", restored], capture_output=True,
                       timeout=30, check=False)
        return {"fresh_to_heartbeat_ms": fresh * 1000, "checkpoint_ms": checkpoint_s * 1000,
                "image_mib": size / 2**20, "restore_ms": restore_s * 1000,
                "restore_to_heartbeat_ms": beat_s * 1000}
    finally:
        target.stop(live)


def main(rounds: int) -> dict[str, Any]:
    with Workdir() as workdir:
        image, notes = find_image(workdir)
        targets, missing = make_targets(image, workdir, ("runsc",))
        if "runsc" in missing:
            return {"status": "absent", "reason": missing["runsc"]}
        target = targets["runsc"]
        assert isinstance(target, OciTarget)
        samples = [_round(target, workdir) for _ in range(rounds)]
    medians = {key: statistics.median(s[key] for s in samples) for key in samples[0]}
    return {"status": "ok", "runsc": runtime_version(target.runtime.binary),
            "image": image.description, "notes": notes, "rounds": rounds,
            "median": medians, "samples": samples}


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 3), indent=1))
