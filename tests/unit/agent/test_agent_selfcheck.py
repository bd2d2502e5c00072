"""``--self-check``: the probe the image build and its tests run in the frozen agent."""

from __future__ import annotations

import json

import pytest

from sandbox_agent.__main__ import main


def test_self_check_reports_versions_and_a_working_sqlcipher(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--self-check"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["frozen"] is False  # the frozen run is tested against the image
    assert report["sqlcipher"].startswith("4.")
    assert {"python", "trio", "httpx", "attrs", "sqlite", "ironclaw"} <= report.keys()
