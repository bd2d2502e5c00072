"""What the harness tries from inside a sandbox, and what "contained" means for each.

A probe is one run of ``ironclaw-probe`` inside a live session's container, as the
sandbox's own uid (65532), through the runtime's ``exec``: it gets the container's
namespaces, cgroup, seccomp profile and (empty) capabilities, so it stands exactly
where a compromised agent stands. Its arguments name host things it must NOT reach:
the host's address, the state directory's key files, another session. The ``mount.``
probes check a granted host mount both ways: what was granted is there (read-only,
or writable where writing was granted), and nothing beside it is (a sibling under the
same root, the root itself, ``..`` escapes, a symlink planted in the writable one).
"""

from __future__ import annotations

import attrs

from .toolkit import TOOLKIT_MOUNT

__all__ = ["ProbeTargets", "probe_plan"]

PROBE = str(TOOLKIT_MOUNT / "ironclaw-probe")
SUID_BUSYBOX = str(TOOLKIT_MOUNT / "suid-busybox")
OUTSIDE_ADDRESS = "1.1.1.1"
# The mounts the harness grants the demo group, under its mount root (``harness``).
GRANTED_RO, GRANTED_RW, SIBLING = "granted-ro", "granted-rw", "sibling"
README, SECRET = "readme.txt", "secret.txt"


@attrs.frozen
class ProbeTargets:
    host_address: str  # an address of this host on its own network
    resolver: str  # the host's DNS resolver
    marker: str  # random text the harness planted in a world-readable host file
    marker_relative: str  # that file's path relative to the state directory
    master_key_path: str  # host paths that must not exist inside the sandbox
    key_store_path: str
    other_session_id: str
    other_session_key_path: str
    other_session_dir: str
    model_socket: str
    egress_socket: str
    unapproved_host: str
    mount_root: str  # the host's mount root (granted-ro, granted-rw, sibling below it)
    mount_text: str  # what the granted files hold
    mount_marker: str  # what the sibling's and the root's files hold


def probe_plan(t: ProbeTargets) -> list[list[str]]:
    """Each entry is one probe invocation's argv (after the probe binary)."""
    return [
        ["interfaces"],
        ["tcp", OUTSIDE_ADDRESS, "outside", "443"],
        ["tcp", t.host_address, "host", "22"],
        ["dns", t.resolver],
        ["absent", "/var/run/docker.sock", "docker.socket"],
        ["absent", "/run/containerd/containerd.sock", "containerd.socket"],
        ["findname", "docker", "docker.client"],
        ["marker", t.marker, t.marker_relative],
        ["uncreatable", "/app/planted", "rootfs.write"],
        ["uncreatable", "/etc/planted", "rootfs.write_etc"],
        ["uncreatable", "/queue/inbound/planted", "inbound.create"],
        ["unwritable", "/queue/inbound/inbound.db", "inbound.open_for_write"],
        ["unreadable", t.master_key_path, "keys.master_key"],
        ["unreadable", t.key_store_path, "keys.key_store"],
        ["findname", "master.key", "keys.master_key_anywhere"],
        ["findname", "sealed-keys.json", "keys.key_store_anywhere"],
        ["unreadable", t.other_session_key_path, "other_session.key"],
        ["absent", t.other_session_dir, "other_session.queues"],
        ["findname", t.other_session_id, "other_session.anywhere"],
        ["ptrace"], ["mount"], ["unshare-user"], ["unshare-mount"], ["setns"], ["bpf"],
        ["keyctl"], ["kexec"], ["init-module"], ["chroot"],
        ["setuid"],
        ["setuid-binary", SUID_BUSYBOX],
        ["model-proxy", t.model_socket, "evil.example.com"],
        ["egress", t.egress_socket, t.unapproved_host],
        # the seccomp filter's argument and syscall limits
        ["af-alg"], ["af-vsock"], ["memfd-exec"],
        *mount_probes(t),
    ]


def mount_probes(t: ProbeTargets) -> list[list[str]]:
    ro, rw = f"/mnt/{GRANTED_RO}", f"/mnt/{GRANTED_RW}"
    return [
        ["reachable", f"{ro}/{README}", t.mount_text, "mount.granted_read"],
        ["uncreatable", f"{ro}/planted", "mount.read_only"],
        ["creatable", f"{rw}/planted", "mount.granted_write"],
        ["secret", t.mount_marker, f"{SIBLING}/{SECRET}", "mount.beside"],
        ["unreadable", f"{ro}/../{SIBLING}/{SECRET}", "mount.dotdot_sibling"],
        ["unreadable", f"{ro}/../../{SECRET}", "mount.dotdot_root"],
        ["symlink-out", f"{rw}/escape", f"{t.mount_root}/{SIBLING}", SECRET,
         "mount.symlink_out"],
        ["symlink-out", f"{rw}/escape-up", f"../{SIBLING}", SECRET, "mount.symlink_up"],
    ]
