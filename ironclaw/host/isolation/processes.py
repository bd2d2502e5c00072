"""Finding, killing and outwaiting the processes of our sandboxes: "proven gone".

A sandbox's processes are recognised two ways, because neither alone finds them all:

* by program name and arguments: the runtime's ``run``, gVisor's gofer and Sentry
  (``runsc-gofer``, ``runsc-sandbox``; the ptrace stubs are forked from the Sentry)
  all name our state directory's runtime tree in their arguments (``--root``,
  ``--bundle``). The name is ``argv[0]``, not ``/proc/<pid>/exe``: crun and runc
  re-execute themselves from a memfd, and crun's wrapper runs in a mount namespace of
  its own, so their executable link names nothing useful;
* by cgroup: runc's and crun's container processes (and the agent in them) name
  nothing of ours, but live in the cgroups the spec puts them in.

``kill_all`` SIGKILLs everything it finds and scans again until a scan finds nothing,
then waits until each process is gone. A killed process forks nothing more, so with
the plane that launched them dead (or, per launch, with its ``run`` reaped) the scan
converges; a zombie writes nothing, so it counts as gone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

import attrs

__all__ = ["SandboxProcesses", "runtime_programs"]

_DEAD_STATES = frozenset({b"Z", b"X", b"x"})
KILL_ROUNDS = 200
GONE_TIMEOUT_S = 10.0


@attrs.frozen
class SandboxProcesses:
    """Processes whose program name (``argv[0]``'s last component) is in ``programs`` and
    one of whose arguments (or ``--flag=`` values) is ``path`` or lies under it (as
    given, or resolved); and every process in the cgroup trees ``cgroups``."""

    programs: frozenset[bytes]
    path: Path
    cgroups: tuple[Path, ...] = ()

    def find(self) -> list[int]:
        """Pids of live (non-zombie) processes that are ours, never our own (blocking)."""
        found = set(self._in_cgroups())
        wanted = {os.fsencode(self.path), os.fsencode(self.path.resolve())}
        for pid in _pids():
            try:
                args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if args[0].rsplit(b"/", 1)[-1] in self.programs and any(
                    _names(arg, wanted) for arg in args[1:]):
                found.add(pid)
        found.discard(os.getpid())
        return sorted(pid for pid in found if _alive(pid))

    def _in_cgroups(self) -> Iterable[int]:
        for base in self.cgroups:
            for current, _dirs, files in os.walk(base):
                if "cgroup.procs" in files:
                    with contextlib.suppress(OSError, ValueError):
                        text = Path(current, "cgroup.procs").read_text()
                        yield from (int(line) for line in text.split())

    def kill_all(self) -> int:
        """SIGKILL every process of ours until a scan finds none, and wait until each
        is gone. Returns how many were killed (blocking)."""
        killed: set[int] = set()
        for _ in range(KILL_ROUNDS):
            pids = self.find()
            if not pids:
                return len(killed)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            killed.update(pids)
            _wait_gone(pids)
        raise RuntimeError(f"sandbox processes under {self.path} keep appearing: "
                           f"{self.find()}")


def runtime_programs(binaries: Iterable[str]) -> frozenset[bytes]:
    """The program names a runtime invocation of ours runs under: the runtimes, gVisor's
    gofer and Sentry, and the ``unshare`` and shell of crun's hybrid-cgroup wrapper,
    which carry its arguments until they exec crun."""
    names = [os.path.basename(binary) for binary in binaries]
    names += ["runsc-gofer", "runsc-sandbox", "unshare", "sh"]
    return frozenset(os.fsencode(name) for name in names)


def _names(arg: bytes, paths: set[bytes]) -> bool:
    value = arg.split(b"=", 1)[1] if arg.startswith(b"--") and b"=" in arg else arg
    return any(value == path or value.startswith(path + b"/") for path in paths)


def _pids() -> list[int]:
    try:
        return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    # The command name is in parentheses and may itself contain spaces or ')'.
    return stat[stat.rindex(b")") + 2:].split()[0] not in _DEAD_STATES


def _wait_gone(pids: Iterable[int]) -> None:
    deadline = time.monotonic() + GONE_TIMEOUT_S
    waiting = [pid for pid in pids if _alive(pid)]
    while waiting and time.monotonic() < deadline:
        time.sleep(0.01)
        waiting = [pid for pid in waiting if _alive(pid)]
