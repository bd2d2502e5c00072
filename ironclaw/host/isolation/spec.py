"""The hardened OCI spec: one for every runtime, and a validator that refuses weaker.

:func:`build_spec` emits the ``config.json`` of a session's bundle from
:class:`BundleInputs`; it validates its own output with :func:`validate_spec` before
returning, so nothing weaker than invariant 2 of docs/design.md can leave this module. The validator
is separate so that a spec changed afterwards (by a future edit, or deliberately by
the red-team harness's negative control) is judged by the same rules; the isolator
runs it again right before every launch. ``docs/sandbox.md`` explains every line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import attrs

from ironclaw.contract.agent_config import SANDBOX_CONFIG_FILE
from ironclaw.contract.layout import (
    SANDBOX_INBOUND_DIR,
    SANDBOX_KEY_FILE,
    SANDBOX_OUTBOUND_DIR,
    SANDBOX_SOCKET_DIR,
    SANDBOX_WORKSPACE,
)

from .seccomp import (
    CLONE_NAMESPACE_FLAGS,
    FORBIDDEN_SYSCALLS,
    SOCKET_FAMILIES,
    argument_filters,
    seccomp_profile,
)

__all__ = ["AGENT_UID", "BundleInputs", "GrantedBind", "SandboxLimits", "SpecInputs",
           "UserMapping", "WeakSpec", "base_mounts", "bind_mount", "build_spec",
           "sandbox_spec", "validate_spec"]

AGENT_UID = 65532
REQUIRED_NAMESPACES = ("pid", "network", "ipc", "uts", "mount", "user", "cgroup")
MASKED_PATHS = (
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
# A bind's options must say all of these: no device files, no setuid, and for every
# writable one, nothing executable either (invariant 3).
BIND_BASE_OPTIONS = ("rbind", "nosuid", "nodev", "noexec")
TMP_MAX_BYTES = 1024 * 1024 * 1024
# Granted host mounts land under here. Its base is the launch's stage directory
# (hostmounts.py), bound read-only: every mount point is already there, so no runtime
# creates one in the shared, read-only image (gVisor's gofer could not: it makes
# mount points in the host's rootfs directory).
GRANTED_MOUNTS_DIR = "/mnt"


class WeakSpec(ValueError):
    """The spec is weaker than the sandbox invariants; ``problems`` says every way."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("refusing a sandbox spec weaker than the invariants: "
                         + "; ".join(problems))
        self.problems = problems


@attrs.frozen
class SandboxLimits:
    """cgroup limits per sandbox. gVisor runs guest threads as host threads (ptrace
    platform) and needs a far higher pids limit than the agent itself would."""

    memory_bytes: int = 512 * 1024 * 1024
    cpus: float = 1.0
    pids: int = 256
    gvisor_pids: int = 8192
    nofile: int = 1024
    tmp_bytes: int = 64 * 1024 * 1024

    def __attrs_post_init__(self) -> None:
        if not (16 * 1024 * 1024 <= self.memory_bytes <= 1 << 40):
            raise ValueError("memory_bytes must be between 16 MiB and 1 TiB")
        if not (0.01 <= self.cpus <= 256):
            raise ValueError("cpus must be between 0.01 and 256")
        if not (8 <= self.pids <= 65536 and 8 <= self.gvisor_pids <= 65536):
            raise ValueError("pids limits must be between 8 and 65536")
        if not (64 <= self.nofile <= 65536):
            raise ValueError("nofile must be between 64 and 65536")
        if not (1024 * 1024 <= self.tmp_bytes <= TMP_MAX_BYTES):
            raise ValueError("tmp_bytes must be between 1 MiB and 1 GiB")


@attrs.frozen
class UserMapping:
    """The user namespace: sandbox ids 0..size-1 are host ids host_base.. The agent's
    65532 is therefore an unprivileged host id that owns nothing else."""

    host_base: int = 200_000
    size: int = 65536

    def __attrs_post_init__(self) -> None:
        if self.host_base < 1000 or self.size <= AGENT_UID or \
                self.host_base + self.size > 2**32 - 2:
            raise ValueError("the user mapping must start at host id >= 1000 and cover "
                             f"{AGENT_UID}")

    @property
    def agent_host_uid(self) -> int:
        return self.host_base + AGENT_UID


