"""The red-team harness's mount grant: a mount root beside the state directory, two
directories granted from it (one read-only, one writable), and, left ungranted, a
sibling directory and a file of the root's own, each holding a marker the ``mount.``
probes (``probes.py``) must never find."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import attrs

from ironclaw.contract.enums import ChangeStatus, DecisionOutcome
from ironclaw.host.app import ControlPlaneHandles
from ironclaw.host.config.devseed import DEMO_GROUP
from ironclaw.host.gateway import Principal
from ironclaw.host.isolation import HostMount

from .probes import GRANTED_RO, GRANTED_RW, README, SECRET, SIBLING

__all__ = ["MountPlan", "approve_mounts", "plant_mount_root"]


@attrs.frozen
class MountPlan:
    """The harness's mount root and what it grants from it."""

    root: Path
    text: str  # in the granted files
    marker: str  # in the files beside them

    def grants(self) -> tuple[HostMount, ...]:
        return (HostMount(str(self.root), str(self.root / GRANTED_RO), f"/mnt/{GRANTED_RO}",
                          writable=False),
                HostMount(str(self.root), str(self.root / GRANTED_RW), f"/mnt/{GRANTED_RW}",
                          writable=True))


def plant_mount_root(root: Path, agent_uid: int) -> MountPlan:
    """Every file world-readable: only the mount set keeps the sibling out."""
    plan = MountPlan(root.resolve(), f"granted-{secrets.token_hex(16)}",
                     f"ironclaw-redteam-beside-{secrets.token_hex(16)}")
    for directory in (root, root / GRANTED_RO, root / GRANTED_RW, root / SIBLING):
        directory.mkdir(mode=0o755, parents=True, exist_ok=True)
        directory.chmod(0o755)
    os.chown(root / GRANTED_RW, agent_uid, agent_uid)
    for path, text in ((root / GRANTED_RO / README, plan.text),
                       (root / SIBLING / SECRET, plan.marker), (root / SECRET, plan.marker)):
        path.write_text(text + "\n")
        path.chmod(0o644)
    return plan


async def approve_mounts(plane: ControlPlaneHandles, plan: MountPlan,
                         owner: Principal) -> None:
    payload = [{"source": m.source, "target": m.target, "readonly": not m.writable}
               for m in plan.grants()]
    stored = await plane.gateway.submit("mounts", DEMO_GROUP, payload,
                                        requested_by=owner, reason="red team")
    decided = await plane.gateway.decide(stored.change.id, DecisionOutcome.APPROVE, owner)
    if decided.status is not ChangeStatus.APPLIED:
        raise RuntimeError(f"the mount grant was not applied: {decided.status}")
