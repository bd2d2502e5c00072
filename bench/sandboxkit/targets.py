"""Targets: a runtime running the production spec, or the bare process as the floor;
each runs a workload to completion or leaves it live."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from ironclaw.host.isolation.cgroups import remove_container_cgroups
from ironclaw.host.isolation.oci import CONTAINER_PREFIX, cgroup_parent
from ironclaw.host.isolation.runtimes import OciRuntime, RuntimeKind
from ironclaw.host.isolation.spec import (
    BundleInputs,
    SandboxLimits,
    UserMapping,
    build_spec,
)

from .images import BenchImage, Workload
from .memory import (
    ROLE_AGENT,
    ROLE_CLI,
    ROLE_GOFER,
    ROLE_SENTRY,
    ROLE_STUBS,
    _cmdline,
    descendants,
)
from .slots import Slot
from .workdir import Workdir

BARE = "bare"
VARIANTS = ("runsc", "runc", "crun", BARE)
CID_PREFIX = CONTAINER_PREFIX + "bench-"


@attrs.frozen
class RunResult:
    wall_s: float
    returncode: int
    stdout: str
    stderr: str

    def report(self) -> dict[str, Any]:
        """The workload's own JSON line (its in-sandbox elapsed time)."""
        for line in reversed(self.stdout.strip().splitlines()):
            line = line.strip()
            if line.startswith("{"):
                try:
                    value = json.loads(line)
                except ValueError:
                    continue
                if isinstance(value, dict):
                    return value
        raise RuntimeError(f"no workload report (rc {self.returncode}): "
                           f"{(self.stderr or self.stdout)[-400:]!r}")

    def check(self) -> RunResult:
        if self.returncode != 0:
            raise RuntimeError(f"exit {self.returncode}: {(self.stderr or self.stdout)[-600:]}")
        return self


@attrs.define
class Live:
    """A sandbox (or bare process) left running: for memory, heartbeats, scale."""

    target: str
    popen: subprocess.Popen[bytes]
    cid: str
    slot: Slot
    started: float  # time.perf_counter() just before the launch
    bundle: Path | None = None
    ready_s: float | None = None  # launch to first heartbeat
    cgroup: str = ""


class Target:
    name: str

    def run(self, work: Workload, slot: Slot, *, rootfs: Path | None = None,
            timeout: float = 300.0, image: BenchImage | None = None) -> RunResult:
        raise NotImplementedError

    def launch(self, work: Workload, slot: Slot) -> Live:
        raise NotImplementedError

    def stop(self, live: Live) -> None:
        raise NotImplementedError

    def roles(self, live: Live) -> dict[str, list[int]]:
        raise NotImplementedError


ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


class OciTarget(Target):
    def __init__(self, runtime: OciRuntime, image: BenchImage, workdir: Workdir, *,
                 limits: SandboxLimits | None = None, mapping: UserMapping | None = None
                 ) -> None:
        self.runtime = runtime
        self.name = runtime.kind.value
        self.image = image
        self.workdir = workdir
        self.limits = limits or SandboxLimits()
        self.mapping = mapping or UserMapping()
        self.parent = cgroup_parent(workdir.state)
        self._n = 0
        self.runtime.root.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _bundle(self, work: Workload, slot: Slot, rootfs: Path | None,
                image: BenchImage | None = None) -> tuple[Path, str]:
        self._n += 1
        cid = f"{CID_PREFIX}{self.name}-{os.getpid()}-{self._n}"
        image = image or self.image
        inputs = BundleInputs(
            container_id=cid, rootfs=rootfs or image.rootfs,
            args=image.sandbox_args(work), inbound_dir=slot.inbound,
            outbound_dir=slot.outbound, key_file=slot.key_file, config_file=slot.config_file,
            socket_dir=slot.sockets, workspace=slot.workspace,
            cgroups_path=f"/{self.parent}/{cid}", gvisor=self.runtime.gvisor,
            limits=self.limits, mapping=self.mapping)
        spec = build_spec(inputs)
        bundle = self.workdir.state / "runtime" / "bundles" / cid
        bundle.mkdir(mode=0o700, parents=True)
        (bundle / "config.json").write_text(json.dumps(spec, indent=1))
        return bundle, cid

    def _cleanup(self, cid: str, bundle: Path, *, force: bool) -> None:
        if force:
            self.runtime.remove(cid)
        shutil.rmtree(bundle, ignore_errors=True)
        remove_container_cgroups(self.parent, cid)

    def run(self, work: Workload, slot: Slot, *, rootfs: Path | None = None,
            timeout: float = 300.0, image: BenchImage | None = None) -> RunResult:
        bundle, cid = self._bundle(work, slot, rootfs, image)
        argv = self.runtime.run_argv(bundle, cid)
        clean = False
        try:
            start = time.perf_counter()
            done = subprocess.run(argv, capture_output=True, timeout=timeout, cwd=bundle,
                                  env=ENV, check=False, stdin=subprocess.DEVNULL)
            wall = time.perf_counter() - start
            clean = True
        finally:
            self._cleanup(cid, bundle, force=not clean)
        return RunResult(wall, done.returncode, done.stdout.decode(errors="replace"),
                         done.stderr.decode(errors="replace"))

    def launch(self, work: Workload, slot: Slot) -> Live:
        bundle, cid = self._bundle(work, slot, None)
        argv = self.runtime.run_argv(bundle, cid)
        log = open(bundle / "stderr.log", "wb")  # noqa: SIM115 (closed with the bundle)
        with log:
            start = time.perf_counter()
            popen = subprocess.Popen(argv, cwd=bundle, env=ENV, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=log,
                                     start_new_session=True)
        return Live(self.name, popen, cid, slot, start, bundle=bundle,
                    cgroup=f"{self.parent}/{cid}")

    def stop(self, live: Live) -> None:
        with contextlib.suppress(Exception):
            subprocess.run(self.runtime.kill_argv(live.cid), capture_output=True, timeout=30,
                           check=False)
        try:
            live.popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(live.popen.pid, signal.SIGKILL)
            live.popen.wait(timeout=15)
        self._cleanup(live.cid, live.bundle or Path("/nonexistent"), force=True)

    def stderr_tail(self, live: Live) -> str:
        try:
            return (live.bundle / "stderr.log").read_text(errors="replace")[-600:] \
                if live.bundle else ""
        except OSError:
            return ""

    def roles(self, live: Live) -> dict[str, list[int]]:
        pids = descendants(live.popen.pid)
        roles: dict[str, list[int]] = {}
        for pid in pids:
            roles.setdefault(self._role(pid, live.popen.pid), []).append(pid)
        return roles

    def _role(self, pid: int, root: int) -> str:
        cmd = _cmdline(pid)
        if pid == root:
            return ROLE_CLI
        if self.runtime.kind is RuntimeKind.RUNSC:
            if cmd and Path(cmd[0]).name == "runsc" and "run" in cmd:
                return ROLE_CLI
            if "boot" in cmd:
                return ROLE_SENTRY
            if "gofer" in cmd:
                return ROLE_GOFER
            return ROLE_STUBS
        if cmd and Path(cmd[0]).name in ("runc", "crun", "unshare", "sh"):
            return ROLE_CLI
        return ROLE_AGENT


