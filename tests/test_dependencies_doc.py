"""docs/dependencies.md keeps one row for every package pyproject.toml declares."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _normal(name: str) -> str:
    """PEP 503: names compare case-insensitively, with runs of -_. as one dash."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_packages() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements.extend(extra)
    names = {_normal(match.group()) for r in requirements
             if (match := REQUIREMENT_NAME.match(r)) is not None}
    return names - {_normal(project["name"])}  # the dev extra names the project's own extras


def documented_packages() -> set[str]:
    """The bold names in the table's "choice" column."""
    choices = [line.split("|")[2] for line in
               (ROOT / "docs/dependencies.md").read_text().splitlines() if line.startswith("|")]
    return {_normal(name) for cell in choices for name in re.findall(r"\*\*([^*]+)\*\*", cell)}


def test_every_declared_package_is_documented_and_nothing_else() -> None:
    declared, documented = declared_packages(), documented_packages()
    assert declared - documented == set(), "declared in pyproject.toml, not in the doc"
    assert documented - declared == set(), "in the doc, not declared in pyproject.toml"


def test_directly_imported_transitive_packages_are_declared() -> None:
    """The packages the product imports by name although another dependency pulls
    them in: each is declared, so an upstream change cannot remove it silently."""
    assert {"h11", "httpcore", "wsproto", "werkzeug", "outcome", "quart", "idna"} <= (
        declared_packages())