@attrs.frozen
class ExtraBind:
    """A read-only bind beyond the production set: only the red-team harness adds one
    (its attack toolkit), and the validator accepts it only when told to."""

    source: Path
    destination: Path


def _granted_target(_instance: object, _attribute: object, value: str) -> None:
    if not is_granted_target(value):
        raise ValueError(f"a granted mount lands under {GRANTED_MOUNTS_DIR}/: {value!r:.80}")


def is_granted_target(path: str) -> bool:
    """``/mnt/<name>``, one plain component (the validator's rule for granted binds)."""
    name = path.removeprefix(GRANTED_MOUNTS_DIR + "/")
    return (path.startswith(GRANTED_MOUNTS_DIR + "/") and 0 < len(name) <= 255
            and "/" not in name and name not in (".", "..") and "\x00" not in name)


@attrs.frozen
class GrantedBind:
    """A host mount an approved change granted to the agent group, as staged by
    :mod:`.hostmounts`: ``source`` is the stage point ``<stage dir>/<name>`` for the
    target ``/mnt/<name>``, never the operator's path."""

    source: Path
    destination: str = attrs.field(validator=_granted_target)
    writable: bool = False


@attrs.frozen
class BundleInputs:
    container_id: str
    rootfs: Path
    args: tuple[str, ...]
    inbound_dir: Path
    outbound_dir: Path
    key_file: Path
    config_file: Path
    socket_dir: Path
    workspace: Path
    cgroups_path: str
    gvisor: bool = False
    limits: SandboxLimits = SandboxLimits()
    mapping: UserMapping = UserMapping()
    extra_binds: tuple[ExtraBind, ...] = ()
    granted: tuple[GrantedBind, ...] = ()

    def expected_binds(self) -> dict[str, tuple[Path, bool]]:
        """Destination -> (host source, writable), the only binds a spec may have.
        Extra (harness) binds come last and are read-only."""
        binds = {
            str(SANDBOX_INBOUND_DIR): (self.inbound_dir, False),
            str(SANDBOX_OUTBOUND_DIR): (self.outbound_dir, True),
            str(SANDBOX_KEY_FILE): (self.key_file, False),
            str(SANDBOX_CONFIG_FILE): (self.config_file, False),
            str(SANDBOX_SOCKET_DIR): (self.socket_dir, False),
            str(SANDBOX_WORKSPACE): (self.workspace, True),
        }
        for extra in self.extra_binds:
            binds[str(extra.destination)] = (extra.source, False)
        if self.granted:
            binds[GRANTED_MOUNTS_DIR] = (self.granted[0].source.parent, False)
        for granted in self.granted:
            binds[granted.destination] = (granted.source, granted.writable)
        return binds


def _bind(source: Path, destination: str, writable: bool) -> dict[str, Any]:
    return {"destination": destination, "type": "bind", "source": str(source),
            "options": [*BIND_BASE_OPTIONS, "rw" if writable else "ro"]}


def _toolkit_bind(extra: ExtraBind) -> dict[str, Any]:
    # The harness's attack tools must run, so this one read-only bind is executable.
    return {"destination": str(extra.destination), "type": "bind",
            "source": str(extra.source), "options": ["rbind", "nosuid", "nodev", "ro"]}


def build_spec(inputs: BundleInputs) -> dict[str, Any]:
    mounts = base_mounts(inputs.limits)
    toolkit = {str(extra.destination) for extra in inputs.extra_binds}
    for destination, (source, writable) in inputs.expected_binds().items():
        if destination not in toolkit:
            mounts.append(_bind(source, destination, writable))
    mounts.extend(_toolkit_bind(extra) for extra in inputs.extra_binds)
    spec = sandbox_spec(
        rootfs=inputs.rootfs, args=inputs.args,
        env=("PATH=/app", "LANG=C.UTF-8", "HOME=/workspace", "TMPDIR=/tmp"),
        cwd=str(SANDBOX_WORKSPACE), mounts=mounts, cgroups_path=inputs.cgroups_path,
        gvisor=inputs.gvisor, limits=inputs.limits, mapping=inputs.mapping)
    validate_spec(spec, inputs)
    return spec


