"""The two-person rule, per change kind: off by default; when on, the submitter never
approves its own change, and a kind so configured needs two distinct approvers. Held
by the gateway, so for every way to decide; a first approval survives a restart."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from ironclaw.contract.enums import ChangeKind, ChangeStatus
from ironclaw.host.gateway import ChatOrigin, Conflict, Forbidden, GatewayConfig, Principal
from tests.support.gateway import ADMIN, CONFIG, OWNER, open_gateway

OSCAR = Principal("oscar", frozenset({"owner"}))
RULE = attrs.evolve(CONFIG, separate_approver={"persona"}, two_approvers={"enabled_tools"})


async def test_off_by_default_a_principal_may_approve_its_own_change(tmp_path: Path) -> None:
    assert not CONFIG.separate_approver and not CONFIG.two_approvers
    async with open_gateway(tmp_path / "host.db") as h:
        stored = await h.gateway.submit("persona", "demo", {"soul": "a"}, requested_by=OWNER)
        done = await h.gateway.decide(stored.change.id, "approve", OWNER)
        assert done.status is ChangeStatus.APPLIED


async def test_the_submitter_may_not_approve_where_the_kind_says_so(tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "host.db", config=RULE) as h:
        own = await h.gateway.submit("persona", "demo", {"soul": "a"}, requested_by=OWNER)
        with pytest.raises(Forbidden, match="two-person rule"):
            await h.gateway.decide(own.change.id, "approve", OWNER)
        assert (await h.gateway.get(own.change.id)).status is ChangeStatus.PENDING
        done = await h.gateway.decide(own.change.id, "approve", ADMIN)
        assert done.status is ChangeStatus.APPLIED
        assert done.decision is not None and done.decision.decided_by == "adam"
        # Kinds outside the rule are as before; and withdrawing one's own is a reject.
        wiring = await h.gateway.submit("wiring", "demo", {"wiring": "w1", "pattern": "."},
                                        requested_by=OWNER)
        assert (await h.gateway.decide(wiring.change.id, "approve", OWNER)).status \
            is ChangeStatus.APPLIED
        mine = await h.gateway.submit("persona", "demo", {"soul": "b"}, requested_by=OWNER)
        assert (await h.gateway.decide(mine.change.id, "reject", OWNER)).status \
            is ChangeStatus.REJECTED


async def test_two_distinct_approvers_and_the_first_survives_a_restart(
        tmp_path: Path) -> None:
    path = tmp_path / "host.db"
    async with open_gateway(path, config=RULE) as h:
        stored = await h.gateway.submit("enabled_tools", "demo", ["search", "fetch"],
                                        requested_by=OWNER)
        change_id = stored.change.id
        with pytest.raises(Forbidden):
            await h.gateway.decide(change_id, "approve", OWNER)  # the submitter
        first = await h.gateway.decide(change_id, "approve", ADMIN)
        assert first.status is ChangeStatus.PENDING and first.decision is None
        assert h.audit.find("change.approval", change_id) == [
            {"change_id": change_id, "approved_by": "adam", "approvals": 1, "needed": 2}]
        with pytest.raises(Conflict, match="second, different approver"):
            await h.gateway.decide(change_id, "approve", ADMIN)  # the same one again
        assert (await h.registry.get_agent_group("demo")).enabled_tools == ("search",)
    async with open_gateway(path, config=RULE, fresh=False) as h:
        with pytest.raises(Conflict):
            await h.gateway.decide(change_id, "approve", ADMIN)  # remembered
        done = await h.gateway.decide(change_id, "approve", OSCAR)
        assert done.status is ChangeStatus.APPLIED
        assert done.decision is not None and done.decision.decided_by == "oscar"
        assert h.audit.find("change.decision", change_id) == [
            {"change_id": change_id, "outcome": "approve", "decided_by": "oscar",
             "first_approver": "adam"}]
        assert (await h.registry.get_agent_group("demo")).enabled_tools == ("search", "fetch")


async def test_a_local_chat_identity_is_the_principal_that_posted_it(tmp_path: Path) -> None:
    # An API principal may post a chat command in the local chat under its own name,
    # so chat:local:<name> is that principal, not a second person.
    olivia_in_chat = Principal("chat:local:olivia", frozenset({"owner"}),
                               via=ChatOrigin("local:olivia", "local", "", "dm"))
    async with open_gateway(tmp_path / "host.db", config=RULE) as h:
        own = await h.gateway.submit("persona", "demo", {"soul": "a"}, requested_by=OWNER)
        with pytest.raises(Forbidden, match="two-person rule"):
            await h.gateway.decide(own.change.id, "approve", olivia_in_chat)
        two = await h.gateway.submit("enabled_tools", "demo", ["fetch"], requested_by=ADMIN)
        await h.gateway.decide(two.change.id, "approve", OWNER)
        with pytest.raises(Conflict):
            await h.gateway.decide(two.change.id, "approve", olivia_in_chat)
        # Another platform's identity cannot be linked to a principal: its own person.
        elsewhere = Principal("chat:telegram:42", frozenset({"owner"}),
                              via=ChatOrigin("telegram:42", "telegram", "", "42"))
        done = await h.gateway.decide(two.change.id, "approve", elsewhere)
        assert done.status is ChangeStatus.APPLIED


async def test_one_approval_then_a_reject_ends_it_and_leaves_nothing(tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "host.db", config=RULE) as h:
        stored = await h.gateway.submit("enabled_tools", "demo", ["fetch"],
                                        requested_by=OWNER)
        await h.gateway.decide(stored.change.id, "approve", ADMIN)
        rejected = await h.gateway.decide(stored.change.id, "reject", OSCAR)
        assert rejected.status is ChangeStatus.REJECTED
        left = await h.store.call(lambda conn: conn.execute(
            "SELECT count(*) FROM change_approvals").fetchone()[0])
        assert left == 0


def test_a_kind_under_the_rule_is_never_auto_approved_and_the_file_table_is_strict() -> None:
    with pytest.raises(ValueError, match="never auto-approved"):
        GatewayConfig(auto_approve={"persona"}, two_approvers={"persona"})
    with pytest.raises(ValueError, match="never auto-approved"):
        GatewayConfig(auto_approve={"persona"}, separate_approver={"persona"})
    loaded = GatewayConfig.from_table({"separate_approver": ["persona", "wiring"],
                                       "two_approvers": ["egress"]})
    assert loaded.separate_approver == {ChangeKind.PERSONA, ChangeKind.WIRING}
    assert loaded.approvals_needed(ChangeKind.EGRESS) == 2
    assert loaded.approver_must_differ(ChangeKind.EGRESS)
    for bad in ({"two_approvers": ["nonsense"]}, {"two_approvers": "egress"},
                {"auto_approve": ["persona"]}, {"access_ttl_seconds": "1d"}, []):
        with pytest.raises(ValueError):
            GatewayConfig.from_table(bad)


def test_the_daemon_config_file_sets_the_rule(tmp_path: Path) -> None:
    from ironclaw.host.config.file import ConfigFileError, load_config_file

    path = tmp_path / "ironclaw.toml"
    path.write_text('[gateway]\nseparate_approver = ["persona"]\n'
                    'two_approvers = ["egress", "mounts"]\naccess_max_pending_per_chat = 3\n')
    gateway = load_config_file(path)["gateway"]
    assert gateway.two_approvers == {ChangeKind.EGRESS, ChangeKind.MOUNTS}
    assert gateway.access_max_pending_per_chat == 3
    path.write_text('[gateway]\ntwo_approvers = ["egres"]\n')
    with pytest.raises(ConfigFileError, match="unknown change kind"):
        load_config_file(path)
