"""One hardened bundle, run by every runtime, and the bare process as the floor.

Used by the ``sandbox`` and ``scale`` suites. A bundle's ``config.json`` is the
production spec, ``ironclaw.host.isolation.spec.build_spec``, with the session binds
(inbound, outbound, key, config, sockets, workspace) of a bench "slot"; only
``process.args`` (and the container id with its cgroup path) differs between runs.
The runtimes are run with the production command lines (``OciRuntime.run_argv``,
including runsc's flags and crun's hybrid-cgroup wrapper), in the foreground, timed
around that command alone.

The image is the sealed image (the frozen agent, which carries the benchmark
workloads behind a hidden ``--workload``) when one can be had, otherwise a busybox
rootfs with the same mount points, running shell loops (a stand-in, and every report
says which it was). The bare floor runs the same program on the host, from the same
rootfs, with the same arguments.

Everything lives in a work directory under ``/var/tmp`` (every parent must be
searchable by the sandbox's unprivileged host uid, see ``oci._require_traversable``),
with its own runtime state root, so cleaning up is ``reconcile_runtime_state`` on it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from ironclaw.contract.agent_config import (
    MOCK_MODEL_HOST,
    AgentConfig,
    ModelApi,
    ProviderConfig,
)
from ironclaw.contract.cipher import SessionKeys
from ironclaw.contract.ids import new_session_id
from ironclaw.contract.layout import HEARTBEAT_FILE
from ironclaw.host.isolation.cgroups import remove_container_cgroups
from ironclaw.host.isolation.mountpoints import MOUNT_POINTS_DIRS, MOUNT_POINTS_FILES
from ironclaw.host.isolation.oci import CONTAINER_PREFIX, cgroup_parent
from ironclaw.host.isolation.reconcile import reconcile_runtime_state
from ironclaw.host.isolation.runtimes import OciRuntime, RuntimeKind
from ironclaw.host.isolation.spec import (
    BundleInputs,
    SandboxLimits,
    UserMapping,
    build_spec,
)

__all__ = ["BARE", "VARIANTS", "BareTarget", "BenchImage", "Live", "OciTarget", "RunResult",
           "Slot", "Target", "Workdir", "Workload", "drop_caches", "find_image", "make_targets",
           "tree_memory"]

BARE = "bare"
VARIANTS = ("runsc", "runc", "crun", BARE)
CID_PREFIX = CONTAINER_PREFIX + "bench-"
WORK_BASE = Path("/var/tmp")
CGROUP_ROOT = Path("/sys/fs/cgroup")
IMAGE_CACHE_ENV = "IRONCLAW_BENCH_IMAGE_CACHE"
DEFAULT_IMAGE_CACHE = Path("/var/tmp/ironclaw-bench-images")
# Process roles in a sandbox's tree, for memory attribution.
ROLE_CLI = "runtime CLI (foreground)"
ROLE_SENTRY = "gVisor Sentry (runsc-sandbox)"
ROLE_GOFER = "gVisor gofer"
ROLE_STUBS = "ptrace stubs (guest tasks)"
ROLE_AGENT = "agent / workload processes"
ROLES = (ROLE_AGENT, ROLE_CLI, ROLE_SENTRY, ROLE_GOFER, ROLE_STUBS)
BUSYBOX = Path("/bin/busybox")
BUSYBOX_APPLETS = ("sh", "true", "sleep", "cat", "dd", "echo", "rm", "sync")
# The sealed image's mount points, relative to a rootfs.
MOUNT_DIRS = tuple(path.lstrip("/") for path in MOUNT_POINTS_DIRS)
MOUNT_FILES = tuple(path.lstrip("/") for path in MOUNT_POINTS_FILES)


# -- work directory --------------------------------------------------------------------

class Workdir:
    """``/var/tmp/ironclaw-bench-*`` (0711) with a private runtime state root. Closing
    it removes every container, bundle and cgroup of ours, then the directory."""

    def __init__(self, *, base: Path = WORK_BASE) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="ironclaw-bench-", dir=base))
        self.root.chmod(0o711)
        self.state = self.root / "state"
        self.state.mkdir(mode=0o711)
        self._count = 0

    def fresh(self, name: str) -> Path:
        self._count += 1
        path = self.root / f"{name}-{self._count}"
        path.mkdir(mode=0o711)
        return path

    def close(self) -> None:
        clean_state(self.state)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Workdir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def clean_state(state: Path) -> None:
    """Remove every container, bundle and cgroup of ``state``'s sandboxes, then our
    (now empty) parent cgroup in every hierarchy (rmdir only succeeds when empty)."""
    with contextlib.suppress(Exception):
        reconcile_runtime_state(state)
    parent = cgroup_parent(state)
    for hierarchy in (CGROUP_ROOT, *(CGROUP_ROOT.iterdir() if CGROUP_ROOT.is_dir()
                                     else ())):
        with contextlib.suppress(OSError):
            (hierarchy / parent).rmdir()


# -- images and workloads --------------------------------------------------------------

@attrs.frozen
class Workload:
    """What one run does. ``agent`` is the real agent (sealed image) or a stand-in that
    writes a heartbeat and sleeps (busybox)."""

    name: str  # noop | cpu | syscall | io | idle | agent
    iterations: int | None = None
    seconds: float = 0.0


@attrs.frozen
class BenchImage:
    kind: str  # "sealed" | "busybox"
    rootfs: Path
    agent_binary: str = ""  # in-sandbox path of the frozen agent (sealed only)
    digest: str = ""
    description: str = ""

    def sandbox_args(self, work: Workload, *, config_path: str = "/run/ironclaw/agent.json"
                     ) -> tuple[str, ...]:
        if self.kind == "sealed":
            if work.name == "agent":
                return (self.agent_binary, "--config", config_path)
            args = [self.agent_binary, "--workload", work.name]
            if work.iterations is not None:
                args += ["--iterations", str(work.iterations)]
            if work.seconds:
                args += ["--seconds", f"{work.seconds:g}"]
            return tuple(args)
        return ("/bin/sh", "-c", busybox_script(work))

    def host_args(self, work: Workload, rootfs: Path, *, config_path: Path | None = None
                  ) -> list[str]:
        """The same program and arguments, run directly on the host from ``rootfs``."""
        args = list(self.sandbox_args(work, config_path=str(config_path or "")))
        args[0] = str(rootfs / args[0].lstrip("/"))
        return args


def busybox_script(work: Workload) -> str:
    """Shell stand-ins for the agent's workloads, timed inside with /proc/uptime (10 ms
    resolution: fine for loops of a second or more). Builtins only in the loops, so
    the shell forks nothing: ``[ -e ]`` is a stat, ``read < f`` an open/read/close."""
    n = work.iterations or 0
    clock = 'read u _ < /proc/uptime; {v}=${{u%.*}}${{u#*.}}'
    head = clock.format(v="t0") + "; "
    tail = ("; " + clock.format(v="t1") + "; "
            'echo "{\\"workload\\": \\"' + work.name + '\\", \\"iterations\\": ' + str(n)
            + ', \\"elapsed_s\\": $(( (t1 - t0) ))e-2}"')
    if work.name == "noop":
        return "exit 0"
    if work.name == "cpu":
        return head + f"i=0; while [ $i -lt {n} ]; do i=$((i+1)); done" + tail
    if work.name == "syscall":
        return (head + "echo x > /tmp/s0; echo x > s1; i=0; "
                f"while [ $i -lt {n} ]; do [ -e /tmp/s0 ]; read a < /tmp/s0; [ -e s1 ]; "
                "read b < s1; [ -e /tmp/missing ]; i=$((i+1)); done; rm -f /tmp/s0 s1" + tail)
    if work.name == "io":
        return (head + f"i=0; while [ $i -lt {n} ]; do "
                "dd if=/dev/zero of=io bs=65536 count=1 conv=fsync 2>/dev/null; "
                "read x < io; i=$((i+1)); done; rm -f io" + tail)
    if work.name == "idle":
        return f"exec sleep {work.seconds or 3600:g}"
    if work.name == "agent":
        return "echo 1 > /queue/outbound/heartbeat; exec sleep 3600"
    raise ValueError(f"unknown workload {work.name!r}")


def build_busybox_rootfs(dest: Path, applets: tuple[str, ...] = BUSYBOX_APPLETS) -> Path:
    """A static busybox with the sealed image's mount points: a stand-in image for
    measuring (and testing) runtimes and the spec rather than the agent."""
    if not BUSYBOX.exists():
        raise FileNotFoundError("busybox-static is not installed (/bin/busybox)")
    rootfs = dest / "rootfs"
    for name in MOUNT_DIRS:
        (rootfs / name).mkdir(parents=True, exist_ok=True)
    for name in MOUNT_FILES:
        (rootfs / name).touch()
    (rootfs / "bin").mkdir(exist_ok=True)
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    for applet in applets:
        (rootfs / "bin" / applet).symlink_to("busybox")
    (rootfs / "etc").mkdir(exist_ok=True)
    (rootfs / "etc" / "passwd").write_text("agent:x:65532:65532::/workspace:/bin/sh\n")
    (rootfs / "etc" / "group").write_text("agent:x:65532:\n")
    (rootfs / "tmp").chmod(0o1777)
    for path in (dest, *(p for p in rootfs.rglob("*") if p.is_dir() and not p.is_symlink())):
        path.chmod(path.stat().st_mode | 0o011)
    rootfs.chmod(0o755)
    return rootfs


def find_image(workdir: Workdir, *, prefer: str = "sealed") -> tuple[BenchImage, list[str]]:
    """The sealed image if this build has one (built or cached, then verified), else
    the busybox stand-in. Returns the image and notes on how it was chosen."""
    notes: list[str] = []
    if prefer == "sealed":
        try:
            image = _sealed_image(workdir)
        except Exception as exc:  # no image support in this build, or no build tools
            notes.append(f"sealed image unavailable ({type(exc).__name__}: {exc}); "
                         "using the busybox stand-in")
        else:
            if image is not None:
                return image, notes
    rootfs = build_busybox_rootfs(workdir.fresh("busybox"))
    return BenchImage("busybox", rootfs, description="busybox-static stand-in "
                      "(shell loops; not the sealed agent image)"), notes


def image_cache_dir() -> Path:
    """Where the bench keeps built images: ``$IRONCLAW_BENCH_IMAGE_CACHE``, else
    ``/var/tmp/ironclaw-bench-images``. Not the daemon's default (under the home
    directory, which is 0700 for root): a runtime mounts the rootfs from inside the
    sandbox's user namespace, so every parent must be searchable by others."""
    return Path(os.environ.get(IMAGE_CACHE_ENV) or DEFAULT_IMAGE_CACHE)


