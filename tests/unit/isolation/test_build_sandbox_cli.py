"""``ironclaw-controlplane build-sandbox`` is a subcommand beside the daemon's flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ironclaw.cli.controlplane import main


def test_build_sandbox_has_its_own_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["build-sandbox", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--state-dir", "--cache-dir", "--force", "--json"):
        assert flag in out


def test_the_daemon_flags_are_unchanged(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "--dev" in out and "--runtime" in out and "build-sandbox" in out
    with pytest.raises(SystemExit):
        main(["--force"])  # a build-sandbox flag means nothing to the daemon


def test_build_mcp_images_has_its_own_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["build-mcp-images", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--config", "--state-dir", "--cache-dir", "--force", "--json"):
        assert flag in out


def test_build_mcp_images_refuses_a_pin_the_environment_does_not_hold(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[[mcp.servers]]\nname = "time"\ncommand = "mcp-server-time"\n'
                      '[mcp.servers.image]\npython = ["mcp-server-time==0.0.1"]\n')
    code = main(["build-mcp-images", "--config", str(config), "--state-dir",
                 str(tmp_path / "state"), "--cache-dir", str(tmp_path / "cache")])
    assert code == 1
    err = capsys.readouterr().err
    assert "pins mcp-server-time==0.0.1" in err
    assert not (tmp_path / "cache").exists()


def test_build_mcp_images_with_no_server_says_so(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[mcp]\nenabled = true\n")
    code = main(["build-mcp-images", "--config", str(config), "--state-dir",
                 str(tmp_path / "state"), "--json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["servers"] == {}
