"""Reading the current state a change would alter: its ``before``, and what the
verifiers need to know about the registry.

``before`` mirrors the shape of ``after``: the current value of exactly the parts the
change names, so the structural diff is the change. Each kind reads its own (its
module in ``kinds/``). Both are read in one call on the store's thread, so they
describe one moment. A payload that does not parse gets ``{}``; the shape verifier
rejects it anyway.
"""

from __future__ import annotations

from ironclaw.contract.enums import ChangeKind
from ironclaw.contract.jsonvalue import JSONValue
from ironclaw.host.registry import NotFound

from .kinds import ChangeContext, ChangeKinds
from .kinds.base import Conn
from .payloads import PayloadError


def read_before(conn: Conn, kinds: ChangeKinds, kind: ChangeKind, agent_group: str,
                after: JSONValue) -> JSONValue:
    try:
        return kinds[kind].read_before(conn, agent_group, after)
    except (PayloadError, NotFound):
        return {}


def read_context(conn: Conn, kinds: ChangeKinds, kind: ChangeKind, agent_group: str,
                 after: JSONValue) -> ChangeContext:
    groups = conn.execute("SELECT id, name, folder FROM agent_groups").fetchall()
    return ChangeContext(
        group_exists=any(group_id == agent_group for group_id, _, _ in groups),
        group_ids=frozenset(group_id for group_id, _, _ in groups),
        group_names=frozenset(name.casefold() for _, name, _ in groups),
        group_folders=frozenset(folder for _, _, folder in groups),
        facts=kinds[kind].read_facts(conn, agent_group, after))


def snapshot(conn: Conn, kinds: ChangeKinds, kind: ChangeKind, agent_group: str,
             after: JSONValue) -> tuple[JSONValue, ChangeContext]:
    """``before`` and the verifiers' context, read together on the store's thread."""
    return (read_before(conn, kinds, kind, agent_group, after),
            read_context(conn, kinds, kind, agent_group, after))
