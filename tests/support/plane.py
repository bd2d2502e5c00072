"""A real control plane for tests: the dev configuration (the ``process`` runtime, the
mock model, the demo agent) with timers short enough for a test, in one place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ironclaw.host.config import ControlPlaneConfig
from ironclaw.runtime import BackoffPolicy

# Restarts and reconnects are the subject of many tests: retry quickly, never park.
FAST_BACKOFF = BackoffPolicy(initial=0.05, cap=0.5, max_failures=None, healthy_after=0.5)


def dev_plane_config(state_dir: Path, key_dir: Path, **overrides: Any) -> ControlPlaneConfig:
    """The dev plane's configuration with a test's timers; ``overrides`` win."""
    fields: dict[str, Any] = {
        "state_dir": state_dir, "dev": True, "runtime": "process", "key_dir": key_dir,
        "safety_poll_s": 0.5, "heartbeat_interval_s": 0.5, "sweep_interval_s": 0.2,
        "sandbox_backoff": FAST_BACKOFF}
    return ControlPlaneConfig(**{**fields, **overrides})
