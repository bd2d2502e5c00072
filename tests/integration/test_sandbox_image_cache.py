"""Building is content-addressed, cached and reproducible; the pin fails closed.

These reuse the session's image (``sandbox_image``); one test pays for a second,
forced build to show that the same inputs give the same digest.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from ironclaw.cli.controlplane import main
from ironclaw.host.isolation.image import (
    PIN_FILE,
    ImageDigestMismatch,
    SandboxImage,
    build_image,
    ensure_image,
    load_pinned,
    pin_image,
    verify_image,
)
from tests.support.image import copy_image

LIBPYTHON = "app/_internal/libpython3.11.so.1.0"


def flip_one_byte(path: Path, offset: int = 4096) -> None:
    mode = path.stat().st_mode
    os.chmod(path, 0o644)
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0x01]))
    os.chmod(path, mode & 0o7777)


def test_the_same_inputs_are_a_cache_hit(sandbox_image: SandboxImage,
                                         sandbox_image_cache: Path) -> None:
    outcome = build_image(cache_dir=sandbox_image_cache)
    assert outcome.cached
    assert outcome.image == sandbox_image
    assert outcome.seconds < 5  # inputs hashed and the image verified, nothing built


def test_one_flipped_byte_is_caught_before_a_launch(sandbox_image: SandboxImage,
                                                    tmp_path: Path) -> None:
    copy = copy_image(sandbox_image, tmp_path / "copy")
    verify_image(copy.rootfs, copy.digest)
    flip_one_byte(copy.rootfs / LIBPYTHON)
    with pytest.raises(ImageDigestMismatch, match=f"/{LIBPYTHON} differs in sha256"):
        verify_image(copy.rootfs, copy.digest)
    state = tmp_path / "state"
    state.mkdir()
    pin_image(state, copy)
    with pytest.raises(ImageDigestMismatch, match="build-sandbox --force"):
        ensure_image(state, cache_dir=tmp_path / "unused-cache")
    assert not (tmp_path / "unused-cache").exists()  # failed closed: no quiet rebuild


def test_a_cleared_pinned_rootfs_comes_back_only_with_the_pinned_digest(
        sandbox_image: SandboxImage, sandbox_image_cache: Path, tmp_path: Path) -> None:
    copy = copy_image(sandbox_image, tmp_path / "copy")
    state = tmp_path / "state"
    state.mkdir()
    pin_image(state, copy)
    subprocess.run(["rm", "-rf", str(copy.rootfs)], check=True)
    restored = ensure_image(state, cache_dir=sandbox_image_cache)
    assert restored.digest == copy.digest and restored.rootfs == sandbox_image.rootfs
    assert load_pinned(state) == restored  # re-pinned at the rebuilt location

    other = tmp_path / "other-state"
    other.mkdir()
    pin_image(other, SandboxImage(digest="ab" * 32, rootfs=tmp_path / "gone",
                                  size_bytes=1, inputs_key="k", built_at="x"))
    with pytest.raises(ImageDigestMismatch, match="rebuilding gave"):
        ensure_image(other, cache_dir=sandbox_image_cache)


def test_build_sandbox_reports_and_pins(sandbox_image: SandboxImage, sandbox_image_cache: Path,
                                        tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    assert main(["build-sandbox", "--cache-dir", str(sandbox_image_cache),
                 "--state-dir", str(state), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["digest"] == sandbox_image.digest and report["cached"] is True
    assert report["size_bytes"] == sandbox_image.size_bytes
    assert (state / PIN_FILE).stat().st_mode & 0o777 == 0o600
    assert load_pinned(state) == sandbox_image

    assert main(["build-sandbox", "--cache-dir", str(sandbox_image_cache),
                 "--state-dir", str(state)]) == 0
    out = capsys.readouterr().out
    assert f"sha256:{sandbox_image.digest}" in out and "cache hit" in out


@pytest.mark.slow  # a second full PyInstaller build
def test_a_forced_rebuild_reproduces_the_digest_and_replaces_a_damaged_cache(
        sandbox_image: SandboxImage, sandbox_image_cache: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    subprocess.run(["cp", "-a", str(sandbox_image_cache), str(cache)], check=True)
    damaged = cache / "sha256" / sandbox_image.digest / "rootfs"
    flip_one_byte(damaged / LIBPYTHON)
    with pytest.raises(ImageDigestMismatch, match="--force"):
        build_image(cache_dir=cache)

    rebuilt = build_image(cache_dir=cache, force=True)
    assert not rebuilt.cached
    # Same inputs, a fresh PyInstaller run in another directory: the same bytes.
    assert rebuilt.image.digest == sandbox_image.digest
    verify_image(rebuilt.image.rootfs, sandbox_image.digest)
    assert build_image(cache_dir=cache).cached
