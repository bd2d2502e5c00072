"""The three OCI runtimes, as command lines: how to run, kill, delete and list.

Each keeps its container state under a root directory of ours
(``<state>/runtime/<name>``), never the system default, so reconciling at start sees
exactly our containers and nobody else's.

* ``runsc`` (gVisor): the ptrace platform (the KVM platform hangs on our machines),
  no network (``--network=none``: gVisor's netstack has only loopback), host unix
  sockets allowed to be opened (``--host-uds=open``: the model proxy and doorbell),
  and ``--oci-seccomp`` so the spec's profile applies inside the sandbox too (without
  it gVisor ignores it, trusting its own syscall filter on the Sentry).
* ``runc``: as is.
* ``crun``: refuses hybrid cgroup hosts outright unless the unified hierarchy looks
  empty; every crun call therefore runs in a private mount namespace where a blank
  tmpfs covers ``/sys/fs/cgroup/unified``. The host's mounts are never changed.
"""

from __future__ import annotations

import enum
import json
import shutil
import subprocess
from pathlib import Path

import attrs

from .base import Strength

__all__ = ["OciRuntime", "RuntimeKind", "cgroup_unified_is_hybrid", "runtime_version"]

CGROUP_ROOT = Path("/sys/fs/cgroup")


class RuntimeKind(enum.StrEnum):
    RUNSC = "runsc"
    RUNC = "runc"
    CRUN = "crun"


def cgroup_unified_is_hybrid() -> bool:
    """v1 controllers plus a cgroup2 mount that has controllers of its own: the layout
    crun refuses."""
    try:
        controllers = (CGROUP_ROOT / "unified" / "cgroup.controllers").read_text()
    except OSError:
        return False
    return bool(controllers.strip())


@attrs.frozen
class OciRuntime:
    kind: RuntimeKind
    binary: str  # absolute path
    root: Path  # our private state root for this runtime
    # gVisor's own network switch. Anything but "none" is a weakened sandbox: only the
    # red-team harness's negative control sets it.
    network: str = "none"

    @classmethod
    def find(cls, kind: RuntimeKind, state_dir: Path) -> OciRuntime | None:
        binary = shutil.which(kind.value)
        if binary is None:
            return None
        return cls(kind, binary, state_dir / "runtime" / kind.value)

    @property
    def strength(self) -> Strength:
        return Strength.GVISOR if self.kind is RuntimeKind.RUNSC else Strength.SHARED_KERNEL

    @property
    def gvisor(self) -> bool:
        return self.kind is RuntimeKind.RUNSC

    def _global(self) -> list[str]:
        flags = [self.binary, "--root", str(self.root)]
        if self.kind is RuntimeKind.RUNSC:
            flags += ["--platform=ptrace", f"--network={self.network}", "--host-uds=open",
                      "--oci-seccomp"]
        return flags

    def _wrap(self, argv: list[str]) -> list[str]:
        if self.kind is RuntimeKind.CRUN and cgroup_unified_is_hybrid():
            unshare = shutil.which("unshare") or "/usr/bin/unshare"
            # crun makes its (unused) cgroup2 directory on the blank tmpfs: it must be
            # writable, and it vanishes with the private mount namespace.
            script = ('mount -t tmpfs -o nosuid,nodev,noexec,size=64k tmpfs '
                      f'{CGROUP_ROOT}/unified && exec "$@"')
            return [unshare, "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
                    script, "crun-hybrid", *argv]
        return argv

    def run_argv(self, bundle: Path, container_id: str) -> list[str]:
        return self._wrap([*self._global(), "run", "--bundle", str(bundle), container_id])

    def gated_run_argv(self, bundle: Path, container_id: str, gate: Path) -> list[str]:
        """``run_argv`` behind a gate: a shell that runs it only once it has read ``go``
        from the FIFO ``gate``, which the launching control plane holds open and has
        written. Between its fork and its ``execve`` a child still carries the plane's
        command line, naming nothing a reconcile scan looks for; if the plane dies then,
        the FIFO loses its only writer and its word, so the child, once it is this
        shell, blocks or finds no gate, and never runs the runtime. From the moment it
        reads the gate it names the bundle, as does everything it becomes."""
        script = 'read -r word < "$0" && [ "$word" = go ] && exec "$@"'
        return ["/bin/sh", "-c", script, str(gate), *self.run_argv(bundle, container_id)]

    def exec_argv(self, container_id: str, argv: list[str], *, uid: int) -> list[str]:
        """Run ``argv`` inside a running container as ``uid``: it gets the container's
        namespaces, cgroup, seccomp profile and capabilities (none)."""
        return self._wrap([*self._global(), "exec", "--user", f"{uid}:{uid}", container_id,
                           *argv])

    def kill_argv(self, container_id: str, signal: str = "KILL") -> list[str]:
        extra = ["--all"] if self.kind is RuntimeKind.RUNC else []
        return self._wrap([*self._global(), "kill", *extra, container_id, signal])

    def delete_argv(self, container_id: str) -> list[str]:
        return self._wrap([*self._global(), "delete", "--force", container_id])

    def list_containers(self) -> list[str]:
        """Our containers this runtime still knows of (blocking)."""
        if not self.root.exists():
            return []
        argv = self._wrap([*self._global(), "list", "--format", "json"])
        done = subprocess.run(argv, capture_output=True, timeout=30, check=False)
        if done.returncode != 0:
            return _ids_from_state_dirs(self.root)
        try:
            listed = json.loads(done.stdout or b"null") or []
        except ValueError:
            return _ids_from_state_dirs(self.root)
        return [str(item["id"]) for item in listed if isinstance(item, dict) and "id" in item]

    def remove(self, container_id: str) -> None:
        """Kill and delete ``container_id``, whatever state it is in (blocking)."""
        for argv in (self.kill_argv(container_id), self.delete_argv(container_id)):
            subprocess.run(argv, capture_output=True, timeout=30, check=False)


def _ids_from_state_dirs(root: Path) -> list[str]:
    return sorted(entry.name for entry in root.iterdir() if entry.is_dir()) \
        if root.is_dir() else []


def runtime_version(binary: str) -> str:
    """The first line of ``<binary> --version`` (blocking), for reports."""
    try:
        done = subprocess.run([binary, "--version"], capture_output=True, timeout=10,
                              check=False, text=True)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (done.stdout or done.stderr).strip().splitlines()[0] if (
        done.stdout or done.stderr).strip() else "unknown"
