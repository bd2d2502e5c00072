"""What each kind of approved change does to host.db, and only that."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ironclaw.contract.enums import ChangeStatus, EngageMode
from ironclaw.host.gateway import Conflict, Grants, StaleChange
from ironclaw.host.registry import AccessLevel, Role, RoleGrant
from ironclaw.host.store.changes import StoredChange
from tests.support.gateway import OWNER, Harness, open_gateway


async def approve(h: Harness, kind: str, after: Any, group: str = "demo") -> StoredChange:
    stored = await h.gateway.submit(kind, group, after, requested_by=OWNER)
    assert stored.status is ChangeStatus.PENDING, stored
    decided: StoredChange = await h.gateway.decide(stored.change.id, "approve", OWNER)
    return decided


async def test_tools_are_recorded_per_group(tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "host.db") as h:
        await approve(h, "enabled_tools", {"tools": ["fetch"]})
        assert (await h.registry.get_agent_group("demo")).enabled_tools == ("fetch",)
        assert (await h.registry.get_agent_group("other")).enabled_tools != ("fetch",)
        assert [g for g, _ in h.respawner.calls] == ["demo"]


@pytest.mark.parametrize(("kind", "after"), [
    ("packages", {"apt": ["ripgrep"]}),
    ("mounts", [{"source": "/srv/data"}]),
])
async def test_a_kind_nothing_enforces_is_never_approved_into_nothing(
        tmp_path: Path, kind: str, after: Any) -> None:
    async with open_gateway(tmp_path / "host.db") as h:
        grants = Grants(h.store)
        stored = await h.gateway.submit(kind, "demo", after, requested_by=OWNER)
        assert stored.status is ChangeStatus.REJECTED
        assert stored.decision is not None and stored.decision.decided_by == "verifier"
        assert h.audit.find("change.verdict", stored.change.id)[0]["verifier"] == (
            "refused-kind")
        with pytest.raises(Conflict):
            await h.gateway.decide(stored.change.id, "approve", OWNER)
        assert (await grants.packages("demo"), await grants.mounts("demo"),
                await grants.mcp_access("demo")) == ({}, (), {})
        assert h.respawner.calls == []


async def test_egress_hosts_are_per_group_and_revocable(tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "host.db") as h:
        grants = Grants(h.store)
        assert await grants.egress_hosts("demo") == ()
        await approve(h, "egress", {"hosts": ["api.example.com", "*.example.org"]})
        assert await grants.egress_hosts("demo") == ("api.example.com", "*.example.org")
        assert await grants.egress_hosts("other") == ()
        revoke = await h.gateway.submit("egress", "demo", {"hosts": []}, requested_by=OWNER)
        assert [d.render() for d in revoke.change.diff()] == [
            '- /hosts/0: "api.example.com"', '- /hosts/1: "*.example.org"']
        await h.gateway.decide(revoke.change.id, "approve", OWNER)
        assert await grants.egress_hosts("demo") == ()


async def test_destinations_are_granted_and_removed(tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "host.db") as h:
        await approve(h, "egress", {"destinations": {
            "ops": {"type": "agent", "target_agent_group": "other"},
            "team": {"type": "channel", "channel": "slack", "platform_id": "C1"}}})
        names = [(d.name, d.type) for d in await h.registry.destinations_for("demo")]
        assert names == [("ops", "agent"), ("team", "channel")]
        removal = await h.gateway.submit("egress", "demo", {"destinations": {"ops": None}},
                                         requested_by=OWNER)
        assert [d.render() for d in removal.change.diff()] == [
            '~ /destinations/ops: {"target_agent_group":"other","type":"agent"} -> null']
        await h.gateway.decide(removal.change.id, "approve", OWNER)
        assert [d.name for d in await h.registry.destinations_for("demo")] == ["team"]


async def test_wirings_are_patched_created_and_deleted(tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "host.db") as h:
        await approve(h, "wiring", {"engage": "mention", "priority": 5})
        (w1,) = await h.registry.wirings_for(h.messaging_group)
        assert (w1.engage_mode, w1.priority, w1.pattern) == (EngageMode.MENTION, 5, "^demo")
        await approve(h, "wiring", {"wiring": "w2", "messaging_group": h.messaging_group,
                                    "pattern": "^hey", "priority": 1})
        assert [(w.id, w.pattern) for w in await h.registry.wirings_for(h.messaging_group)] \
            == [("w1", "^demo"), ("w2", "^hey")]
        await approve(h, "wiring", {"wiring": "w2", "delete": True})
        assert [w.id for w in await h.registry.wirings_for(h.messaging_group)] == ["w1"]
        assert h.respawner.calls == []


async def test_permissions_grant_and_revoke_roles_and_membership(tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "host.db") as h:
        await approve(h, "permissions", [{"grant": "admin", "user": "local:bob"},
                                         {"grant": "viewer", "member": "u42"}])
        assert await h.registry.roles_of("local:bob") == [
            RoleGrant("local:bob", Role.ADMIN, "demo")]
        assert await h.registry.access_level("u42", "demo") is AccessLevel.MEMBER
        assert await h.registry.access_level("u42", "other") is AccessLevel.NONE
        await approve(h, "permissions", [{"revoke": "admin", "user": "local:bob"},
                                         {"revoke": "member", "member": "u42"}])
        assert await h.registry.roles_of("local:bob") == []
        assert await h.registry.access_level("u42", "demo") is AccessLevel.NONE


async def test_the_last_owner_cannot_be_revoked(tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "host.db") as h:
        stored = await approve(h, "permissions", {"revoke": "owner", "user": "local:olivia"})
        assert stored.status is ChangeStatus.APPROVED  # apply refused, nothing written
        assert await h.registry.owners() == ["local:olivia"]
        assert h.audit.kinds_for(stored.change.id)[-1] == "change.apply_failed"


async def test_create_agent_makes_a_whole_agent_group(tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "host.db") as h:
        spec = {"name": "Research", "folder": "research", "provider": "anthropic",
                "model": "claude-sonnet-4", "tools": ["search", "fetch"],
                "persona": {"identity": "I research", "instructions": "cite sources"}}
        first = await h.gateway.submit("create_agent", "demo", spec, requested_by=OWNER)
        twin = await h.gateway.submit("create_agent", "demo", {**spec, "name": "Twin"},
                                      requested_by=OWNER)
        assert first.change.agent_group == "research"
        assert first.change.before == "{}"
        await h.gateway.decide(first.change.id, "approve", OWNER)
        group = await h.registry.get_agent_group("research")
        assert (group.name, group.folder, group.provider, group.model) == (
            "Research", "research", "anthropic", "claude-sonnet-4")
        assert group.enabled_tools == ("search", "fetch")
        assert (group.persona.identity, group.persona.soul, group.persona.instructions) == (
            "I research", "", "cite sources")
        with pytest.raises(StaleChange):
            await h.gateway.decide(twin.change.id, "approve", OWNER)
        assert (await h.gateway.get(twin.change.id)).status is ChangeStatus.REJECTED
        assert (await h.registry.get_agent_group("research")).name == "Research"
        assert h.respawner.calls == []


async def test_an_operator_access_change_adds_exactly_the_groups_shown(tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "host.db") as h:
        stored = await approve(h, "access", {"user": "local:carol", "member_of": ["other"]},
                               group="other")
        assert stored.status is ChangeStatus.APPLIED
        assert await h.registry.access_level("local:carol", "other") is AccessLevel.MEMBER
        assert await h.registry.access_level("local:carol", "demo") is AccessLevel.NONE
