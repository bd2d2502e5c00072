"""The image's manifest, digest, seal rules, pin and fail-closed launch check, on small
trees made here (no PyInstaller build; see tests/integration/test_sandbox_image.py)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from ironclaw.host.isolation.image import (
    PIN_FILE,
    ImageDigestMismatch,
    ImageError,
    SandboxImage,
    ensure_image,
    load_pinned,
    pin_image,
    verify_image,
    verify_image_async,
)
from ironclaw.host.isolation.manifest import (
    MANIFEST_FILE,
    Entry,
    canonical_manifest,
    manifest_digest,
    scan_rootfs,
    seal_violations,
)
from ironclaw.host.isolation.mountpoints import MOUNT_POINTS_DIRS, MOUNT_POINTS_FILES


def make_tree(root: Path) -> Path:
    """A tiny rootfs-shaped tree with a manifest.json beside it; returns the rootfs."""
    rootfs = root / "rootfs"
    (rootfs / "app" / "_internal").mkdir(parents=True)
    (rootfs / "app" / "agent").write_bytes(b"\x7fELF pretend")
    (rootfs / "app" / "_internal" / "lib.so").write_bytes(b"library bytes")
    (rootfs / "lib64").mkdir()
    (rootfs / "lib64" / "ld.so.2").symlink_to("../app/agent")
    (rootfs / "tmp").mkdir()
    os.chmod(rootfs / "tmp", 0o1777)
    os.chmod(rootfs / "app" / "agent", 0o555)
    os.chmod(rootfs / "app" / "_internal" / "lib.so", 0o444)
    write_manifest(rootfs)
    return rootfs


def write_manifest(rootfs: Path) -> str:
    manifest = canonical_manifest(scan_rootfs(rootfs))
    (rootfs.parent / MANIFEST_FILE).write_bytes(manifest)
    return manifest_digest(manifest)


def digest_of(rootfs: Path) -> str:
    return manifest_digest(canonical_manifest(scan_rootfs(rootfs)))


def test_the_digest_is_the_sha256_of_the_manifest_file(tmp_path: Path) -> None:
    rootfs = make_tree(tmp_path)
    stored = (tmp_path / MANIFEST_FILE).read_bytes()
    assert hashlib.sha256(stored).hexdigest() == digest_of(rootfs)
    paths = [record["path"] for record in json.loads(stored)["entries"]]
    assert paths == sorted(paths) and paths[0] == "/"
    assert {"path": "/lib64/ld.so.2", "type": "symlink", "mode": "0000",
            "target": "../app/agent"} in json.loads(stored)["entries"]


def test_times_and_ownership_do_not_change_the_digest(tmp_path: Path) -> None:
    rootfs = make_tree(tmp_path)
    before = digest_of(rootfs)
    for path in [rootfs, *rootfs.rglob("*")]:
        os.utime(path, (1, 1), follow_symlinks=False)
        if os.geteuid() == 0:
            os.lchown(path, 4242, 4242)
    assert digest_of(rootfs) == before


@pytest.mark.parametrize("change", ["content", "mode", "link", "added", "removed"])
def test_any_change_of_what_the_agent_runs_fails_verification_naming_the_path(
        tmp_path: Path, change: str) -> None:
    rootfs = make_tree(tmp_path)
    digest = digest_of(rootfs)
    verify_image(rootfs, digest)
    lib = rootfs / "app" / "_internal" / "lib.so"
    if change == "content":
        os.chmod(lib, 0o644)
        lib.write_bytes(b"library bytez")
        os.chmod(lib, 0o444)
        expected = "/app/_internal/lib.so differs in sha256"
    elif change == "mode":
        os.chmod(lib, 0o555)
        expected = "/app/_internal/lib.so differs in mode"
    elif change == "link":
        (rootfs / "lib64" / "ld.so.2").unlink()
        (rootfs / "lib64" / "ld.so.2").symlink_to("/evil")
        expected = "/lib64/ld.so.2 differs in target"
    elif change == "added":
        (rootfs / "app" / "sh").write_bytes(b"")
        expected = "/app/sh was added"
    else:
        lib.unlink()
        expected = "/app/_internal/lib.so is missing"
    with pytest.raises(ImageDigestMismatch, match=expected):
        verify_image(rootfs, digest)


def test_an_altered_manifest_is_not_trusted_to_explain_a_mismatch(tmp_path: Path) -> None:
    rootfs = make_tree(tmp_path)
    digest = digest_of(rootfs)
    (rootfs / "app" / "extra").write_bytes(b"x")
    write_manifest(rootfs)  # an attacker "fixing up" the manifest beside it
    with pytest.raises(ImageDigestMismatch, match="manifest was altered"):
        verify_image(rootfs, digest)
    with pytest.raises(ImageDigestMismatch, match="does not exist"):
        verify_image(tmp_path / "nowhere", digest)


async def test_verification_runs_off_the_trio_thread(tmp_path: Path) -> None:
    rootfs = make_tree(tmp_path)
    digest = digest_of(rootfs)
    await verify_image_async(rootfs, digest)
    with pytest.raises(ImageDigestMismatch):
        await verify_image_async(rootfs, "0" * 64)


def entry(path: str, kind: str = "file", mode: int = 0o444) -> Entry:
    return Entry(path, kind, mode)


@pytest.mark.parametrize(("bad", "reason"), [
    (entry("/bin/sh", mode=0o555), "shell"),
    (entry("/app/_internal/python3.11", mode=0o444), "interpreter"),
    (entry("/usr/bin/pip3", mode=0o444), "package manager"),
    (entry("/usr/bin/dpkg-deb", mode=0o444), "package manager"),
    (entry("/app/helper", mode=0o4555), "setuid"),
    (entry("/app/data", mode=0o644), "writable"),
    (entry("/workspace", "dir", 0o777), "writable"),
    (entry("/app/tool", mode=0o555), "executable but not"),
    (entry("/tmp", "dir", 0o755), "must be a directory with mode 1777"),
    (entry("/dev/null", "other", 0o666), "special file"),
])
def test_the_seal_refuses_shells_interpreters_and_anything_writable_or_executable(
        bad: Entry, reason: str) -> None:
    good = [entry("/", "dir", 0o555), entry("/tmp", "dir", 0o1777),
            entry("/app/ironclaw-agent", mode=0o555),
            entry("/app/_internal/python3.11", "dir", 0o555)]
    assert seal_violations(good, frozenset({"/app/ironclaw-agent"})) == []
    problems = seal_violations([*good, bad], frozenset({"/app/ironclaw-agent"}))
    assert any(reason in problem for problem in problems), problems


def test_the_mount_points_are_absolute_distinct_and_cover_the_contract() -> None:
    points = MOUNT_POINTS_DIRS + MOUNT_POINTS_FILES
    assert all(p.startswith("/") for p in points) and len(set(points)) == len(points)
    for needed in ("/queue/inbound", "/queue/outbound", "/run/ironclaw/sock", "/workspace",
                   "/tmp", "/proc", "/dev", "/sys", "/opt/redteam"):
        assert needed in MOUNT_POINTS_DIRS
    assert set(MOUNT_POINTS_FILES) == {"/run/ironclaw/session.key",
                                       "/run/ironclaw/agent.json"}


def pinned_tree(tmp_path: Path) -> tuple[Path, SandboxImage]:
    rootfs = make_tree(tmp_path / "image")
    image = SandboxImage(digest=digest_of(rootfs), rootfs=rootfs, size_bytes=1,
                         inputs_key="k" * 64, built_at="2026-01-01T00:00:00Z")
    state = tmp_path / "state"
    state.mkdir()
    pin_image(state, image)
    return state, image


def test_the_pin_is_private_and_reads_back(tmp_path: Path) -> None:
    state, image = pinned_tree(tmp_path)
    assert (state / PIN_FILE).stat().st_mode & 0o777 == 0o600
    assert load_pinned(state) == image
    assert load_pinned(tmp_path) is None
    for broken in ("{", json.dumps({"digest": "nothex"}), json.dumps({"rootfs": "/x"})):
        (state / PIN_FILE).write_text(broken)
        with pytest.raises(ImageError):
            load_pinned(state)


def test_a_verified_pin_is_used_without_building(tmp_path: Path) -> None:
    state, image = pinned_tree(tmp_path)
    cache = tmp_path / "cache"
    assert ensure_image(state, cache_dir=cache) == image
    assert not cache.exists()  # nothing was built or even looked up


def test_a_pinned_image_that_changed_fails_closed_and_is_not_rebuilt(tmp_path: Path) -> None:
    state, image = pinned_tree(tmp_path)
    os.chmod(image.rootfs / "app" / "agent", 0o755)
    cache = tmp_path / "cache"
    with pytest.raises(ImageDigestMismatch, match="build-sandbox --force") as caught:
        ensure_image(state, cache_dir=cache)
    assert "/app/agent differs in mode" in str(caught.value)
    assert not cache.exists()
    assert load_pinned(state) == image  # the pin is left as evidence, not replaced
