"""Applying an approved change: idempotent and transactional, keyed by change id.

:func:`apply_change` runs inside ``HostStore.transaction``: the registry mutation and
``mark_applied`` commit together or not at all, so a crash leaves either both or
neither, and re-applying an applied change is a no-op. Each kind's applier (its module
in ``kinds/``) parses ``after`` with the same grammar the shape verifier checked, and
mutates nothing but what the change names, for the change's own agent group (never one
named in the payload).
"""

from __future__ import annotations

import attrs

from ironclaw.contract.enums import ChangeStatus
from ironclaw.contract.gateway import MAX_CHANGE_BYTES
from ironclaw.contract.jsonvalue import parse_json
from ironclaw.host.store.changes import (
    ChangeConflict,
    StoredChange,
    _get,
    _mark_applied,
)

from .config import GatewayConfig
from .kinds import ApplyError as ApplyError
from .kinds import ApplyJob
from .kinds.base import Conn

# The step that records the apply. A module-level name, so a test can make it fail
# after the registry write and prove the rollback.
mark_applied = _mark_applied


@attrs.frozen
class Applied:
    stored: StoredChange
    effects: int  # records written
    already: bool  # it had been applied before: nothing was done


def apply_change(conn: Conn, change_id: str, now: int, config: GatewayConfig) -> Applied:
    current = _get(conn, change_id)
    if current.status is ChangeStatus.APPLIED:
        return Applied(current, 0, True)
    if current.status is not ChangeStatus.APPROVED:
        raise ChangeConflict(f"{change_id} is {current.status}, not approved")
    change = current.change
    decided_by = current.decision.decided_by if current.decision else "unknown"
    after = parse_json(change.after, max_bytes=MAX_CHANGE_BYTES)
    job = ApplyJob(conn, change, after, now, config, decided_by)
    effects = config.kinds[change.kind].apply(job)
    return Applied(mark_applied(conn, change_id, now), effects, False)
