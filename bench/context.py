"""The context every suite records: what the host is, so a figure can be read.

Host facts are read once per run, from /proc and /sys, and the OCI runtimes are asked
their versions. Nothing here measures anything; a fact that cannot be read is recorded
as such ("unknown: <why>"), never guessed.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shutil
import socket
from pathlib import Path
from typing import Any

from ironclaw.host.isolation.runtimes import cgroup_unified_is_hybrid, runtime_version

__all__ = ["RUNTIMES", "cgroup_version", "host_facts", "nested_virt_hint", "runtime_inventory",
           "short_host"]

# The OCI runtimes a suite may compare, strongest first.
RUNTIMES = ("runsc", "runc", "crun")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def short_host() -> str:
    """The host name used in result file names (no domain, filename-safe)."""
    name = socket.gethostname().split(".")[0] or "host"
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def cgroup_version(root: Path = CGROUP_ROOT) -> str:
    """``v2`` (unified only), ``hybrid`` (v1 controllers plus a cgroup2 mount that has
    controllers of its own: the layout crun refuses), or ``v1``."""
    if (root / "cgroup.controllers").exists():
        return "v2"
    if (root / "unified").is_dir():
        return "hybrid" if cgroup_unified_is_hybrid() else "v1 (empty unified mount)"
    return "v1" if root.is_dir() else "none"


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def nested_virt_hint() -> dict[str, Any]:
    """Whether this host is a guest, and whether it can host a KVM guest itself.

    gVisor's KVM platform needs hardware virtualisation (vmx/svm) visible to this
    kernel; a guest without it runs gVisor on ptrace (or systrap), which costs far
    more per syscall. These are hints from the CPU flags, not proof."""
    flags = _cpu_flags()
    guest = "hypervisor" in flags
    hw = bool(flags & {"vmx", "svm"})
    if guest and not hw:
        summary = "guest VM without nested virtualisation (no vmx/svm): gVisor KVM unusable"
    elif guest:
        summary = "guest VM with vmx/svm exposed (nested virtualisation possible)"
    elif hw:
        summary = "bare metal with vmx/svm"
    else:
        summary = "no hypervisor flag and no vmx/svm"
    return {"guest": guest, "vmx_or_svm": hw, "dev_kvm": os.path.exists("/dev/kvm"),
            "summary": summary}


def runtime_inventory() -> dict[str, dict[str, Any]]:
    """Each OCI runtime: present (with binary path and version) or absent."""
    found: dict[str, dict[str, Any]] = {}
    for name in RUNTIMES:
        binary = shutil.which(name)
        if binary is None:
            found[name] = {"status": "absent", "reason": f"{name} not found on PATH"}
            continue
        entry: dict[str, Any] = {"status": "present", "binary": binary,
                                 "version": runtime_version(binary)}
        if name == "runsc":
            entry["platform"] = "ptrace"  # what OciRuntime passes (--platform=ptrace)
            entry["flags"] = "--platform=ptrace --network=none --host-uds=open --oci-seccomp"
        if name == "crun" and cgroup_unified_is_hybrid():
            entry["wrapper"] = "private mount namespace masking /sys/fs/cgroup/unified"
        found[name] = entry
    return found


def _meminfo() -> dict[str, int]:
    values: dict[str, int] = {}
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                key, _, rest = line.partition(":")
                values[key] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return values


def _os_release() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return "unknown"


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def host_facts() -> dict[str, Any]:
    """Kernel, OS, CPU model and count, memory, cgroup version, virtualisation hint,
    runtime versions, Python and SQLCipher versions, load at the start."""
    cpu_model = "unknown"
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = _meminfo()
    facts: dict[str, Any] = {
        "host": short_host(),
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "kernel": platform.release(),
        "os": _os_release(),
        "machine": platform.machine(),
        "cpu_model": cpu_model,
        "cpus": os.cpu_count(),
        "mem_total_mib": round(mem.get("MemTotal", 0) / 1024),
        "mem_available_mib": round(mem.get("MemAvailable", 0) / 1024),
        "load_avg_at_start": _load(),
        "cgroup": cgroup_version(),
        "virtualisation": nested_virt_hint(),
        "runtimes": runtime_inventory(),
        "python": platform.python_version(),
        "euid": os.geteuid(),
    }
    try:
        import sqlcipher3

        conn = sqlcipher3.connect(":memory:")
        facts["sqlcipher"] = conn.execute("PRAGMA cipher_version").fetchone()[0]
        facts["sqlite"] = sqlcipher3.sqlite_version
        conn.close()
    except Exception as exc:  # a host without the wheel still gets a report
        facts["sqlcipher"] = f"unknown: {exc}"
    return facts
