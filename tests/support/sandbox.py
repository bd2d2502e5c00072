"""Real OCI runtimes for tests: which are present, and a busybox rootfs to run.

The busybox rootfs stands in for the sealed image where a test is about the runtime
and the spec rather than the agent: it has the same mount points as the image, and a
shell for the test's script. Tests of the agent itself use the real sealed image.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ironclaw.contract.agent_config import AgentConfig, ModelApi, ProviderConfig
from ironclaw.contract.ids import new_session_id
from ironclaw.contract.layout import SessionLayout
from ironclaw.host.isolation import LaunchSpec
from ironclaw.host.isolation.oci import VerifiedImage
from ironclaw.host.isolation.runtimes import OciRuntime, RuntimeKind
from ironclaw.host.isolation.standin import BUSYBOX
from ironclaw.host.isolation.standin import build_busybox_rootfs as build_busybox

APPLETS = ("sh", "cat", "id", "ip", "ls", "sleep", "touch", "echo", "nc", "wget",
           "mount", "grep", "stat", "test", "true", "false", "kill")
OCI_KINDS = [RuntimeKind.RUNSC, RuntimeKind.RUNC, RuntimeKind.CRUN]


def require_runtime(kind: RuntimeKind, state_dir: Path) -> OciRuntime:
    runtime = OciRuntime.find(kind, state_dir)
    if runtime is None:
        pytest.skip(f"{kind.value} is not installed on this host")
    return runtime


def build_busybox_rootfs(root: Path) -> Path:
    """The busybox stand-in image, with a test's applets."""
    if not BUSYBOX.exists():
        pytest.skip("busybox-static is not installed (/bin/busybox)")
    return build_busybox(root, APPLETS)


class ScriptImage:
    """An ImageSource running a shell script in the busybox rootfs."""

    def __init__(self, rootfs: Path, script: str) -> None:
        self._image = VerifiedImage(rootfs, ("/bin/sh", "-c", script), "busybox-test")

    async def verified(self) -> VerifiedImage:
        return self._image


def launch_spec(state_dir: Path, key_dir: Path) -> LaunchSpec:
    """A session's paths under ``state_dir``, as the session actor lays them out."""
    sid = new_session_id()
    layout = SessionLayout.under(state_dir, sid)
    queues = layout.create()
    run_dir = layout.root / "run"
    run_dir.mkdir(mode=0o700, exist_ok=True)
    key_file = key_dir / sid / "session.key"
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text("inbound=00\noutbound=00\n")
    key_file.chmod(0o600)
    workspace = state_dir / "workspaces" / "demo"
    workspace.mkdir(parents=True, exist_ok=True)
    config = AgentConfig(session_id=sid, agent_group_id="demo", provider=ProviderConfig(
        api=ModelApi.ANTHROPIC_MESSAGES, host="mock.ironclaw.invalid", model="mock"))
    return LaunchSpec(session_id=sid, agent_group_id="demo", queues=queues,
                      key_file=key_file, socket_dir=layout.socket_dir, workspace=workspace,
                      run_dir=run_dir, config=config)
