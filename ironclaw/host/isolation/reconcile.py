"""Start-up reconciliation: nothing a killed control plane left running survives it.

A control plane killed with SIGKILL cannot clean up. Its runtimes' foreground
processes die with it, but a gVisor sandbox (Sentry and gofer) outlives its ``runsc
run`` parent, and any runtime leaves its state, bundle and cgroups behind. A sandbox
still running would keep writing its outbound queue while a new one started for the
same session: two writers on one file, which the queue contract forbids. So before
any session starts, every container in our runtime roots is killed and deleted, the
bundles directory is emptied, and our empty cgroups are removed.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import attrs

from .cgroups import leftover_cgroups, remove_container_cgroups, remove_parent_cgroups
from .oci import CONTAINER_PREFIX, cgroup_parent
from .runtimes import OciRuntime, RuntimeKind

__all__ = ["Reconciled", "leftover_runtime_state", "reconcile_runtime_state"]

logger = logging.getLogger(__name__)


@attrs.frozen
class Reconciled:
    containers: tuple[str, ...]  # "<runtime>:<id>" removed
    bundles: int
    cgroups: int


def _runtimes(state_dir: Path) -> list[OciRuntime]:
    return [rt for kind in RuntimeKind if (rt := OciRuntime.find(kind, state_dir))]


def reconcile_runtime_state(state_dir: Path) -> Reconciled:
    """Remove every trace of earlier sandboxes of this state directory (blocking)."""
    removed: list[str] = []
    for runtime in _runtimes(state_dir):
        for cid in runtime.list_containers():
            if cid.startswith(CONTAINER_PREFIX):
                runtime.remove(cid)
                removed.append(f"{runtime.kind.value}:{cid}")
    bundles_dir = state_dir / "runtime" / "bundles"
    bundles = len(list(bundles_dir.iterdir())) if bundles_dir.is_dir() else 0
    shutil.rmtree(bundles_dir, ignore_errors=True)
    parent = cgroup_parent(state_dir)
    stale = [path for path in leftover_cgroups(parent) if path.name != parent]
    for path in stale:
        remove_container_cgroups(parent, path.name)
    remove_parent_cgroups(parent)
    if removed or bundles or stale:
        logger.warning("reconciled leftovers of an earlier run: %d container(s) %s, "
                       "%d bundle(s), %d cgroup(s)", len(removed), ", ".join(removed),
                       bundles, len(stale))
    return Reconciled(tuple(removed), bundles, len(stale))


def leftover_runtime_state(state_dir: Path) -> list[str]:
    """What is left of our sandboxes, for tests and ``ironctl doctor``: containers,
    bundles and cgroups. Empty when the host is clean."""
    left = [f"{rt.kind.value}:{cid}" for rt in _runtimes(state_dir)
            for cid in rt.list_containers()]
    bundles_dir = state_dir / "runtime" / "bundles"
    if bundles_dir.is_dir():
        left += [f"bundle:{entry.name}" for entry in bundles_dir.iterdir()]
    left += [f"cgroup:{path}" for path in leftover_cgroups(cgroup_parent(state_dir))]
    return left
