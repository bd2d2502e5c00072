"""The OCI spec of an MCP server's sandbox: the agent's hardening, the server's own binds.

Everything but the binds and the program comes from ``spec.sandbox_spec`` and is
judged by the same ``spec.validate_spec`` as the agent's: uid 65532 in a user
namespace, every capability dropped, no_new_privs, the seccomp allowlist, a read-only
rootfs, cgroup limits and no network but loopback. A server's binds are few:

- its own workspace at ``/work``, writable (nosuid, nodev, noexec like every bind);
- the session's workspace at ``/workspace``, read-only, only when its catalogue entry
  asks for it;
- the directory of its egress socket at ``/run/ironclaw/egress``, read-only, only
  when its entry names egress hosts (and then the seccomp profile lets ``socket`` open
  IPv4 too, for the relay on 127.0.0.1: the only interface there is loopback);
- the operator's extra trust anchors at ``/etc/ironclaw/ca.pem``, read-only, if any.

There is no queue, key, config or model socket: a server reaches nothing of the
session but what its binds show.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from .seccomp import LOOPBACK_SOCKET_FAMILIES, SOCKET_FAMILIES
from .serverrootfs import (
    SERVER_CA_FILE,
    SERVER_EGRESS_DIR,
    SERVER_SESSION_WORKSPACE,
    SERVER_WORKDIR,
)
from .spec import (
    ExtraBind,
    GrantedBind,
    SandboxLimits,
    UserMapping,
    base_mounts,
    bind_mount,
    sandbox_spec,
    validate_spec,
)

__all__ = ["SERVER_LIMITS", "ServerBundleInputs", "build_server_spec"]

# A server is one Python process (and a git child for mcp-server-git): far less than
# the agent's budget.
SERVER_LIMITS = SandboxLimits(memory_bytes=256 * 1024 * 1024, cpus=1.0, pids=128,
                              tmp_bytes=32 * 1024 * 1024)


@attrs.frozen
class ServerBundleInputs:
    container_id: str
    rootfs: Path
    args: tuple[str, ...]
    env: tuple[str, ...]
    workdir: Path
    cgroups_path: str
    session_workspace: Path | None = None
    egress_dir: Path | None = None
    ca_file: Path | None = None
    gvisor: bool = False
    limits: SandboxLimits = SERVER_LIMITS
    mapping: UserMapping = attrs.field(factory=UserMapping)

    @property
    def extra_binds(self) -> tuple[ExtraBind, ...]:
        return ()

    @property
    def granted(self) -> tuple[GrantedBind, ...]:
        """A server gets no granted host mounts: its own workdir and, when asked, the
        session's workspace are all it sees."""
        return ()

    @property
    def socket_families(self) -> frozenset[int]:
        """IPv4 too when the server has egress: the boot script's relay listens on
        127.0.0.1 and the server's HTTP client connects to it. The network namespace
        holds nothing but loopback, so no other address answers."""
        return LOOPBACK_SOCKET_FAMILIES if self.egress_dir is not None else SOCKET_FAMILIES

    def expected_binds(self) -> dict[str, tuple[Path, bool]]:
        binds = {SERVER_WORKDIR: (self.workdir, True)}
        if self.session_workspace is not None:
            binds[SERVER_SESSION_WORKSPACE] = (self.session_workspace, False)
        if self.egress_dir is not None:
            binds[SERVER_EGRESS_DIR] = (self.egress_dir, False)
        if self.ca_file is not None:
            binds[SERVER_CA_FILE] = (self.ca_file, False)
        return binds


def build_server_spec(inputs: ServerBundleInputs) -> dict[str, Any]:
    mounts = base_mounts(inputs.limits)
    mounts += [bind_mount(source, destination, writable)
               for destination, (source, writable) in inputs.expected_binds().items()]
    spec = sandbox_spec(rootfs=inputs.rootfs, args=inputs.args, env=inputs.env,
                        cwd=SERVER_WORKDIR, mounts=mounts, cgroups_path=inputs.cgroups_path,
                        gvisor=inputs.gvisor, limits=inputs.limits, mapping=inputs.mapping,
                        socket_families=inputs.socket_families)
    validate_spec(spec, inputs, socket_families=inputs.socket_families)
    return spec
