"""Mount roots from the config file, and the launch-time refusals of hostmounts.py
(the staging itself runs in tests/sandbox/test_granted_mounts.py, as root)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ironclaw.host.config.file import ConfigFileError, load_config_file
from ironclaw.host.gateway import GatewayConfig, MountRoot
from ironclaw.host.isolation.hostmounts import MountRefused, open_beneath, refusal


def test_the_config_file_sets_the_mount_roots(tmp_path: Path) -> None:
    config = tmp_path / "ironclaw.toml"
    config.write_text('[gateway]\ntwo_approvers = ["mounts"]\n\n[mounts]\n'
                      'roots = ["/srv/shared", {path = "/srv/scratch", writable = true}]\n')
    gateway = load_config_file(config)["gateway"]
    assert gateway.mount_roots == (MountRoot("/srv/shared"),
                                   MountRoot("/srv/scratch", writable=True))
    assert gateway.two_approvers == GatewayConfig(two_approvers=["mounts"]).two_approvers
    assert GatewayConfig().mount_roots == ()  # none unless configured


@pytest.mark.parametrize(("text", "error"), [
    ('[mounts]\nroots = "/srv"\n', "list"),
    ('[mounts]\nroots = ["/"]\n', "below /"),
    ('[mounts]\nroots = ["/srv/../etc"]\n', "canonical"),
    ('[mounts]\nroots = ["srv"]\n', "canonical"),
    ('[mounts]\nroots = [{path = "/srv", writable = "yes"}]\n', "a table"),
    ('[mounts]\nroots = [{path = "/srv", mode = "rw"}]\n', "a table"),
    ('[mounts]\nroot = ["/srv"]\n', "unknown"),
    ('mounts = ["/srv"]\n', "table"),
])
def test_a_bad_mount_root_is_a_clear_error(tmp_path: Path, text: str, error: str) -> None:
    config = tmp_path / "ironclaw.toml"
    config.write_text(text)
    with pytest.raises(ConfigFileError, match=error):
        load_config_file(config)


@pytest.mark.parametrize(("source", "root", "refused"), [
    ("/srv/data", "/srv", False),
    ("/srv", "/srv", False),
    ("/srvx/data", "/srv", True),  # outside its root
    ("/", "/", True),
    ("/run/user/0", "/run", True),
    ("/proc/self", "/proc", True),
    ("/var", "/var", True),  # a parent of the state directory
    ("/var/lib/ironclaw/workspaces", "/var", True),  # inside it
    ("/var/lib/other", "/var", False),
])
def test_a_source_is_checked_again_at_launch(source: str, root: str, refused: bool) -> None:
    problem = refusal(source, root, ("/var/lib/ironclaw",))
    assert (problem is not None) is refused, problem


def test_the_walk_follows_no_symlink(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    (tmp_path / "file").write_text("")
    with pytest.raises(MountRefused, match="symlink"):
        open_beneath(str(tmp_path / "link"))
    with pytest.raises(MountRefused):
        open_beneath(str(tmp_path / "file"))
    with pytest.raises(MountRefused, match="canonical"):
        open_beneath(str(tmp_path / "real" / ".."))
    os.close(open_beneath(str(tmp_path.resolve() / "real")))
