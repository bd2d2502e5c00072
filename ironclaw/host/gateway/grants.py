"""Where approved capabilities live, and the small SQL the gateway adds to the registry's.

``agent_grants`` (host.db migration 3) holds, per agent group, the approved state of
what the registry has no column for, as canonical JSON exactly as approved:

* ``egress_hosts``: ``["api.example.com", "*.example.org", ...]``, the group's egress
  allowlist (deny-by-default: no row, no egress). A later egress change replaces the
  list, so an empty list revokes everything.
* ``mounts``: ``[{"source", "target"?, "readonly"?}, ...]``; interpret it with
  :func:`~ironclaw.host.gateway.kinds.mounts.parse_mounts` (it fills the defaults). A
  layer that binds it must still resolve symlinks at mount time and refuse anything
  that leaves the approved root: a verifier cannot see the filesystem of tomorrow.
* ``packages``: ``{"apt": [...], "pip": [...], "npm": [...]}``.
* ``mcp_access``: ``{"servers": {server: [tool, ...] | "*"}}``.

The gateway refuses ``mounts`` and ``packages`` changes while nothing
enforces them (``kinds/``), so no row of those kinds is written; their readers below
answer "nothing granted". Only the gateway's applier writes these rows; :class:`Grants`
is the read side for the layers that enforce them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ironclaw.contract.jsonvalue import JSONValue, canonical_json, parse_json
from ironclaw.host.registry import Wiring
from ironclaw.host.registry import queries as q
from ironclaw.host.store import HostStore

if TYPE_CHECKING:
    from .kinds.mounts import Mount


Conn = Any

EGRESS_HOSTS = "egress_hosts"
MOUNTS = "mounts"
PACKAGES = "packages"
MCP_ACCESS = "mcp_access"
GRANT_KINDS = (EGRESS_HOSTS, MOUNTS, PACKAGES, MCP_ACCESS)

_MAX_GRANT_BYTES = 1024 * 1024


def get_grant(conn: Conn, agent_group_id: str, kind: str) -> JSONValue | None:
    row = conn.execute("SELECT value FROM agent_grants WHERE agent_group_id = ? AND kind = ?",
                       (agent_group_id, kind)).fetchone()
    return None if row is None else parse_json(row[0], max_bytes=_MAX_GRANT_BYTES)


def set_grant(conn: Conn, agent_group_id: str, kind: str, value: JSONValue, change_id: str,
              now: int) -> None:
    if kind not in GRANT_KINDS:
        raise ValueError(f"unknown grant kind {kind!r}")
    q.get_agent_group(conn, agent_group_id)  # NotFound for a group that does not exist
    conn.execute(
        "INSERT INTO agent_grants (agent_group_id, kind, value, change_id, updated_at) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (agent_group_id, kind) DO UPDATE SET "
        "value = excluded.value, change_id = excluded.change_id, "
        "updated_at = excluded.updated_at",
        (agent_group_id, kind, canonical_json(value), change_id, now))


def is_member(conn: Conn, user_id: str, agent_group_id: str) -> bool:
    return conn.execute("SELECT 1 FROM members WHERE user_id = ? AND agent_group_id = ?",
                        (user_id, agent_group_id)).fetchone() is not None


def access_request(conn: Conn, request_id: str) -> tuple[str, str, str] | None:
    """``(status, user_id, messaging_group_id)`` of an access request, or None."""
    row = conn.execute("SELECT status, user_id, messaging_group_id FROM access_requests "
                       "WHERE id = ?", (request_id,)).fetchone()
    return None if row is None else (row[0], row[1], row[2])


def settle_access_request(conn: Conn, request_id: str, *, granted: bool, decided_by: str,
                          now: int) -> bool:
    """Close a pending access request. Membership is the applier's business (it grants
    exactly the groups the approver saw), so this only records the outcome."""
    return bool(conn.execute(
        "UPDATE access_requests SET status = ?, decided_by = ?, decided_at = ? "
        "WHERE id = ? AND status = 'pending'",
        ("granted" if granted else "denied", decided_by, now, request_id)).rowcount)


def group_wirings(conn: Conn, agent_group_id: str) -> list[Wiring]:
    groups = [mg for (mg,) in conn.execute(
        "SELECT DISTINCT messaging_group_id FROM wirings WHERE agent_group_id = ? "
        "ORDER BY messaging_group_id", (agent_group_id,))]
    return [w for mg in groups for w in q.wirings_for(conn, mg)
            if w.agent_group_id == agent_group_id]


def wiring_owner(conn: Conn, wiring_id: str) -> str | None:
    row = conn.execute("SELECT agent_group_id FROM wirings WHERE id = ?",
                       (wiring_id,)).fetchone()
    return None if row is None else str(row[0])


def messaging_group_exists(conn: Conn, group_id: str) -> bool:
    return conn.execute("SELECT 1 FROM messaging_groups WHERE id = ?",
                        (group_id,)).fetchone() is not None


def wired_agent_groups(conn: Conn, messaging_group_id: str) -> list[str]:
    return [g for (g,) in conn.execute(
        "SELECT DISTINCT agent_group_id FROM wirings WHERE messaging_group_id = ? "
        "ORDER BY agent_group_id", (messaging_group_id,))]


def count_pending(conn: Conn, requested_by: str) -> int:
    row = conn.execute("SELECT count(*) FROM changes WHERE requested_by = ? AND "
                       "status = 'pending'", (requested_by,)).fetchone()
    return int(row[0])


# Pending access requests other than ``request_id`` itself (already stored, pending,
# by the router before it asks the gateway), sharing its sender, chat or channel.

def pending_access_by_sender(conn: Conn, request_id: str) -> int:
    return int(conn.execute(
        "SELECT count(*) FROM access_requests a, access_requests r WHERE r.id = ? "
        "AND a.status = 'pending' AND a.id != r.id AND a.user_id = r.user_id",
        (request_id,)).fetchone()[0])


def pending_access_in_chat(conn: Conn, request_id: str) -> int:
    return int(conn.execute(
        "SELECT count(*) FROM access_requests a, access_requests r WHERE r.id = ? "
        "AND a.status = 'pending' AND a.id != r.id "
        "AND a.messaging_group_id = r.messaging_group_id", (request_id,)).fetchone()[0])


def pending_access_on_channel(conn: Conn, request_id: str) -> int:
    return int(conn.execute(
        "SELECT count(*) FROM access_requests a "
        "JOIN messaging_groups ma ON ma.id = a.messaging_group_id, "
        "access_requests r JOIN messaging_groups mr ON mr.id = r.messaging_group_id "
        "WHERE r.id = ? AND a.status = 'pending' AND a.id != r.id "
        "AND ma.channel = mr.channel AND ma.instance = mr.instance",
        (request_id,)).fetchone()[0])


class Grants:
    """Read-only view of approved capabilities for the layers that enforce them."""

    def __init__(self, store: HostStore) -> None:
        self._store = store

    async def egress_hosts(self, agent_group_id: str) -> tuple[str, ...]:
        value = await self._store.call(get_grant, agent_group_id, EGRESS_HOSTS)
        return tuple(value or ())

    async def mounts(self, agent_group_id: str) -> tuple[Mount, ...]:
        # Imported here: the mounts kind writes its grant through this module.
        from .kinds.mounts import parse_mounts

        value = await self._store.call(get_grant, agent_group_id, MOUNTS)
        return parse_mounts(value or [])

    async def packages(self, agent_group_id: str) -> dict[str, tuple[str, ...]]:
        value = await self._store.call(get_grant, agent_group_id, PACKAGES) or {}
        return {manager: tuple(names) for manager, names in value.items()}

    async def mcp_access(self, agent_group_id: str) -> dict[str, tuple[str, ...] | None]:
        """Server -> its tool allowlist (None: every tool the catalogue offers)."""
        # Imported here: the mcp_access kind writes its grant through this module.
        from .kinds.mcp_access import parse_mcp_access

        value = await self._store.call(get_grant, agent_group_id, MCP_ACCESS)
        return parse_mcp_access(value or {"servers": {}})
