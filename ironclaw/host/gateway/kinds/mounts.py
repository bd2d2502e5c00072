"""``mounts``: ``[{"source", "target"?, "readonly"?}, ...]``, the agent group's whole
set of host mounts. ``target`` defaults to ``/mnt/<basename of source>``, ``readonly``
to true; sources must lie under a configured mount root.

Refused while no sandbox launch binds the grant: a human must never approve something
that has no effect. The grammar, verifier and applier below are what the grant is once
the isolation layer binds it."""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING

import attrs

from ironclaw.contract.enums import ChangeKind
from ironclaw.contract.gateway import ChangeRequest
from ironclaw.contract.jsonvalue import JSONValue

from .. import grants as g
from ..payloads import (
    expect_bool,
    expect_list,
    expect_object,
    expect_text,
    is_canonical_abs_path,
)
from .base import ApplyJob, ChangeContext, ChangeKindSpec, Conn, KindVerifier

if TYPE_CHECKING:
    from ..config import GatewayConfig

MAX_MOUNTS = 16

REFUSED = "sandboxes are not started with host mounts, so a mount grant would have no effect"


@attrs.frozen
class Mount:
    source: str
    target: str
    readonly: bool


def parse_mounts(value: JSONValue) -> tuple[Mount, ...]:
    mounts = []
    for item in expect_list(value, "mounts", MAX_MOUNTS):
        obj = expect_object(item, "mount", ("source", "target", "readonly"), ("source",))
        source = expect_text(obj["source"], "mount source", 4096)
        target = (expect_text(obj["target"], "mount target", 4096) if "target" in obj
                  else "/mnt/" + posixpath.basename(source))
        mounts.append(Mount(source, target,
                            expect_bool(obj.get("readonly", True), "readonly")))
    return tuple(mounts)


def read_before(conn: Conn, group: str, after: JSONValue) -> JSONValue:
    parse_mounts(after)
    return g.get_grant(conn, group, g.MOUNTS) or []


class MountAllowlistVerifier(KindVerifier):
    """Sources are canonical absolute paths under a configured root; read-only unless
    the root allows writing; targets under ``/mnt/``."""

    name = "mount-allowlist"
    kinds = frozenset({ChangeKind.MOUNTS})

    def __init__(self, context: ChangeContext, config: GatewayConfig) -> None:
        del context
        self._roots = config.mount_roots

    def check(self, change: ChangeRequest, after: JSONValue) -> str | None:
        targets = set()
        for mount in parse_mounts(after):
            if not is_canonical_abs_path(mount.source):
                return f"{mount.source!r:.80} is not a canonical absolute path"
            root = next((r for r in self._roots if mount.source == r.path
                         or mount.source.startswith(r.path + "/")), None)
            if root is None:
                return f"{mount.source!r:.80} is outside every allowed mount root"
            if not mount.readonly and not root.writable:
                return f"{mount.source!r:.80} may only be mounted read-only"
            if not is_canonical_abs_path(mount.target) or not mount.target.startswith("/mnt/"):
                return f"mount target {mount.target!r:.80} is not a path under /mnt/"
            if mount.target in targets:
                return f"two mounts share the target {mount.target!r:.80}"
            targets.add(mount.target)
        return None


def apply(job: ApplyJob) -> int:
    parse_mounts(job.after)
    g.set_grant(job.conn, job.group, g.MOUNTS, job.after, job.change.id, job.now)
    return 1


SPEC = ChangeKindSpec(
    kind=ChangeKind.MOUNTS, parse=parse_mounts, read_before=read_before, apply=apply,
    verifiers=(MountAllowlistVerifier,), respawns=True, refused=REFUSED)
