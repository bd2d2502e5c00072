"""Start-up reconciliation: nothing a killed control plane left running survives it.

A control plane killed with SIGKILL cannot clean up, and nothing it started dies with
it: the runtime's foreground ``run`` process is in a process group of its own and
carries on alone, and a gVisor sandbox (Sentry and gofer) outlives even that. A plane
killed in the middle of a launch leaves a ``run`` that goes on to *create and start*
the container on its own, up to a second later: a container the runtime does not list
yet when the next plane looks, and whose agent would then write its session's outbound
queue beside the new plane's agent. Two writers on one file across the gVisor wall lose
rows, because locks do not cross it (docs/contract.md §1).

So before any session starts, leftovers are *proven gone*, not merely listed:

1. every process of this state directory's sandboxes and runtimes is killed, scan after
   scan until none is found, and outwaited (``processes.SandboxProcesses``);
2. only then is every container in our runtime roots deleted, the bundles directory
   emptied, every granted-mount stage unmounted (``hostmounts``) and our empty cgroups
   removed.

The per-launch cleanup (``OciIsolator``) runs the same hunt, narrowed to one container.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from pathlib import Path

import attrs

from .cgroups import leftover_cgroups, remove_container_cgroups, remove_parent_cgroups
from .hostmounts import mounts_dir, release_stages
from .oci import CONTAINER_PREFIX, cgroup_parent
from .processes import SandboxProcesses, runtime_programs
from .runtimes import OciRuntime, RuntimeKind

__all__ = ["Reconciled", "clear_runtime_state", "leftover_runtime_state", "our_processes",
           "reconcile_runtime_state"]

logger = logging.getLogger(__name__)


@attrs.frozen
class Reconciled:
    containers: tuple[str, ...]  # "<runtime>:<id>" removed
    bundles: int
    cgroups: int
    processes: int = 0  # leftover runtime and sandbox processes killed


def _runtimes(state_dir: Path) -> list[OciRuntime]:
    return [rt for kind in RuntimeKind if (rt := OciRuntime.find(kind, state_dir))]


def our_processes(state_dir: Path) -> SandboxProcesses:
    """Every sandbox and runtime process of this state directory, whatever plane
    started it."""
    return SandboxProcesses(
        programs=runtime_programs(rt.binary for rt in _runtimes(state_dir)),
        path=state_dir / "runtime", cgroup_parent=cgroup_parent(state_dir))


def reconcile_runtime_state(state_dir: Path) -> Reconciled:
    """Remove every trace of earlier sandboxes of this state directory (blocking)."""
    processes = our_processes(state_dir).kill_all()
    removed: list[str] = []
    for runtime in _runtimes(state_dir):
        for cid in runtime.list_containers():
            if cid.startswith(CONTAINER_PREFIX):
                runtime.remove(cid)
                removed.append(f"{runtime.kind.value}:{cid}")
    bundles_dir = state_dir / "runtime" / "bundles"
    bundles = len(list(bundles_dir.iterdir())) if bundles_dir.is_dir() else 0
    shutil.rmtree(bundles_dir, ignore_errors=True)
    stages = mounts_dir(state_dir)
    if stages.is_dir():
        for container in sorted(stages.iterdir()):
            release_stages(container)
    parent = cgroup_parent(state_dir)
    stale = [path for path in leftover_cgroups(parent) if path.name != parent]
    for path in stale:
        remove_container_cgroups(parent, path.name)
    remove_parent_cgroups(parent)
    if removed or bundles or stale or processes:
        logger.warning("reconciled leftovers of an earlier run: %d process(es) killed, "
                       "%d container(s) %s, %d bundle(s), %d cgroup(s)", processes,
                       len(removed), ", ".join(removed), bundles, len(stale))
    return Reconciled(tuple(removed), bundles, len(stale), processes)


def leftover_runtime_state(state_dir: Path) -> list[str]:
    """What is left of our sandboxes, for tests and ``ironctl doctor``: live
    processes, containers, bundles and cgroups. Empty when the host is clean."""
    left = [f"process:{pid}" for pid in our_processes(state_dir).find()]
    left += [f"{rt.kind.value}:{cid}" for rt in _runtimes(state_dir)
             for cid in rt.list_containers()]
    bundles_dir = state_dir / "runtime" / "bundles"
    if bundles_dir.is_dir():
        left += [f"bundle:{entry.name}" for entry in bundles_dir.iterdir()]
    stages = mounts_dir(state_dir)
    if stages.is_dir():
        left += [f"mount-stage:{entry.name}" for entry in stages.iterdir()]
    left += [f"cgroup:{path}" for path in leftover_cgroups(cgroup_parent(state_dir))]
    return left


def clear_runtime_state(state_dir: Path) -> None:
    """Best effort, for a benchmark or a test tearing its sandboxes down: reconcile,
    and should that fail part-way, still remove our parent cgroups where empty."""
    with contextlib.suppress(Exception):
        reconcile_runtime_state(state_dir)
    remove_parent_cgroups(cgroup_parent(state_dir))
