from __future__ import annotations

from pathlib import Path

import pytest

from ironclaw.cli.controlplane import main


def test_dev_self_check_round_trips_and_cleans_up(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dev", "--state-dir", str(tmp_path / "state")]) == 0
    out = capsys.readouterr().out
    assert "queue self-check" in out and "ms" in out
    assert list((tmp_path / "state" / "sessions").iterdir()) == []


def test_refuses_to_pretend_without_dev(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--state-dir", str(tmp_path)])
    assert exc.value.code == 2
