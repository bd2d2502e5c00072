"""``ironclaw-controlplane build-sandbox`` is a subcommand beside the daemon's flags."""

from __future__ import annotations

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
