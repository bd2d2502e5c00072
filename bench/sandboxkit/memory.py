"""Process trees and the memory they use, attributed to roles."""

from __future__ import annotations

import os
from pathlib import Path

# Process roles in a sandbox's tree, for memory attribution.
ROLE_CLI = "runtime CLI (foreground)"
ROLE_SENTRY = "gVisor Sentry (runsc-sandbox)"
ROLE_GOFER = "gVisor gofer"
ROLE_STUBS = "ptrace stubs (guest tasks)"
ROLE_AGENT = "agent / workload processes"
ROLES = (ROLE_AGENT, ROLE_CLI, ROLE_SENTRY, ROLE_GOFER, ROLE_STUBS)


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _parents() -> dict[int, int]:
    out: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        out[int(entry.name)] = int(fields[1])
    return out


def descendants(root: int) -> list[int]:
    parents = _parents()
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        if pid in parents or pid == root:
            found.append(pid)
        stack.extend(children.get(pid, ()))
    return sorted(set(found))


def _rollup(pid: int) -> tuple[int, int]:
    """PSS and RSS of one process, in KiB (0, 0 if it is gone)."""
    pss = rss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return pss, rss


def tree_memory(roles: dict[str, list[int]]) -> dict[str, dict[str, float]]:
    """Per role: PSS and RSS in MiB, and the process count."""
    out: dict[str, dict[str, float]] = {}
    for role, pids in roles.items():
        pss = rss = 0
        for pid in pids:
            p, r = _rollup(pid)
            pss, rss = pss + p, rss + r
        out[role] = {"pss_mib": pss / 1024, "rss_mib": rss / 1024, "processes": len(pids)}
    return out


def cgroup_memory_mib(cgroup: str) -> float | None:
    """The container cgroup's charged memory (v1 ``memory.usage_in_bytes`` or v2
    ``memory.current``), page cache included; None where there is none."""
    if not cgroup:
        return None
    for path in (Path("/sys/fs/cgroup/memory") / cgroup / "memory.usage_in_bytes",
                 Path("/sys/fs/cgroup") / cgroup / "memory.current"):
        try:
            return int(path.read_text()) / (1024 * 1024)
        except (OSError, ValueError):
            continue
    return None