def _sealed_image(workdir: Workdir) -> BenchImage | None:
    from ironclaw.host.isolation.image import build_image, verify_image

    cache = image_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    for parent in (cache, *cache.parents):
        if parent.stat().st_mode & 0o001 == 0:
            raise PermissionError(f"{parent} is not searchable by others (o+x); the "
                                  "sandbox could not reach the image there")
    outcome = build_image(cache_dir=cache)
    built = outcome.image
    verify_image(built.rootfs, built.digest)
    how = "from the cache" if outcome.cached else f"built in {outcome.seconds:.0f} s"
    return BenchImage("sealed", Path(built.rootfs), agent_binary=built.entrypoint[0],
                      digest=built.digest,
                      description=f"sealed image sha256:{built.digest[:16]}... (frozen "
                                  f"agent, {built.size_bytes >> 20} MiB; {how})")


# -- slots: one sandbox's host-side paths ----------------------------------------------

# Host-side ownership as OciIsolator prepares a session (gVisor 2022 ignores group
# permissions across its user namespace, so sharing goes by owner): outbound and
# workspace are the agent uid's, 0700; inbound is the agent uid's, 0500 (bound
# read-only); the socket directory stays root's, 0711.
HOST_SIDE = ("host-side ownership as OciIsolator prepares a session: outbound and "
             "workspace the agent's 0700, inbound the agent's 0500 (bound read-only), "
             "sockets root's 0711")