def base_mounts(limits: SandboxLimits) -> list[dict[str, Any]]:
    """The mounts every sandbox has before its binds: proc, a device tmpfs, a
    read-only sysfs and a capped, non-executable /tmp."""
    return [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "noexec", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "nodev", "noexec", "mode=1777",
                     f"size={limits.tmp_bytes // 1024}k"]},
    ]


def bind_mount(source: Path, destination: str, writable: bool) -> dict[str, Any]:
    """A bind as the validator wants it: nosuid, nodev, noexec, and ro unless writable."""
    return _bind(source, destination, writable)


def sandbox_spec(*, rootfs: Path, args: tuple[str, ...], env: tuple[str, ...], cwd: str,
                 mounts: list[dict[str, Any]], cgroups_path: str, gvisor: bool,
                 limits: SandboxLimits, mapping: UserMapping,
                 socket_families: frozenset[int] = SOCKET_FAMILIES) -> dict[str, Any]:
    """The hardened spec around a program and its mounts, unvalidated: callers run
    :func:`validate_spec` on what they build with it."""
    period = 100_000
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": AGENT_UID, "gid": AGENT_UID},
            "args": list(args),
            "env": list(env),
            "cwd": cwd,
            "capabilities": {name: [] for name in
                             ("bounding", "effective", "inheritable", "permitted", "ambient")},
            "rlimits": [
                {"type": "RLIMIT_NOFILE", "hard": limits.nofile, "soft": limits.nofile},
                {"type": "RLIMIT_CORE", "hard": 0, "soft": 0},
            ],
            "noNewPrivileges": True,
        },
        "root": {"path": str(rootfs), "readonly": True},
        "hostname": "sandbox",
        "mounts": mounts,
        "linux": {
            "namespaces": [{"type": kind} for kind in REQUIRED_NAMESPACES],
            "uidMappings": [{"containerID": 0, "hostID": mapping.host_base,
                             "size": mapping.size}],
            "gidMappings": [{"containerID": 0, "hostID": mapping.host_base,
                             "size": mapping.size}],
            "cgroupsPath": cgroups_path,
            "resources": {
                "memory": {"limit": limits.memory_bytes, "swap": limits.memory_bytes},
                "cpu": {"quota": max(1000, int(limits.cpus * period)), "period": period},
                "pids": {"limit": limits.gvisor_pids if gvisor else limits.pids},
                "devices": [{"allow": False, "access": "rwm"}],
            },
            "seccomp": seccomp_profile(gvisor=gvisor, socket_families=socket_families),
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }


class SpecInputs(Protocol):
    """What the validator judges a spec against: the agent's :class:`BundleInputs`, or
    another sandbox's (an MCP server's, ``serverspec``) with binds of its own."""

    @property
    def gvisor(self) -> bool: ...
    @property
    def limits(self) -> SandboxLimits: ...
    @property
    def mapping(self) -> UserMapping: ...
    @property
    def extra_binds(self) -> tuple[ExtraBind, ...]: ...
    @property
    def granted(self) -> tuple[GrantedBind, ...]: ...
    def expected_binds(self) -> dict[str, tuple[Path, bool]]: ...


def validate_spec(spec: dict[str, Any], inputs: SpecInputs, *,
                  socket_families: frozenset[int] = SOCKET_FAMILIES) -> None:
    """Raise :class:`WeakSpec` unless ``spec`` keeps every sandbox invariant.
    ``socket_families``: what ``socket`` may open (loopback IPv4 too for an MCP server
    with egress; never more, ``seccomp.argument_filters`` refuses it)."""
    problems: list[str] = []
    process = spec.get("process") or {}
    linux = spec.get("linux") or {}
    _check_process(process, problems)
    if (spec.get("root") or {}).get("readonly") is not True:
        problems.append("the root filesystem must be read-only")
    if spec.get("hooks"):
        problems.append("hooks run commands on the host; none are allowed")
    _check_namespaces(linux, inputs.mapping, problems)
    _check_seccomp(linux.get("seccomp"), problems, gvisor=inputs.gvisor,
                   filters=argument_filters(socket_families))
    _check_resources(linux, inputs, problems)
    if linux.get("devices"):
        problems.append("no device nodes may be added")
    if linux.get("sysctl"):
        problems.append("no sysctls may be set")
    for path in MASKED_PATHS:
        if path not in (linux.get("maskedPaths") or ()):
            problems.append(f"{path} must be masked")
    for path in READONLY_PATHS:
        if path not in (linux.get("readonlyPaths") or ()):
            problems.append(f"{path} must be read-only")
    _check_mounts(spec.get("mounts") or [], inputs, problems)
    if problems:
        raise WeakSpec(problems)


