"""host.db beyond the registry: the change store, delivery receipts, and its key."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from ironclaw.contract.enums import ChangeKind, ChangeStatus, DecisionOutcome
from ironclaw.contract.gateway import ChangeRequest, Decision
from ironclaw.contract.ids import new_change_id
from ironclaw.host.keys import FileMasterKeySource, KeyStore, Purpose
from ironclaw.host.registry import AgentGroup, Registry
from ironclaw.host.store import StoreError, open_host_store
from ironclaw.host.store.changes import ChangeConflict, ChangeNotFound, ChangeStore

KEY = secrets.token_bytes(32)


def change(kind: ChangeKind = ChangeKind.ENABLED_TOOLS) -> ChangeRequest:
    return ChangeRequest.of(id=new_change_id(), kind=kind, agent_group="demo",
                            requested_by="local:alice", before={"tools": []},
                            after={"tools": ["read_file"]}, created_at=1_800_000_000_000_000)


async def test_pending_changes_survive_a_restart_and_decide_after(tmp_path: Path) -> None:
    path = tmp_path / "host.db"
    first, second = change(), change(ChangeKind.PERSONA)
    async with open_host_store(path, KEY) as store:
        changes = ChangeStore(store)
        await changes.put(first)
        await changes.put(second)
    async with open_host_store(path, KEY) as store:
        changes = ChangeStore(store)
        pending = await changes.pending()
        assert {c.change.id for c in pending} == {first.id, second.id}
        assert (await changes.get(first.id)).change == first  # canonical JSON round trips
        decided = await changes.decide(Decision(first.id, DecisionOutcome.APPROVE,
                                                "local:owner", 5, "fine"))
        assert decided.status is ChangeStatus.APPROVED
        assert decided.decision is not None and decided.decision.decided_by == "local:owner"
        assert [c.change.id for c in await changes.approved_unapplied()] == [first.id]
        applied = await changes.mark_applied(first.id, at=9)
        again = await changes.mark_applied(first.id, at=10)
        assert applied.status is ChangeStatus.APPLIED and again.applied_at == 9
        assert [c.change.id for c in await changes.pending()] == [second.id]


async def test_decisions_are_one_way(tmp_path: Path) -> None:
    async with open_host_store(tmp_path / "host.db", KEY) as store:
        changes = ChangeStore(store)
        c = change()
        await changes.put(c)
        await changes.decide(Decision(c.id, DecisionOutcome.REJECT, "local:owner", 1))
        with pytest.raises(ChangeConflict):
            await changes.decide(Decision(c.id, DecisionOutcome.APPROVE, "local:owner", 2))
        with pytest.raises(ChangeConflict):
            await changes.mark_applied(c.id)
        with pytest.raises(ChangeNotFound):
            await changes.decide(Decision(new_change_id(), DecisionOutcome.APPROVE, "x", 1))
        expiring = change()
        await changes.put(expiring)
        assert (await changes.expire(expiring.id)).status is ChangeStatus.EXPIRED
        assert len(await changes.history()) == 2


async def test_host_db_key_survives_master_rotation(tmp_path: Path) -> None:
    state = tmp_path / "state"
    keys = KeyStore.open(state, FileMasterKeySource.in_state_dir(state))
    db = state / "host.db"
    async with open_host_store(db, keys.subkey(Purpose.HOST_DB)) as store:
        await Registry(store).put_agent_group(AgentGroup(id="g1", name="g", folder="g"))
    keys.rotate_master()
    keys.close()
    reopened = KeyStore.open(state, FileMasterKeySource.in_state_dir(state))
    async with open_host_store(db, reopened.subkey(Purpose.HOST_DB)) as store:
        assert (await Registry(store).get_agent_group("g1")).name == "g"
    with pytest.raises(StoreError):
        async with open_host_store(db, reopened.subkey(Purpose.AUDIT_CHAIN)):
            pass
