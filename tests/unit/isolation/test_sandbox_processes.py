"""Proving a sandbox's processes gone: found by program name and arguments, killed
scan after scan until none is left, and nothing else touched."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ironclaw.host.isolation.processes import SandboxProcesses, runtime_programs


@pytest.fixture
def spawned() -> Iterator[list[subprocess.Popen[bytes]]]:
    children: list[subprocess.Popen[bytes]] = []
    yield children
    for child in children:
        child.kill()
        child.wait()


def _sh(spawned: list[subprocess.Popen[bytes]], script: str, *args: str) -> int:
    """A shell (a program crun's wrapper runs as) with ``args`` on its command line.
    Two commands, so no shell replaces itself with the last one."""
    child = subprocess.Popen(["sh", "-c", script, "sh", *args])
    spawned.append(child)
    return child.pid


def test_runtime_processes_naming_the_tree_are_found_and_killed(
        tmp_path: Path, spawned: list[subprocess.Popen[bytes]]) -> None:
    runtime = tmp_path / "state" / "runtime"
    ours = _sh(spawned, "sleep 60; :", f"--root={runtime}/runsc")
    bundle = _sh(spawned, "sleep 60; :", str(runtime / "bundles" / "ic-ses_0123"))
    # Not ours: another state directory whose name merely starts like ours, and a
    # program that is no runtime naming our tree.
    sibling = _sh(spawned, "sleep 60; :", f"{runtime}2/runsc")
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                                 str(runtime / "bundles")])
    spawned.append(stranger)
    hunt = SandboxProcesses(runtime_programs(["/usr/bin/runsc"]), runtime)
    assert set(hunt.find()) == {ours, bundle}
    assert hunt.kill_all() == 2
    assert hunt.find() == []
    for child in spawned:
        if child.pid in (ours, bundle):
            assert child.wait(timeout=10) == -9
    assert [c.pid for c in spawned if c.poll() is None] == [sibling, stranger.pid]


def test_one_container_is_told_from_another_by_its_exact_bundle(
        tmp_path: Path, spawned: list[subprocess.Popen[bytes]]) -> None:
    bundles = tmp_path / "runtime" / "bundles"
    short = _sh(spawned, "sleep 60; :", "--bundle", str(bundles / "ic-ses_0123"))
    longer = _sh(spawned, "sleep 60; :", "--bundle", str(bundles / "ic-ses_01234"))
    hunt = SandboxProcesses(runtime_programs([]), bundles / "ic-ses_0123")
    assert hunt.find() == [short]
    assert longer in SandboxProcesses(runtime_programs([]), bundles / "ic-ses_01234").find()
