"""``mounts``: ``[{"source", "target"?, "readonly"?}, ...]``, the agent group's whole
set of host mounts. ``target`` is ``/mnt/<name>``, by default ``/mnt/<basename of
source>``; ``readonly`` defaults to true; sources must lie under a mount root the
operator configured (``[mounts] roots`` in the config file).

Applying replaces the group's grant and respawns its sandboxes: every launch reads the
grant afresh, so a mount dropped from the set (or a set of ``[]``) is gone from the
next sandbox. The isolation layer binds what is granted
(``ironclaw.host.isolation.hostmounts``), checking the path again at every launch
without following a symlink: the verifier below sees only today's filesystem."""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
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
    from ..config import GatewayConfig, MountRoot

MAX_MOUNTS = 16

# Never a source, nor inside one of them, nor a parent of one (the plane adds its
# state directory and image cache when it binds; hostmounts.PROTECTED_PATHS is the
# same list, which the isolation layer checks again at every launch).
PROTECTED_PATHS = ("/proc", "/sys", "/dev", "/run")


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


def root_for(source: str, roots: Sequence[MountRoot]) -> MountRoot | None:
    """The innermost configured root ``source`` lies under, or None."""
    under = [r for r in roots if source == r.path or source.startswith(r.path + "/")]
    return max(under, key=lambda r: len(r.path), default=None)


def _overlap(a: str, b: str) -> bool:
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def read_before(conn: Conn, group: str, after: JSONValue) -> JSONValue:
    parse_mounts(after)
    return g.get_grant(conn, group, g.MOUNTS) or []


class MountAllowlistVerifier(KindVerifier):
    """Sources are canonical absolute paths under a configured root, none of the
    protected places, none inside or above another; read-only unless the root allows
    writing; targets distinct, below ``/mnt/``, none inside another."""

    name = "mount-allowlist"
    kinds = frozenset({ChangeKind.MOUNTS})

    def __init__(self, context: ChangeContext, config: GatewayConfig) -> None:
        del context
        self._roots = config.mount_roots
        self._protected = (*PROTECTED_PATHS, *config.protected_paths)

    def check(self, change: ChangeRequest, after: JSONValue) -> str | None:
        mounts = parse_mounts(after)
        for index, mount in enumerate(mounts):
            problem = self._check_one(mount)
            if problem:
                return problem
            for other in mounts[index + 1:]:
                # One inside another would let a writable one swap the path to the
                # other for a symlink.
                if _overlap(mount.source, other.source):
                    return f"{other.source!r:.80} overlaps {mount.source!r:.80}"
                if mount.target == other.target:
                    return f"two mounts share the target {mount.target!r:.80}"
        return None

    def _check_one(self, mount: Mount) -> str | None:
        if not is_canonical_abs_path(mount.source):
            return f"{mount.source!r:.80} is not a canonical absolute path"
        if not self._roots:
            return "no mount roots are configured ([mounts] roots in the config file)"
        root = root_for(mount.source, self._roots)
        if root is None:
            return (f"{mount.source!r:.80} is outside every mount root "
                    f"({', '.join(r.path for r in self._roots)[:200]})")
        for place in self._protected:
            if _overlap(mount.source, place):
                return f"{mount.source!r:.80} is, holds or lies inside {place}"
        if not mount.readonly and not root.writable:
            return f"{mount.source!r:.80} may only be mounted read-only (root {root.path})"
        name = mount.target.removeprefix("/mnt/")
        if not is_canonical_abs_path(mount.target) or not mount.target.startswith("/mnt/") \
                or "/" in name:
            return f"mount target {mount.target!r:.80} is not /mnt/<name>"
        return None


def apply(job: ApplyJob) -> int:
    parse_mounts(job.after)
    g.set_grant(job.conn, job.group, g.MOUNTS, job.after, job.change.id, job.now)
    return 1


SPEC = ChangeKindSpec(
    kind=ChangeKind.MOUNTS, parse=parse_mounts, read_before=read_before, apply=apply,
    verifiers=(MountAllowlistVerifier,), respawns=True)
