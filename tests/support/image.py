"""The sealed sandbox image, built once per test session from this checkout.

Any test can ask for ``sandbox_image`` (a ``SandboxImage``: ``rootfs``, ``digest``,
``entrypoint``) and get a real image, frozen by PyInstaller from the code under test.
The first test to ask pays for the build (tens of seconds on two cores); the rest get
the same image. It lives in a fresh cache under pytest's temporary directory, unless
``IRONCLAW_TEST_IMAGE_CACHE`` names a cache to reuse across runs (a cached image is
verified against its digest before it is handed out, so reuse is safe).

The image is shared: a test that wants to damage one copies it first
(``copy_image``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ironclaw.host.isolation.image import SandboxImage, build_image

CACHE_ENV = "IRONCLAW_TEST_IMAGE_CACHE"


@pytest.fixture(scope="session")
def sandbox_image_cache(sandbox_tmp_session: Path) -> Path:
    """Under a sandbox-reachable directory (see ``sandbox_tmp``): runtimes mount the
    rootfs from inside the user namespace."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured) if configured else sandbox_tmp_session / "image-cache"


@pytest.fixture(scope="session")
def sandbox_image(sandbox_image_cache: Path) -> SandboxImage:
    return build_image(cache_dir=sandbox_image_cache).image


def copy_image(image: SandboxImage, destination: Path) -> SandboxImage:
    """A private copy (rootfs and manifest.json side by side, modes kept) to damage."""
    destination.mkdir(parents=True)
    subprocess.run(["cp", "-a", str(image.rootfs), str(destination / "rootfs")], check=True)
    shutil.copy2(image.rootfs.parent / "manifest.json", destination / "manifest.json")
    return SandboxImage(digest=image.digest, rootfs=destination / "rootfs",
                        size_bytes=image.size_bytes, entrypoint=image.entrypoint,
                        inputs_key=image.inputs_key, built_at=image.built_at)
