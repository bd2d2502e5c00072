"""Pruning the cgroups our sandboxes leave behind.

runc and crun remove a container's cgroups on delete; runsc killed hard does not, and
neither does anything killed while the control plane itself was killed. A cgroup
directory can be removed once it holds no process, by ``rmdir`` (its control files
are not real files), leaf first.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["leftover_cgroups", "remove_container_cgroups", "remove_parent_cgroups"]

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _hierarchies(root: Path) -> list[Path]:
    """Every mounted hierarchy: the v1 controllers, the unified one, or a pure v2 root."""
    if (root / "cgroup.controllers").exists():
        return [root]
    try:
        return [entry for entry in root.iterdir() if entry.is_dir()]
    except OSError:
        return []


def _rmdir_tree(path: Path) -> None:
    for current, dirs, _files in os.walk(path, topdown=False):
        for name in dirs:
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(current, name))
    with contextlib.suppress(OSError):
        os.rmdir(path)


def remove_container_cgroups(parent: str, container_id: str, *,
                             root: Path = CGROUP_ROOT) -> None:
    for hierarchy in _hierarchies(root):
        candidate = hierarchy / parent / container_id
        if candidate.is_dir():
            _rmdir_tree(candidate)


def remove_parent_cgroups(parent: str, *, root: Path = CGROUP_ROOT) -> None:
    """Remove ``parent`` itself wherever it is empty (a live sandbox keeps it)."""
    for hierarchy in _hierarchies(root):
        with contextlib.suppress(OSError):
            os.rmdir(hierarchy / parent)


def leftover_cgroups(parent: str, *, root: Path = CGROUP_ROOT) -> list[Path]:
    """Cgroups of ours still present in any hierarchy: containers under ``parent``,
    and ``parent`` itself."""
    found: list[Path] = []
    for hierarchy in _hierarchies(root):
        base = hierarchy / parent
        if base.is_dir():
            found.append(base)
            found.extend(entry for entry in base.iterdir() if entry.is_dir())
    return sorted(found)
