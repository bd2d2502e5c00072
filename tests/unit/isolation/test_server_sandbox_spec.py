"""An MCP server's sandbox, before any runtime: its image recipe, its argv, its spec
(the agent's validator judges it), the seal's one allowed interpreter, and the pin
that a launch re-hashes."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest

from ironclaw.host.isolation.manifest import (
    ImageDigestMismatch,
    ImageError,
    canonical_manifest,
    manifest_digest,
    scan_rootfs,
    seal_violations,
)
from ironclaw.host.isolation.rootfs import ImageBuildError
from ironclaw.host.isolation.serverimage import (
    ServerImage,
    ServerRecipe,
    build_server_image,
    verified_server_image,
)
from ironclaw.host.isolation.serverlaunch import UnknownCommand, server_argv
from ironclaw.host.isolation.serverrootfs import INTERPRETER
from ironclaw.host.isolation.serverspec import ServerBundleInputs, build_server_spec
from ironclaw.host.isolation.spec import WeakSpec, validate_spec

IMAGE = ServerImage("0" * 64, Path("/images/x/rootfs"), 1,
                    {"mcp-server-time": "mcp_server_time:main"}, ("/usr/bin/git",))


def inputs(tmp_path: Path, **overrides: object) -> ServerBundleInputs:
    fields: dict[str, object] = {
        "container_id": "ic-mcp-x", "rootfs": tmp_path / "rootfs", "args": ("/bin/x",),
        "env": ("PATH=/usr/bin",), "workdir": tmp_path / "work",
        "cgroups_path": "/ironclaw-test/ic-mcp-x"}
    fields.update(overrides)
    return ServerBundleInputs(**fields)  # type: ignore[arg-type]


def binds(spec: dict[str, object]) -> dict[str, list[str]]:
    return {m["destination"]: m["options"] for m in spec["mounts"]  # type: ignore[attr-defined]
            if m["type"] == "bind"}


def socket_families(spec: dict[str, object]) -> set[int]:
    rules = spec["linux"]["seccomp"]["syscalls"]  # type: ignore[index]
    return {rule["args"][0]["value"] for rule in rules if rule["names"] == ["socket"]}


@pytest.mark.parametrize("table", [
    {"python": []},
    {"python": ["mcp-server-time"], "pip": ["x"]},
    {"python": ["mcp server time"]},
    {"python": ["mcp-server-git"], "programs": ["/usr/bin/git"]},
    {"python": "mcp-server-time"},
    {"python": ["mcp-server-time>=1"]},
    {"distributions": ["mcp-server-time"]},
], ids=["none", "unknown-key", "bad-name", "program-path", "not-a-list", "range",
        "old-key"])
def test_a_malformed_image_recipe_is_refused(table: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ServerRecipe.from_table("time", table)


def test_a_recipe_pins_versions_that_the_build_must_find_installed() -> None:
    recipe = ServerRecipe.from_table("time", {"python": ["mcp-server-time==0.0.1",
                                                         "tzdata"]})
    assert recipe.distributions == ("mcp-server-time", "tzdata")
    assert recipe.pins == {"mcp-server-time": "0.0.1"}
    with pytest.raises(ImageBuildError, match=re.escape("pins mcp-server-time==0.0.1")):
        build_server_image(recipe, cache_dir=Path("/nonexistent-never-made"))


def test_the_argv_runs_a_console_script_or_a_program_of_the_image_and_nothing_else() -> None:
    argv = server_argv(IMAGE, "mcp-server-time", ("--x",), egress_socket_name=None)
    assert argv[:4] == (INTERPRETER, "-I", "-B", "/opt/ironclaw/boot.py")
    assert argv[4:] == ("--entry", "mcp_server_time:main", "--", "mcp-server-time", "--x")
    relayed = server_argv(IMAGE, "git", (), egress_socket_name="proxy.sock")
    assert relayed[4:8] == ("--relay", "3128=/run/ironclaw/egress/proxy.sock", "--exec",
                            "/usr/bin/git")
    with pytest.raises(UnknownCommand):
        server_argv(IMAGE, "sh", (), egress_socket_name=None)


def test_a_server_spec_binds_only_its_own_places_and_the_session_workspace_read_only(
        tmp_path: Path) -> None:
    spec = build_server_spec(inputs(tmp_path, session_workspace=tmp_path / "ws"))
    mounted = binds(spec)
    assert set(mounted) == {"/work", "/workspace"}
    assert "rw" in mounted["/work"] and "ro" in mounted["/workspace"]
    assert all({"nosuid", "nodev", "noexec"} <= set(o) for o in mounted.values())
    assert spec["process"]["user"] == {"uid": 65532, "gid": 65532}
    assert {"type": "network"} in spec["linux"]["namespaces"]
    assert socket_families(spec) == {socket.AF_UNIX}


def test_only_a_server_with_egress_may_open_loopback_ipv4(tmp_path: Path) -> None:
    egress = inputs(tmp_path, egress_dir=tmp_path / "egress")
    spec = build_server_spec(egress)
    assert socket_families(spec) == {socket.AF_UNIX, socket.AF_INET}
    assert "ro" in binds(spec)["/run/ironclaw/egress"]
    plain = inputs(tmp_path)
    with pytest.raises(WeakSpec, match="socket"):
        validate_spec(spec | {"mounts": build_server_spec(plain)["mounts"]}, plain)


def test_the_validator_refuses_a_weakened_server_spec(tmp_path: Path) -> None:
    server = inputs(tmp_path, session_workspace=tmp_path / "ws")
    spec = build_server_spec(server)
    for mount in spec["mounts"]:
        if mount["destination"] == "/workspace":
            mount["options"] = [o for o in mount["options"] if o != "ro"] + ["rw"]
    spec["mounts"].append({"destination": "/host", "type": "bind", "source": "/",
                           "options": ["rbind", "nosuid", "nodev", "noexec", "ro"]})
    with pytest.raises(WeakSpec) as refused:
        validate_spec(spec, server)
    assert "/workspace must be read-only" in refused.value.problems
    assert any("/host" in problem for problem in refused.value.problems)


def test_the_seal_allows_the_one_declared_interpreter_and_no_other(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "usr" / "bin").mkdir(parents=True)
    for name in ("python3", "perl"):
        (root / "usr" / "bin" / name).write_bytes(b"\x7fELF")
        (root / "usr" / "bin" / name).chmod(0o555)
    for path in (root / "usr" / "bin", root / "usr", root):
        path.chmod(0o555)
    entries = scan_rootfs(root)
    executables = frozenset({INTERPRETER, "/usr/bin/perl"})
    problems = seal_violations(entries, executables, interpreter=INTERPRETER)
    assert problems == ["/usr/bin/perl: a shell, interpreter or package manager"]
    assert len(seal_violations(entries, executables)) == 2


def test_a_launch_re_hashes_the_pinned_image_and_fails_closed(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with pytest.raises(ImageError, match="no image is pinned"):
        verified_server_image(state, "time")
    root = tmp_path / "rootfs"
    root.mkdir()
    (root / "server.py").write_text("print('hello')\n")
    digest = manifest_digest(canonical_manifest(scan_rootfs(root)))
    pin = state / "mcp-images" / "time.json"
    pin.parent.mkdir(parents=True)
    image = ServerImage(digest, root, 14, {"mcp-server-time": "m:main"}, ())
    pin.write_text(json.dumps(image.record()))
    assert verified_server_image(state, "time") == image
    (root / "server.py").write_text("print('changed')\n")
    with pytest.raises(ImageDigestMismatch, match="time"):
        verified_server_image(state, "time")
