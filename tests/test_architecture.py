"""The house rules of docs/design.md ("The house"), held by import-linter."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"][
        "contracts"]
    assert f"Contracts: {len(contracts)} kept, 0 broken" in result.stdout


def test_contract_imports_no_other_ironclaw_module() -> None:
    """Belt and braces for the frozen seam: importing it loads nothing else."""
    code = ("import sys, ironclaw.contract.queue, ironclaw.contract.actions, "
            "ironclaw.contract.gateway; "
            "print(sorted(m for m in sys.modules if m.startswith(('ironclaw.', 'sandbox_agent'))"
            " and not m.startswith('ironclaw.contract')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout.strip()
    assert out == "[]"


def test_contract_is_mypy_strict_clean() -> None:
    mypy = Path(sys.executable).with_name("mypy")
    result = subprocess.run([str(mypy), "--strict", "ironclaw/contract"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_is_clean() -> None:
    ruff = Path(sys.executable).with_name("ruff")
    result = subprocess.run([str(ruff), "check", "ironclaw", "sandbox_agent", "bench", "tests"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
