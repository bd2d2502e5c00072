"""Finding, killing and outwaiting the processes of our sandboxes: "proven gone".

A sandbox's processes are recognised two ways, because neither alone finds them all:

* by program name and arguments: the runtime's ``run``, gVisor's gofer and Sentry
  (``runsc-gofer``, ``runsc-sandbox``; the ptrace stubs are forked from the Sentry)
  all name our state directory's runtime tree in their arguments (``--root``,
  ``--bundle``). The name is ``argv[0]``, not ``/proc/<pid>/exe``: crun and runc
  re-execute themselves from a memfd, and crun's wrapper runs in a mount namespace of
  its own, so their executable link names nothing useful;
* by cgroup: runc's and crun's container processes (and the agent in them) name
  nothing of ours, but live in the cgroups the spec puts them in. The cgroups are
  looked up again at every scan, in every hierarchy: a ``run`` caught mid-launch
  creates them after the hunt has begun.

A process caught in the middle of an ``execve`` shows an empty command line for a
moment (the kernel has switched its memory but not yet laid out the new arguments),
and a crun wrapper becoming crun passes through that moment three times. A scan does
not decide on such a process: it waits until the process shows its new command line
(or dies), then judges it.

``kill_all`` SIGKILLs everything it finds and scans again until two scans in a row
find nothing, then waits until each process is gone. A killed process forks nothing
more (the kernel refuses a fork whose parent has a fatal signal pending), and a child
forked before the kill carries its parent's command line and cgroup, so it is found
by the next scan; the second empty scan catches a child born behind the first one's
cursor through ``/proc``. With the plane that launched them dead (or, per launch, with
its ``run`` reaped) the scans converge; a zombie writes nothing, so it counts as gone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

import attrs

from .cgroups import CGROUP_ROOT, leftover_cgroups

__all__ = ["SandboxProcesses", "runtime_programs"]

_DEAD_STATES = frozenset({b"Z", b"X", b"x"})
_PF_KTHREAD = 0x00200000
KILL_ROUNDS = 200
GONE_TIMEOUT_S = 10.0
EXEC_SETTLE_TIMEOUT_S = 10.0


@attrs.frozen
class SandboxProcesses:
    """Processes whose program name (``argv[0]``'s last component) is in ``programs`` and
    one of whose arguments (or ``--flag=`` values) is ``path`` or lies under it (as
    given, or resolved); and every process in the cgroup tree ``cgroup_parent`` of
    every hierarchy under ``cgroup_root``, or only in its ``container`` child when one
    is named."""

    programs: frozenset[bytes]
    path: Path
    cgroup_parent: str | None = None
    container: str | None = None
    cgroup_root: Path = CGROUP_ROOT

    def find(self) -> list[int]:
        """Pids of live (non-zombie) processes that are ours, never our own (blocking)."""
        found = set(self._in_cgroups())
        unsettled = [pid for pid in _pids() if not self._judge(pid, found)]
        deadline = time.monotonic() + EXEC_SETTLE_TIMEOUT_S
        while unsettled:
            if time.monotonic() > deadline:
                raise RuntimeError(f"processes {unsettled} show no command line: cannot "
                                   f"tell whether they are sandbox processes of {self.path}")
            time.sleep(0.001)
            found.update(self._in_cgroups())
            unsettled = [pid for pid in unsettled if not self._judge(pid, found)]
        found.discard(os.getpid())
        return sorted(pid for pid in found if _alive(pid))

    def _judge(self, pid: int, found: set[int]) -> bool:
        """Add ``pid`` to ``found`` if it is ours. False while it cannot be told: it is
        in the middle of an ``execve``."""
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return True  # gone
        if args == [b""]:
            return not _mid_exec(pid)
        if args[0].rsplit(b"/", 1)[-1] in self.programs and any(
                _names(arg, self._wanted) for arg in args[1:]):
            found.add(pid)
        return True

    @property
    def _wanted(self) -> set[bytes]:
        return {os.fsencode(self.path), os.fsencode(self.path.resolve())}

    def _cgroups(self) -> list[Path]:
        if self.cgroup_parent is None:
            return []
        trees = leftover_cgroups(self.cgroup_parent, root=self.cgroup_root)
        if self.container is None:
            return [tree for tree in trees if tree.name == self.cgroup_parent]
        return [tree for tree in trees if tree.name == self.container]

    def _in_cgroups(self) -> Iterable[int]:
        for base in self._cgroups():
            for current, _dirs, files in os.walk(base):
                if "cgroup.procs" in files:
                    with contextlib.suppress(OSError, ValueError):
                        text = Path(current, "cgroup.procs").read_text()
                        yield from (int(line) for line in text.split())

    def kill_all(self) -> int:
        """SIGKILL every process of ours until a scan finds none, and wait until each
        is gone. Returns how many were killed (blocking)."""
        killed: set[int] = set()
        empty_scans = 0
        for _ in range(KILL_ROUNDS):
            pids = self.find()
            empty_scans = 0 if pids else empty_scans + 1
            if empty_scans == 2:
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


def _stat(pid: int) -> list[bytes] | None:
    """``/proc/<pid>/stat`` from the state field on (index 0 is field 3), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # The command name is in parentheses and may itself contain spaces or ')'.
    return stat[stat.rindex(b")") + 2:].split()


def _alive(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] not in _DEAD_STATES


def _mid_exec(pid: int) -> bool:
    """A live user process whose memory has no argument area yet: between the switch
    to the new program's memory and the layout of its arguments. (A gVisor ptrace
    stub also reads as an empty command line, but keeps the Sentry's argument area.)
    A process that has released its memory on the way out reads the same, briefly."""
    fields = _stat(pid)
    if fields is None or fields[0] in _DEAD_STATES or int(fields[6]) & _PF_KTHREAD:
        return False
    return fields[45] == fields[46] == b"0"  # arg_start, arg_end (fields 48, 49)


def _wait_gone(pids: Iterable[int]) -> None:
    deadline = time.monotonic() + GONE_TIMEOUT_S
    waiting = [pid for pid in pids if _alive(pid)]
    while waiting and time.monotonic() < deadline:
        time.sleep(0.01)
        waiting = [pid for pid in waiting if _alive(pid)]
