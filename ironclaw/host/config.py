"""The control plane's configuration, with embedded defaults for --dev."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import attrs

from ironclaw.runtime import BackoffPolicy

from .channels.settings import ChannelSettings
from .gateway import GatewayConfig
from .modelproxy import ProxyLimits

RUNTIMES = ("auto", "runsc", "runc", "crun", "process")
# Runtimes with an isolator in this build, strongest first.
IMPLEMENTED_RUNTIMES = ("process",)


@attrs.frozen
class ControlPlaneConfig:
    state_dir: Path = attrs.field(converter=Path)
    dev: bool = False
    runtime: str = attrs.field(default="auto")
    allow_insecure_runtime: bool = False
    key_dir: Path | None = None  # default: a tmpfs directory (see key_directory)
    idle_timeout_s: float = 600.0
    safety_poll_s: float = 2.0
    heartbeat_interval_s: float = 5.0
    sweep_interval_s: float = 10.0
    sandbox_backoff: BackoffPolicy = attrs.Factory(BackoffPolicy)
    gateway: GatewayConfig = attrs.Factory(GatewayConfig)
    # Per-session model call caps; the defaults protect a provider budget (5/s, burst 20).
    model_limits: ProxyLimits = attrs.Factory(ProxyLimits)
    # Remote chat platforms to connect ([[channels]] in the config file).
    channels: tuple[ChannelSettings, ...] = ()
    # How a remote channel's receive loop is restarted after a lost connection.
    channel_backoff: BackoffPolicy = attrs.Factory(BackoffPolicy)

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
    return [name for name in ("runsc", "runc", "crun") if shutil.which(name)]


def choose_runtime(requested: str) -> tuple[str, str | None]:
    """The runtime to use, and a warning to print if it is weaker than asked for or
    than what the host has."""
    if requested != "auto":
        if requested not in IMPLEMENTED_RUNTIMES:
            raise ValueError(f"runtime {requested!r} is not available in this build yet")
        return requested, None
    present = runtimes_present()
    for name in present:
        if name in IMPLEMENTED_RUNTIMES:
            return name, None
    note = (f"{', '.join(present)} found on this host, but this build has no isolator for "
            "it yet; " if present else "no OCI runtime (runsc, runc, crun) found; ")
    return "process", note + "falling back to 'process', which gives the agent NO isolation"