def _check_process(process: dict[str, Any], problems: list[str]) -> None:
    user = process.get("user") or {}
    if user.get("uid") != AGENT_UID or user.get("gid") != AGENT_UID:
        problems.append(f"the agent must run as uid and gid {AGENT_UID}")
    if user.get("additionalGids"):
        problems.append("the agent must have no supplementary groups")
    if process.get("noNewPrivileges") is not True:
        problems.append("no_new_privs must be set")
    for name, values in (process.get("capabilities") or {}).items():
        if values:
            problems.append(f"the {name} capability set must be empty")
    if process.get("terminal"):
        problems.append("the agent gets no terminal")


def _check_namespaces(linux: dict[str, Any], mapping: UserMapping,
                      problems: list[str]) -> None:
    namespaces = {ns.get("type"): ns for ns in linux.get("namespaces") or ()}
    for kind in REQUIRED_NAMESPACES:
        if kind not in namespaces:
            problems.append(f"a new {kind} namespace is required")
        elif namespaces[kind].get("path"):
            problems.append(f"the {kind} namespace must be new, not joined from a path")
    for key in ("uidMappings", "gidMappings"):
        maps = linux.get(key) or []
        if not maps:
            problems.append(f"{key} must map the sandbox into unprivileged host ids")
        for entry in maps:
            host, size = int(entry.get("hostID", 0)), int(entry.get("size", 0))
            if host < 1000 or host + size > 2**32 - 2:
                problems.append(f"{key} must not reach host root or system ids")
            if entry != {"containerID": 0, "hostID": mapping.host_base,
                         "size": mapping.size}:
                problems.append(f"{key} differs from the configured mapping")


def _check_seccomp(seccomp: Any, problems: list[str], *, gvisor: bool,
                   filters: dict[str, tuple[int, frozenset[int]]]) -> None:
    if not isinstance(seccomp, dict):
        problems.append("a seccomp profile is required")
        return
    if not str(seccomp.get("defaultAction", "")).startswith(("SCMP_ACT_ERRNO",
                                                            "SCMP_ACT_KILL")):
        problems.append("seccomp must deny by default (an allowlist)")
    for rule in seccomp.get("syscalls") or ():
        if rule.get("action") in ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_TRACE"):
            names = set(rule.get("names") or ())
            allowed = FORBIDDEN_SYSCALLS.intersection(names)
            if allowed:
                problems.append(f"seccomp allows forbidden syscalls {sorted(allowed)}")
            if "clone" in names and not _masks_namespaces(rule.get("args") or ()):
                problems.append("seccomp allows clone with namespace flags")
            if "clone3" in names and not gvisor:
                # Its flags live in memory seccomp cannot read: only gVisor's own
                # kernel may see it (see seccomp.py).
                problems.append("seccomp allows clone3 outside gVisor")
            for name in sorted(names.intersection(filters)):
                index, values = filters[name]
                if not _only_values(rule.get("args") or (), index, values):
                    problems.append(f"seccomp allows {name} with argument {index} "
                                    "outside its allowlist")


def _masks_namespaces(args: Any) -> bool:
    return any(arg.get("index") == 0 and arg.get("op") == "SCMP_CMP_MASKED_EQ"
               and int(arg.get("value", 0)) & CLONE_NAMESPACE_FLAGS == CLONE_NAMESPACE_FLAGS
               and int(arg.get("valueTwo", -1)) == 0 for arg in args)


