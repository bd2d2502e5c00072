"""Containers for the deploy tests, made from Debian's packages and nothing else: a
bookworm root filesystem by ``mmdebstrap``, imported into podman. No image is pulled.

The root filesystem is cached (``IRONCLAW_DEPLOY_CACHE``, default
``/var/tmp/ironclaw-deploy``): making it takes a couple of minutes and the network.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CACHE = Path(os.environ.get("IRONCLAW_DEPLOY_CACHE", "/var/tmp/ironclaw-deploy"))
MIRROR = "http://deb.debian.org/debian"
BASE_IMAGE = "localhost/ironclaw-bookworm:base"
# podman's defaults raise rlimits past what a nested host allows, and crun refuses
# hybrid cgroups: both are the test host's limits, not the product's.
CONTAINERS_CONF = "[containers]\ndefault_ulimits = []\n"


def require_tools() -> None:
    missing = [tool for tool in ("mmdebstrap", "podman") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (dev.sh installs them)")
    if os.geteuid() != 0:
        pytest.skip("needs root (podman --privileged, mmdebstrap)")


def podman_env() -> dict[str, str]:
    CACHE.mkdir(parents=True, exist_ok=True)
    conf = CACHE / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


def podman(*argv: str, timeout: float = 1800, check: bool = True
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", "--runtime", "runc", *argv], env=podman_env(),
                          capture_output=True, text=True, timeout=timeout, check=check)


def base_image(include: tuple[str, ...] = ("python3", "python3-venv", "ca-certificates")
               ) -> str:
    """A minimal bookworm (``minbase``) as a podman image, made once."""
    if podman("image", "exists", BASE_IMAGE, check=False).returncode == 0:
        return BASE_IMAGE
    rootfs = CACHE / "bookworm-minbase.tar"
    if not rootfs.exists():
        partial = rootfs.with_suffix(".partial.tar")
        subprocess.run(["mmdebstrap", "--variant=minbase", "--include=" + ",".join(include),
                        "bookworm", str(partial), MIRROR], check=True, timeout=1800,
                       capture_output=True)
        partial.rename(rootfs)
    podman("import", "-q", str(rootfs), BASE_IMAGE)
    return BASE_IMAGE
