"""Proving a sandbox's processes gone: found by program name and arguments, killed
scan after scan until none is left, and nothing else touched."""

from __future__ import annotations

import subprocess
import sys
import time
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
    _until_settled(child.pid)
    return child.pid


def _until_settled(pid: int) -> None:
    """Until the shell's forked child has become ``sleep``. Before its exec that child
    is a copy of the shell, arguments and all, and a hunt would rightly count it ours."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if children and all(Path(f"/proc/{c}/comm").read_text().strip() == "sleep"
                            for c in children):
            return
        time.sleep(0.005)
    raise AssertionError(f"shell {pid} never started its sleep")


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


def _cgroup(root: Path, *parts: str, procs: list[int]) -> None:
    """A cgroup directory in a hierarchy laid out like ``/sys/fs/cgroup``'s (a tree of
    directories, each with its ``cgroup.procs``)."""
    directory = root.joinpath(*parts)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cgroup.procs").write_text("".join(f"{pid}\n" for pid in procs))


def test_cgroups_made_after_the_hunt_began_are_searched(
        tmp_path: Path, spawned: list[subprocess.Popen[bytes]]) -> None:
    """A ``run`` caught mid-launch creates its container's cgroups while reconcile
    hunts: a process that names nothing of ours (the agent after its ``execve``) is
    found through a cgroup that did not exist when the hunt was set up."""
    cgroups = tmp_path / "cgroup"
    (cgroups / "memory").mkdir(parents=True)
    agent = _sh(spawned, "sleep 60; :")
    other = _sh(spawned, "sleep 60; :")
    hunt = SandboxProcesses(runtime_programs([]), tmp_path / "runtime",
                            cgroup_parent="ironclaw-0123", cgroup_root=cgroups)
    assert agent not in hunt.find()
    _cgroup(cgroups, "memory", "ironclaw-0123", "ic-ses_0123", procs=[agent])
    _cgroup(cgroups, "memory", "ironclaw-9999", "ic-ses_0123", procs=[other])
    assert hunt.find() == [agent]
    assert hunt.kill_all() == 1
    assert next(c for c in spawned if c.pid == agent).wait(timeout=10) == -9
    assert next(c for c in spawned if c.pid == other).poll() is None


def test_a_launch_hunt_searches_only_its_own_containers_cgroup(
        tmp_path: Path, spawned: list[subprocess.Popen[bytes]]) -> None:
    cgroups = tmp_path / "cgroup"
    mine = _sh(spawned, "sleep 60; :")
    sibling = _sh(spawned, "sleep 60; :")
    _cgroup(cgroups, "pids", "ironclaw-0123", "ic-ses_0123", procs=[mine])
    _cgroup(cgroups, "pids", "ironclaw-0123", "ic-ses_4567", procs=[sibling])
    hunt = SandboxProcesses(runtime_programs([]), tmp_path / "runtime" / "ic-ses_0123",
                            cgroup_parent="ironclaw-0123", container="ic-ses_0123",
                            cgroup_root=cgroups)
    assert hunt.find() == [mine]
    whole = SandboxProcesses(runtime_programs([]), tmp_path / "runtime",
                             cgroup_parent="ironclaw-0123", cgroup_root=cgroups)
    assert whole.find() == sorted([mine, sibling])

