"""The control-plane image (deploy/image/build.sh: mmdebstrap + buildah, nothing
pulled) builds reproducibly (two builds, one digest), starts under podman with
compose's privileges, and a message makes the round trip through its API. Long:
minutes and the network. ``make deploy-test`` runs it."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from .debian import podman, podman_env, require_tools

pytestmark = [pytest.mark.long, pytest.mark.timeout(3600)]
ROOT = Path(__file__).resolve().parents[2]
TAG = "localhost/ironclaw-controlplane:test"
TOKEN = "icw_image_test_owner_" + "t" * 32



def test_the_image_builds_starts_and_answers(tmp_path: Path) -> None:
    require_tools()
    env = {**podman_env(), "IRONCLAW_IMAGE_WORK": str(tmp_path / "work"),
           "PYTHON": os.environ.get("PYTHON", "python3")}
    started = time.monotonic()
    build = subprocess.run([str(ROOT / "deploy" / "image" / "build.sh"), TAG], env=env,
                           capture_output=True, text=True, timeout=3000)
    assert build.returncode == 0, build.stderr[-3000:]
    digest = build.stdout.strip().splitlines()[-1]
    assert digest.startswith("sha256:")
    # Reproducible: a second build from the same checkout gives the same digest.
    again = subprocess.run([str(ROOT / "deploy" / "image" / "build.sh"), TAG + "-again"],
                           env=env, capture_output=True, text=True, timeout=3000)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.strip().splitlines()[-1] == digest
    size = json.loads(podman("image", "inspect", TAG).stdout)[0]["Size"]
    print(f"image {TAG} {digest}: {size / 1e6:.0f} MB, built in "
          f"{time.monotonic() - started:.0f} s")
    # compose's config, plus the offline mock model the test's agent talks to.
    config = tmp_path / "config.toml"
    config.write_text((ROOT / "deploy" / "config.container.toml").read_text()
                      + "mock_model = true\n")
    name = "ironclaw-image-test"
    podman("rm", "-f", name, check=False)
    podman("volume", "rm", "-f", f"{name}-state", check=False)
    # As compose runs it: privileged, the state on a named volume, the config mounted.
    podman("run", "-d", "--name", name, "--privileged", "-v", f"{name}-state:/var/lib/ironclaw",
           "--shm-size=64m", "-e", f"IRONCLAW_API_TOKEN={TOKEN}",
           "-v", f"{config}:/etc/ironclaw/config.toml:ro", "-v", f"{ROOT}:/src:ro",
           "--entrypoint", "/bin/sh", TAG,
           "-c", "ironclaw-controlplane init --config /etc/ironclaw/config.toml && exec "
                 "ironclaw-controlplane --config /etc/ironclaw/config.toml")
    try:
        chat = podman("exec", "-e", f"IRONCLAW_API_TOKEN={TOKEN}", name,
                      "/src/tests/deploy/round_trip.sh", check=False, timeout=1200)
        logs = podman("logs", name, check=False).stderr[-3000:]
        assert chat.returncode == 0 and "echo: hello from the container" in chat.stdout, (
            chat.stdout[-2000:] + chat.stderr[-2000:] + logs)
    finally:
        podman("rm", "-f", "--volumes", name, check=False)
        podman("volume", "rm", "-f", f"{name}-state", check=False)
