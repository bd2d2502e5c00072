"""``packages``: refused. The sandbox image is sealed: it has no package manager, and
nothing writable in it is executable, so an installed package could never run. The
kind stays in the contract so that old records still read; its grammar
(``{"apt"?: [...], "pip"?: [...], "npm"?: [...]}``) only shapes their ``before``."""

from __future__ import annotations

from ironclaw.contract.enums import ChangeKind
from ironclaw.contract.jsonvalue import JSONValue

from .. import grants as g
from ..payloads import PayloadError, expect_object, expect_strings
from .base import ChangeKindSpec, Conn, refuse_apply

MANAGERS = ("apt", "pip", "npm")
MAX_PACKAGES = 64

REFUSED = ("the sandbox image is sealed, with no package manager and nothing writable "
           "that may run; an agent gets capabilities from its compiled-in tools "
           "(enabled_tools), egress hosts (egress) and MCP servers on the host (mcp_access)")


def parse_packages(value: JSONValue) -> dict[str, tuple[str, ...]]:
    obj = expect_object(value, "packages", MANAGERS)
    if not obj:
        raise PayloadError("packages names none of apt, pip, npm")
    return {manager: expect_strings(names, f"packages.{manager}", MAX_PACKAGES)
            for manager, names in obj.items()}


def read_before(conn: Conn, group: str, after: JSONValue) -> JSONValue:
    current = g.get_grant(conn, group, g.PACKAGES) or {}
    return {manager: current.get(manager, []) for manager in parse_packages(after)}


SPEC = ChangeKindSpec(
    kind=ChangeKind.PACKAGES, parse=parse_packages, read_before=read_before,
    apply=refuse_apply, refused=REFUSED)