@attrs.frozen
class Slot:
    root: Path
    inbound: Path
    outbound: Path
    sockets: Path
    workspace: Path
    scratch: Path  # the bare process's $TMPDIR (the sandbox has its own tmpfs)
    key_file: Path
    config_file: Path  # the sandbox's agent.json (in-sandbox paths)
    host_config_file: Path  # the bare agent's (host paths)

    @property
    def heartbeat(self) -> Path:
        return self.outbound / HEARTBEAT_FILE

    @classmethod
    def make(cls, workdir: Workdir, mapping: UserMapping) -> Slot:
        root = workdir.fresh("slot")
        uid = mapping.agent_host_uid
        paths = {name: root / name for name in ("inbound", "outbound", "sockets",
                                                "workspace", "scratch")}
        for path in paths.values():
            path.mkdir()
        for name in ("outbound", "workspace"):
            os.chown(paths[name], uid, uid)
            paths[name].chmod(0o700)
        os.chown(paths["inbound"], uid, uid)
        paths["inbound"].chmod(0o500)
        paths["sockets"].chmod(0o711)
        paths["scratch"].chmod(0o700)
        keys = SessionKeys.generate()
        sid = new_session_id()
        config = AgentConfig(session_id=sid, agent_group_id="bench", provider=ProviderConfig(
            api=ModelApi.ANTHROPIC_MESSAGES, host=MOCK_MODEL_HOST, model="mock"))
        key_file, config_file = root / "session.key", root / "agent.json"
        host_config = root / "agent-host.json"
        _write(key_file, keys.render_file().encode(), uid, 0o400)
        _write(config_file, config.render().encode(), uid, 0o400)
        host = attrs.evolve(config, inbound_dir=paths["inbound"],
                            outbound_dir=paths["outbound"], key_file=key_file,
                            socket_dir=paths["sockets"], workspace=paths["workspace"],
                            scratch_dir=paths["scratch"])
        _write(host_config, host.render().encode(), None, 0o400)
        return cls(root=root, inbound=paths["inbound"], outbound=paths["outbound"],
                   sockets=paths["sockets"], workspace=paths["workspace"],
                   scratch=paths["scratch"], key_file=key_file, config_file=config_file,
                   host_config_file=host_config)

    def reset(self) -> None:
        """Forget the last run's heartbeat (and nothing else)."""
        self.heartbeat.unlink(missing_ok=True)


def _write(path: Path, data: bytes, owner: int | None, mode: int) -> None:
    path.write_bytes(data)
    if owner is not None:
        os.chown(path, owner, owner)
    path.chmod(mode)


# -- targets: a runtime, or the bare process -------------------------------------------

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


# -- cold starts -----------------------------------------------------------------------

def drop_caches() -> tuple[bool, str]:
    """``sync; echo 3 > /proc/sys/vm/drop_caches`` if this process may."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as handle:
            handle.write("3\n")
    except OSError as exc:
        return False, f"{type(exc).__name__}: {exc.strerror or exc}"
    return True, "dropped"


def fresh_rootfs(image: BenchImage, workdir: Workdir) -> Path:
    dest = workdir.fresh("cold")
    rootfs = dest / "rootfs"
    shutil.copytree(image.rootfs, rootfs, symlinks=True)
    rootfs.chmod(0o755)
    return rootfs


# -- process trees and memory ----------------------------------------------------------

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
