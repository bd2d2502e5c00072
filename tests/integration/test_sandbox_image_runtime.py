"""The sealed image under real OCI runtimes: the frozen agent starts from a read-only
rootfs as uid 65532 with no capabilities, and the runtime needs to create nothing.

The spec here is deliberately minimal (the hardened one is the spec builder's job);
it asks only what the image must provide: the entrypoint, its libraries, the mount
points, and a /tmp the agent user can write.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from ironclaw.host.isolation.image import SandboxImage
from ironclaw.host.isolation.mountpoints import AGENT_GID, AGENT_UID

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="OCI runtimes here need root")


def write_bundle(bundle: Path, image: SandboxImage, args: list[str]) -> None:
    bundle.mkdir()
    no_caps: list[str] = []
    config = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False, "user": {"uid": AGENT_UID, "gid": AGENT_GID},
            "args": args, "env": ["LANG=C.UTF-8"], "cwd": "/", "noNewPrivileges": True,
            "capabilities": {k: no_caps for k in ("bounding", "effective", "inheritable",
                                                  "permitted", "ambient")},
        },
        "root": {"path": str(image.rootfs), "readonly": True},
        "hostname": "agent",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "nodev", "noexec", "size=16m"]},
        ],
        "linux": {"namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts",
                                                       "mount")]},
    }
    (bundle / "config.json").write_text(json.dumps(config))


def run_in(runtime: list[str], tmp_path: Path, image: SandboxImage,
           args: list[str]) -> subprocess.CompletedProcess[str]:
    bundle = tmp_path / "bundle"
    write_bundle(bundle, image, args)
    state = tmp_path / "runtime-state"
    container = f"ironclaw-image-test-{uuid.uuid4().hex[:12]}"
    base = [*runtime[:1], "--root", str(state), *runtime[1:]]
    try:
        return subprocess.run([*base, "run", "--bundle", str(bundle), container],
                              capture_output=True, text=True, timeout=120, check=False)
    finally:
        subprocess.run([*base, "delete", "--force", container], capture_output=True,
                       timeout=60, check=False)


RUNTIMES = [
    pytest.param(["runc"], marks=[pytest.mark.runc, pytest.mark.skipif(
        not shutil.which("runc"), reason="runc is not installed")], id="runc"),
    pytest.param(["runsc", "--platform=ptrace", "--network=none"], marks=[
        pytest.mark.runsc,
        pytest.mark.skipif(not shutil.which("runsc"), reason="runsc is not installed")],
        id="runsc"),
]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_frozen_agent_passes_its_self_check_in_the_sandbox(
        runtime: list[str], tmp_path: Path, sandbox_image: SandboxImage) -> None:
    result = run_in(runtime, tmp_path, sandbox_image,
                    [sandbox_image.entrypoint[0], "--self-check"])
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["frozen"] is True and report["sqlcipher"].startswith("4.")


@pytest.mark.parametrize("runtime", RUNTIMES[:1])
def test_the_entrypoint_reads_its_config_from_the_mount_point(
        runtime: list[str], tmp_path: Path, sandbox_image: SandboxImage) -> None:
    # Nothing is bound on /run/ironclaw/agent.json here, so the agent finds the image's
    # empty placeholder and refuses it: exit 2 and one line naming the file.
    result = run_in(runtime, tmp_path, sandbox_image, list(sandbox_image.entrypoint))
    assert result.returncode == 2, result.stderr[-2000:]
    assert "/run/ironclaw/agent.json" in result.stderr
