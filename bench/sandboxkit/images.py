"""What a run runs: the image (sealed when one can be had, else the busybox stand-in)
and the workload, and cold-start helpers."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import attrs

from ironclaw.host.isolation.standin import build_busybox_rootfs

from .workdir import Workdir

IMAGE_CACHE_ENV = "IRONCLAW_BENCH_IMAGE_CACHE"
DEFAULT_IMAGE_CACHE = Path("/var/tmp/ironclaw-bench-images")


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


