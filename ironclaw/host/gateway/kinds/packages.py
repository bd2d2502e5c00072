"""``packages``: ``{"apt"?: [...], "pip"?: [...], "npm"?: [...]}``, each named list
replacing the agent group's; names are plain package names, never a URL, a path, a
version or an option."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ironclaw.contract.enums import ChangeKind
from ironclaw.contract.gateway import ChangeRequest
from ironclaw.contract.jsonvalue import JSONValue

from .. import grants as g
from ..payloads import PayloadError, expect_object, expect_strings
from .base import ApplyJob, ChangeContext, ChangeKindSpec, Conn, KindVerifier

if TYPE_CHECKING:
    from ..config import GatewayConfig

MANAGERS = ("apt", "pip", "npm")
MAX_PACKAGES = 64

PACKAGE_GRAMMARS = {
    # Debian policy: lowercase letters, digits, + - . ; at least two characters.
    "apt": re.compile(r"[a-z0-9][a-z0-9+.-]{1,62}"),
    # PEP 508 names: letters, digits, . _ - ; start and end alphanumeric.
    "pip": re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9])?"),
    # npm: optional @scope/, lowercase URL-safe characters, no leading . or _.
    "npm": re.compile(r"(?:@[a-z0-9][a-z0-9._-]{0,100}/)?[a-z0-9][a-z0-9._-]{0,100}"),
}


def parse_packages(value: JSONValue) -> dict[str, tuple[str, ...]]:
    obj = expect_object(value, "packages", MANAGERS)
    if not obj:
        raise PayloadError("packages names none of apt, pip, npm")
    return {manager: expect_strings(names, f"packages.{manager}", MAX_PACKAGES)
            for manager, names in obj.items()}


def read_before(conn: Conn, group: str, after: JSONValue) -> JSONValue:
    current = g.get_grant(conn, group, g.PACKAGES) or {}
    return {manager: current.get(manager, []) for manager in parse_packages(after)}


class PackageNameVerifier(KindVerifier):
    """Plain package names only: no shell metacharacters, URLs, paths, versions or
    option-looking names (``--index-url=...``)."""

    name = "package-names"
    kinds = frozenset({ChangeKind.PACKAGES})

    def __init__(self, context: ChangeContext, config: GatewayConfig) -> None:
        del context
        self._denied = config.package_denylist

    def check(self, change: ChangeRequest, after: JSONValue) -> str | None:
        for manager, names in parse_packages(after).items():
            for name in names:
                if not PACKAGE_GRAMMARS[manager].fullmatch(name) or ".." in name:
                    return f"{manager} package {name!r:.60} is not a plain package name"
                if f"{manager}:{name.lower()}" in self._denied:
                    return f"{manager} package {name!r:.60} is denied"
        return None


def apply(job: ApplyJob) -> int:
    wanted = parse_packages(job.after)
    current = g.get_grant(job.conn, job.group, g.PACKAGES) or {}
    merged = {**current, **{manager: list(names) for manager, names in wanted.items()}}
    g.set_grant(job.conn, job.group, g.PACKAGES, merged, job.change.id, job.now)
    return len(wanted)


SPEC = ChangeKindSpec(
    kind=ChangeKind.PACKAGES, parse=parse_packages, read_before=read_before, apply=apply,
    verifiers=(PackageNameVerifier,), auto_approvable=True, respawns=True)