def _only_values(args: Any, index: int, values: frozenset[int]) -> bool:
    """Every condition pins argument ``index`` to one allowed value. runc reads several
    conditions on one argument as alternatives, so each must be allowed by itself."""
    return bool(args) and all(
        arg.get("index") == index and arg.get("op") == "SCMP_CMP_EQ"
        and int(arg.get("value", -1)) in values for arg in args)


def _check_resources(linux: dict[str, Any], inputs: SpecInputs,
                     problems: list[str]) -> None:
    resources = linux.get("resources") or {}
    memory = (resources.get("memory") or {}).get("limit")
    if not isinstance(memory, int) or memory <= 0 or memory > inputs.limits.memory_bytes:
        problems.append("a memory limit no larger than the configured one is required")
    pids = (resources.get("pids") or {}).get("limit")
    ceiling = inputs.limits.gvisor_pids if inputs.gvisor else inputs.limits.pids
    if not isinstance(pids, int) or pids <= 0 or pids > ceiling:
        problems.append("a pids limit no larger than the configured one is required")
    cpu = resources.get("cpu") or {}
    if not cpu.get("quota") or not cpu.get("period"):
        problems.append("a cpu quota is required")
    if not linux.get("cgroupsPath"):
        problems.append("the sandbox must have its own cgroup")


def _check_mounts(mounts: list[dict[str, Any]], inputs: SpecInputs,
                  problems: list[str]) -> None:
    expected = inputs.expected_binds()
    toolkit = {str(extra.destination) for extra in inputs.extra_binds}
    seen: set[str] = set()
    for mount in mounts:
        destination = str(mount.get("destination", ""))
        options = set(mount.get("options") or ())
        kind = mount.get("type")
        if destination in seen:
            problems.append(f"{destination} is mounted twice")
        seen.add(destination)
        if kind == "bind" or "bind" in options or "rbind" in options:
            if destination not in expected:
                problems.append(f"bind at {destination} is not one of the session's own")
                continue
            source, writable = expected[destination]
            if Path(str(mount.get("source", ""))) != source:
                problems.append(f"{destination} must bind {source}, nothing else")
            required = {"nosuid", "nodev"} if destination in toolkit else {
                "nosuid", "nodev", "noexec"}
            missing = required - options
            if missing:
                problems.append(f"{destination} needs {', '.join(sorted(missing))}")
            # Runtimes apply options in order, so a later "rw" undoes an "ro".
            if not writable and ("ro" not in options or "rw" in options):
                problems.append(f"{destination} must be read-only")
        elif destination == "/tmp":
            if kind != "tmpfs" or not {"nosuid", "nodev", "noexec"} <= options:
                problems.append("/tmp must be a nosuid,nodev,noexec tmpfs")
            if not any(o.startswith("size=") for o in options):
                problems.append("/tmp needs a size limit")
        elif destination == "/sys":
            if "ro" not in options:
                problems.append("/sys must be read-only")
        elif destination == "/dev" and kind == "tmpfs":
            if not {"nosuid", "noexec"} <= options:
                problems.append("/dev must be nosuid,noexec")
        elif (destination, kind) != ("/proc", "proc"):
            problems.append(f"mount at {destination} is not part of the sandbox")
    for destination in expected:
        if destination not in seen:
            problems.append(f"{destination} is missing")
    _check_granted_targets(inputs, problems)


def _check_granted_targets(inputs: SpecInputs, problems: list[str]) -> None:
    """Each granted bind lands at ``/mnt/<name>``, from the stage point of that name in
    the one stage directory bound at /mnt, and no two share a name."""
    if not inputs.granted:
        return
    stages = inputs.granted[0].source.parent
    names: set[str] = set()
    for granted in inputs.granted:
        name = granted.destination.removeprefix(GRANTED_MOUNTS_DIR + "/")
        if not is_granted_target(granted.destination) or granted.source != stages / name:
            problems.append(f"granted mount at {granted.destination} is not its stage "
                            f"point under {GRANTED_MOUNTS_DIR}/")
        if name in names:
            problems.append(f"two granted mounts at {granted.destination}")
        names.add(name)
