"""deploy/systemd: the unit passes ``systemd-analyze verify``, its ``systemd-analyze
security`` score is the one docs/deploy.md quotes, and every hardening setting the unit
keeps or leaves out is explained there."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "ironclaw-controlplane.service"
DOC = ROOT / "docs" / "deploy.md"
INSTALLED_AT = "/opt/ironclaw/venv/bin/ironclaw-controlplane"
HARDENING = re.compile(r"^(Protect\w+|Private\w+|Restrict\w+|NoNewPrivileges|"
                       r"CapabilityBoundingSet|AmbientCapabilities|SystemCall\w+|"
                       r"LockPersonality|MemoryDenyWriteExecute|UMask|ReadWritePaths|"
                       r"IPAddress\w+|ProcSubset|KillMode|User)\b")

needs_systemd = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze is not installed")


def _unit_here(tmp_path: Path) -> Path:
    """The unit with ExecStart at this checkout's daemon: verify wants it to exist."""
    daemon = Path(sys.executable).with_name("ironclaw-controlplane")
    if not daemon.exists():
        daemon = tmp_path / "ironclaw-controlplane"
        daemon.write_text(f"#!{sys.executable}\nfrom ironclaw.cli.controlplane import main\n"
                          "main()\n")
        daemon.chmod(0o755)
    unit = tmp_path / UNIT.name
    text = UNIT.read_text()
    assert INSTALLED_AT in text
    unit.write_text(text.replace(INSTALLED_AT, str(daemon)))
    return unit


@needs_systemd
def test_the_unit_verifies(tmp_path: Path) -> None:
    result = subprocess.run(["systemd-analyze", "verify", str(_unit_here(tmp_path))],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr == "", result.stderr


@needs_systemd
def test_the_doc_quotes_the_security_score(tmp_path: Path) -> None:
    result = subprocess.run(["systemd-analyze", "security", "--offline=true",
                             str(_unit_here(tmp_path))], capture_output=True, text=True,
                            timeout=60)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d) (\w+)", result.stdout)
    assert found, result.stdout[-500:] + result.stderr
    score = f"{found.group(1)} {found.group(2)}"
    assert f"`systemd-analyze security`: **{score}**" in DOC.read_text(), score


def test_every_hardening_setting_is_explained() -> None:
    names = set()
    for line in UNIT.read_text().splitlines():
        match = HARDENING.match(line)
        if match:
            names.add(match.group(1))
        if line.startswith("# ") and ":" in line and "Left out" not in line:
            # "# PrivateDevices: why" and "# A, B, C: why" name what is left out.
            head = line[2:].split(":", 1)[0]
            for word in re.findall(r"[A-Z]\w+", head):
                named = HARDENING.match(word)
                if named:
                    names.add(named.group(1))
    doc = DOC.read_text()
    assert {"PrivateDevices", "ProtectControlGroups", "RestrictNamespaces"} <= names
    missing = sorted(name for name in names if f"`{name}" not in doc)
    assert not missing, f"docs/deploy.md does not explain {missing}"