class BareTarget(Target):
    """The floor: the same program, run directly on the host as root, no sandbox."""

    name = BARE

    def __init__(self, image: BenchImage) -> None:
        self.image = image
        self._n = 0

    def _env(self, slot: Slot) -> dict[str, str]:
        return {**ENV, "HOME": str(slot.workspace), "TMPDIR": str(slot.scratch)}

    def run(self, work: Workload, slot: Slot, *, rootfs: Path | None = None,
            timeout: float = 300.0, image: BenchImage | None = None) -> RunResult:
        image = image or self.image
        argv = image.host_args(work, rootfs or image.rootfs,
                               config_path=slot.host_config_file)
        if image.kind == "busybox":
            argv = _bare_busybox(argv, work, slot)
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, timeout=timeout, cwd=slot.workspace,
                              env=self._env(slot), check=False, stdin=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        return RunResult(wall, done.returncode, done.stdout.decode(errors="replace"),
                         done.stderr.decode(errors="replace"))

    def launch(self, work: Workload, slot: Slot) -> Live:
        argv = self.image.host_args(work, self.image.rootfs, config_path=slot.host_config_file)
        if self.image.kind == "busybox":
            argv = _bare_busybox(argv, work, slot)
        self._n += 1
        start = time.perf_counter()
        popen = subprocess.Popen(argv, cwd=slot.workspace, env=self._env(slot),
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
        return Live(self.name, popen, f"bare-{self._n}", slot, start)

    def stop(self, live: Live) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(live.popen.pid, signal.SIGTERM)
        try:
            live.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(live.popen.pid, signal.SIGKILL)
            live.popen.wait(timeout=10)

    def stderr_tail(self, live: Live) -> str:
        return ""

    def roles(self, live: Live) -> dict[str, list[int]]:
        return {ROLE_AGENT: descendants(live.popen.pid)}


def _bare_busybox(argv: list[str], work: Workload, slot: Slot) -> list[str]:
    """The busybox stand-in's scripts name in-sandbox paths; on the host they are the
    slot's. ``argv[0]`` is the rootfs's /bin/sh, a symlink to busybox: run busybox."""
    script = argv[-1].replace("/tmp/", f"{slot.scratch}/").replace(
        "/queue/outbound/", f"{slot.outbound}/")
    shell = Path(argv[0]).parent / "busybox"
    return [str(shell), "sh", "-c", script]


def make_targets(image: BenchImage, workdir: Workdir, names: tuple[str, ...] = VARIANTS
                 ) -> tuple[dict[str, Target], dict[str, str]]:
    """Targets for every present runtime, and why each missing one is absent."""
    targets: dict[str, Target] = {}
    missing: dict[str, str] = {}
    for name in names:
        if name == BARE:
            targets[name] = BareTarget(image)
            continue
        runtime = OciRuntime.find(RuntimeKind(name), workdir.state)
        if runtime is None:
            missing[name] = f"{name} not found on PATH"
        elif os.geteuid() != 0:
            missing[name] = "OCI runtimes need root on this host (rootless not configured)"
        else:
            targets[name] = OciTarget(runtime, image, workdir)
    return targets, missing




def wait_ready(live: Live, *, timeout: float = 60.0, poll_s: float = 0.002) -> float:
    """Seconds from launch to the first heartbeat. Raises if the sandbox dies first."""
    deadline = time.perf_counter() + timeout
    while True:
        try:
            if live.slot.heartbeat.stat().st_size > 0:
                live.ready_s = time.perf_counter() - live.started
                return live.ready_s
        except FileNotFoundError:
            pass
        if live.popen.poll() is not None:
            raise RuntimeError(f"{live.target} exited with {live.popen.returncode} before "
                               "its first heartbeat")
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{live.target}: no heartbeat within {timeout:.0f} s")
        time.sleep(poll_s)


@contextlib.contextmanager
def live_set(target: Target) -> Iterator[list[Live]]:
    """A list of live sandboxes that are all stopped on the way out, whatever happens."""
    lives: list[Live] = []
    try:
        yield lives
    finally:
        for live in lives:
            with contextlib.suppress(Exception):
                target.stop(live)
