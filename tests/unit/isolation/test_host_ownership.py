"""Handing paths to the sandbox uid cannot be redirected outside them.

A live sibling sandbox shares the workspace the isolator re-owns before each launch,
and may swap a directory for a symlink at any moment; the key file lives where a
planted link would send a path-based chown anywhere. Both go through descriptors.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from ironclaw.host.isolation.oci import UnsafeKeyFile, _give_key_file, _give_tree

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="changing owners needs root")

SANDBOX_UID = 265532
NAMES = [f"f{i}" for i in range(40)]


def _tree(root: Path) -> None:
    (root / "sub" / "deeper").mkdir(parents=True)
    for name in NAMES:
        (root / "sub" / name).write_text("x")
        (root / "sub" / "deeper" / name).write_text("x")


def _swap_forever(sub: Path, outside: Path, stop: threading.Event,
                  quiet: threading.Lock) -> int:
    """Swap ``sub`` for a symlink to ``outside`` and back, as fast as we can; the
    tree is whole whenever ``quiet`` is free."""
    real = sub.with_name("sub.real")
    swaps = 0
    while not stop.is_set():
        with quiet:
            os.rename(sub, real)
            os.symlink(outside, sub)
            os.unlink(sub)
            os.rename(real, sub)
        swaps += 1
    return swaps


def _owners(root: Path) -> set[int]:
    return {os.lstat(os.path.join(dirpath, name)).st_uid
            for dirpath, dirnames, filenames in os.walk(root)
            for name in (".", *dirnames, *filenames)}


def test_a_racing_swapper_never_redirects_give_tree_outside(tmp_path: Path) -> None:
    root, outside = tmp_path / "workspace", tmp_path / "outside"
    root.mkdir()
    _tree(root)
    # The same names outside, so a chown sent through the symlink would land on them.
    outside.mkdir()
    (outside / "deeper").mkdir()
    for name in NAMES:
        (outside / name).write_text("host")
        (outside / "deeper" / name).write_text("host")
    stop, quiet = threading.Event(), threading.Lock()
    swaps: list[int] = []
    swapper = threading.Thread(
        target=lambda: swaps.append(_swap_forever(root / "sub", outside, stop, quiet)))
    swapper.start()
    try:
        for _ in range(150):
            _give_tree(root, SANDBOX_UID)
            with quiet:
                assert _owners(outside) == {0}
                # Give the tree back to root so every round has work to do.
                for dirpath, dirnames, filenames in os.walk(root):
                    for name in (".", *dirnames, *filenames):
                        os.lchown(os.path.join(dirpath, name), 0, 0)
    finally:
        stop.set()
        swapper.join()
    assert swaps and swaps[0] > 100  # the race really ran


def test_give_tree_reowns_everything_inside_and_changes_links_themselves(
        tmp_path: Path) -> None:
    root, target = tmp_path / "workspace", tmp_path / "target"
    root.mkdir()
    _tree(root)
    target.write_text("host")
    (root / "sub" / "link").symlink_to(target)
    _give_tree(root, SANDBOX_UID)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (".", *dirnames, *filenames):
            info = os.lstat(os.path.join(dirpath, name))
            assert (info.st_uid, info.st_gid) == (SANDBOX_UID, SANDBOX_UID), name
    assert os.stat(target).st_uid == 0  # the link was changed, not what it names


def test_give_tree_refuses_a_root_that_is_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "workspace").symlink_to(real)
    with pytest.raises(OSError):
        _give_tree(tmp_path / "workspace", SANDBOX_UID)
    assert os.stat(real).st_uid == 0


def test_the_key_file_is_given_through_its_descriptor(tmp_path: Path) -> None:
    key = tmp_path / "session.key"
    key.write_text("inbound=00\n")
    key.chmod(0o600)
    _give_key_file(key, SANDBOX_UID)
    info = os.stat(key)
    assert (info.st_uid, info.st_mode & 0o777) == (SANDBOX_UID, 0o400)


def test_a_key_file_replaced_by_a_symlink_or_a_link_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "shadow"
    victim.write_text("host secret")
    victim.chmod(0o640)
    planted = tmp_path / "session.key"
    planted.symlink_to(victim)
    with pytest.raises(OSError):
        _give_key_file(planted, SANDBOX_UID)
    planted.unlink()
    os.link(victim, planted)
    with pytest.raises(UnsafeKeyFile):
        _give_key_file(planted, SANDBOX_UID)
    info = os.stat(victim)
    assert (info.st_uid, info.st_mode & 0o777) == (0, 0o640)
