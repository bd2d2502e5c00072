"""The control plane's configuration, with embedded defaults for --dev, and the choice
of sandbox runtime."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import attrs

from ironclaw.host.attachments import AttachmentPolicy
from ironclaw.host.channels.settings import ChannelSettings
from ironclaw.host.egress import EgressConfig
from ironclaw.host.gateway import GatewayConfig
from ironclaw.host.isolation.pool import PoolSettings
from ironclaw.host.isolation.spec import SandboxLimits, UserMapping
from ironclaw.host.isolation.volumes import DiskCaps
from ironclaw.host.mcp import McpConfig
from ironclaw.host.modelproxy import ProxyLimits
from ironclaw.runtime import BackoffPolicy

RUNTIMES = ("auto", "runsc", "runc", "crun", "process")
# OCI runtimes, strongest first: gVisor puts its own kernel between agent and host;
# runc and crun share the host's kernel.
OCI_RUNTIMES = ("runsc", "runc", "crun")
SHARED_KERNEL_WARNING = (
    "runtime {name!r} shares the host kernel with every agent: a kernel exploit from "
    "inside a sandbox is a host compromise. Install gVisor (runsc) for production.")


@attrs.frozen
class ControlPlaneConfig:
    state_dir: Path = attrs.field(converter=Path)
    dev: bool = False
    # The demo agent's provider and model in --dev ("mock" unless --provider says).
    dev_provider: str = "mock"
    dev_model: str = "mock"
    # Serve the offline mock model. The daemon's production mode sets it from the config
    # file (default off); --dev, tests and benchmarks keep it on.
    mock_model: bool = True
    runtime: str = attrs.field(default="auto")
    allow_insecure_runtime: bool = False
    key_dir: Path | None = None  # default: a tmpfs directory (see key_directory)
    idle_timeout_s: float = 600.0
    safety_poll_s: float = 2.0
    heartbeat_interval_s: float = 5.0
    sweep_interval_s: float = 10.0
    # The sweeper's stuck-sandbox and retention knobs (SweepPolicy); the chaos harness
    # shortens them so a stopped agent is acted on, and inbound pruned, within a run.
    stuck_heartbeat_s: float = 120.0
    stuck_stop_cooldown_s: float = 120.0
    inbound_retention_s: float = 86_400.0
    # Delete sessions idle longer than this (queues, keys, rows; never a workspace);
    # None keeps them for ever. ``session_retention_days`` in the config file.
    session_retention_s: float | None = None
    sandbox_backoff: BackoffPolicy = attrs.Factory(BackoffPolicy)
    gateway: GatewayConfig = attrs.Factory(GatewayConfig)
    # Per-session model call caps; the defaults protect a provider budget (5/s, burst 20).
    model_limits: ProxyLimits = attrs.Factory(ProxyLimits)
    # Remote chat platforms to connect ([[channels]] in the config file).
    channels: tuple[ChannelSettings, ...] = ()
    # OCI sandboxes: cgroup limits, the user-namespace mapping, where images are cached.
    sandbox_limits: SandboxLimits = attrs.Factory(SandboxLimits)
    user_mapping: UserMapping = attrs.Factory(UserMapping)
    # Kernel-enforced disk caps for OCI sandboxes: the workspace (per agent group) and
    # outbound (per session) each live on a size-capped filesystem (docs/sandbox.md).
    sandbox_disk: DiskCaps = attrs.Factory(DiskCaps)
    # Warm sandboxes booted ahead of demand, claimed by new or revived sessions (OCI
    # runtimes; docs/sandbox.md). Off unless asked for: the daemon turns it on
    # (daemon_settings), embedders such as tests and benchmarks choose.
    sandbox_pool: PoolSettings = attrs.Factory(lambda: PoolSettings(enabled=False))
    image_cache_dir: Path | None = None
    # The egress broker: limits, local services, search backend, extra CA. Which hosts
    # a group reaches is its grant (approved egress changes), never this.
    egress: EgressConfig = attrs.Factory(EgressConfig)
    # The MCP servers the host offers ([[mcp.servers]]) and the broker's caps. Which
    # servers a group reaches is its mcp_access grant (approved changes), never this.
    mcp: McpConfig = attrs.Factory(McpConfig)
    # How a remote channel's receive loop is restarted after a lost connection.
    channel_backoff: BackoffPolicy = attrs.Factory(BackoffPolicy)
    # Files crossing the chats: caps, quota, allowed types ([attachments]).
    attachments: AttachmentPolicy = attrs.Factory(AttachmentPolicy)

    @runtime.validator
    def _runtime(self, _attribute: object, value: str) -> None:
        if value not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}")

    def key_directory(self) -> Path:
        """Session key files live on a tmpfs when the host has one, so a key never
        reaches a disk; otherwise under the state directory, 0700."""
        if self.key_dir is not None:
            return self.key_dir
        shm = Path("/dev/shm")
        if shm.is_dir() and os.access(shm, os.W_OK):
            return shm / f"ironclaw-{os.getuid()}" / "keys"
        return self.state_dir / "run" / "keys"


def runtimes_present() -> list[str]:
    return [name for name in OCI_RUNTIMES if shutil.which(name)]


def choose_runtime(requested: str, present: list[str] | None = None
                   ) -> tuple[str, str | None]:
    """The runtime to use, and a warning to log, publish and show in ``ironctl
    status`` when it is weaker than gVisor."""
    present = runtimes_present() if present is None else present
    if requested == "auto":
        for name in OCI_RUNTIMES:
            if name in present:
                return name, None if name == "runsc" else SHARED_KERNEL_WARNING.format(
                    name=name)
        return "process", ("no OCI runtime (runsc, runc, crun) found; falling back to "
                           "'process', which gives the agent NO isolation")
    if requested == "process":
        return "process", "runtime 'process' gives the agent NO isolation (development only)"
    if requested not in present:
        raise ValueError(f"runtime {requested!r} is not installed (not found on PATH)")
    return requested, None if requested == "runsc" else SHARED_KERNEL_WARNING.format(
        name=requested)
