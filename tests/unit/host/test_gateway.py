"""The gateway end to end on a real host.db: hold, verify, decide, apply, resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from ironclaw.contract.enums import ChangeKind, ChangeStatus, Verdict
from ironclaw.contract.gateway import VerifierResult
from ironclaw.host.gateway import (
    Conflict,
    Forbidden,
    GatewayConfig,
    InvalidChange,
    NoSuchChange,
    Principal,
    StaleChange,
)
from ironclaw.host.gateway import apply as apply_mod
from ironclaw.host.gateway.apply import apply_change
from ironclaw.host.store.changes import ChangeStore
from tests.support.gateway import ADMIN, APPROVER, CONFIG, OWNER, VIEWER, TestClock, open_gateway


async def test_nothing_applies_before_approval_and_exactly_once_after(tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "host.db") as h:
        stored = await h.gateway.submit(ChangeKind.PERSONA, "demo", {"instructions": "be terse"},
                                        requested_by=OWNER, reason="shorter answers")
        change_id = stored.change.id
        assert stored.status is ChangeStatus.PENDING
        assert [p.change.id for p in await h.gateway.pending()] == [change_id]
        assert (await h.registry.get_agent_group("demo")).persona.instructions == "be helpful"
        assert h.respawner.calls == []

        decided = await h.gateway.decide(change_id, "approve", APPROVER)
        assert decided.status is ChangeStatus.APPLIED
        assert decided.decision is not None and decided.decision.decided_by == "april"
        group = await h.registry.get_agent_group("demo")
        assert group.persona.instructions == "be terse"
        assert group.persona.identity == "I am Demo"  # merged, not replaced
        assert await h.gateway.pending() == []
        assert h.respawner.calls == [("demo", f"change {change_id} (persona) applied")]

        with pytest.raises(Conflict):
            await h.gateway.decide(change_id, "approve", OWNER)
        with pytest.raises(Conflict):
            await h.gateway.decide(change_id, "reject", OWNER)
        assert (await h.gateway.retry_apply(change_id)).status is ChangeStatus.APPLIED
        again = await h.store.transaction(apply_change, change_id, 1, CONFIG)
        assert again.already and again.effects == 0
        assert (await h.registry.get_agent_group("demo")).updated_at == group.updated_at
        assert len(h.audit.find("change.apply", change_id)) == 1
        assert len(h.respawner.calls) == 1
        assert h.notifier.calls == [(change_id, ChangeStatus.APPLIED, "olivia")]


async def test_an_approved_change_leaves_the_four_audit_stages(tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "host.db") as h:
        stored = await h.gateway.submit("enabled_tools", "demo", ["search", "fetch"],
                                        requested_by=ADMIN)
        change_id = stored.change.id
        assert h.audit.kinds_for(change_id) == ["change.submit", "change.verdict"]
        (submit,) = h.audit.find("change.submit", change_id)
        assert submit == {"change_id": change_id, "kind": "enabled_tools",
                          "agent_group": "demo", "requested_by": "adam",
                          "digest": stored.change.digest()}
        assert h.audit.find("change.verdict", change_id) == [
            {"change_id": change_id, "verdict": "require_human", "verifier": "human-floor"}]
        await h.gateway.decide(change_id, "approve", ADMIN)
        assert h.audit.kinds_for(change_id) == [
            "change.submit", "change.verdict", "change.decision", "change.apply"]
        assert h.audit.find("change.decision", change_id) == [
            {"change_id": change_id, "outcome": "approve", "decided_by": "adam"}]
        assert (await h.registry.get_agent_group("demo")).enabled_tools == ("search", "fetch")


async def test_a_verifier_reject_never_reaches_a_human(tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "host.db") as h:
        stored = await h.gateway.submit("egress", "demo", {"hosts": ["169.254.169.254"]},
                                        requested_by=OWNER)
        change_id = stored.change.id
        assert stored.status is ChangeStatus.REJECTED
        assert stored.decision is not None and stored.decision.decided_by == "verifier"
        assert await h.gateway.pending() == []
        assert h.audit.kinds_for(change_id) == ["change.submit", "change.verdict",
                                                "change.decision"]
        assert h.audit.find("change.verdict", change_id)[0]["verifier"] == "egress-hosts"
        with pytest.raises(Conflict):
            await h.gateway.decide(change_id, "approve", OWNER)
        assert h.notifier.calls == [(change_id, ChangeStatus.REJECTED, "olivia")]
        assert await h.gateway.history() == [await h.gateway.get(change_id)]


async def test_before_is_filled_and_the_diff_reads(tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "host.db") as h:
        persona = await h.gateway.submit("persona", "demo", {"instructions": "be terse"},
                                         requested_by=OWNER)
        assert persona.change.before == '{"instructions":"be helpful"}'
        assert [d.render() for d in persona.change.diff()] == [
            '~ /instructions: "be helpful" -> "be terse"']
        tools = await h.gateway.submit("enabled_tools", "demo", ["search", "fetch"],
                                       requested_by=OWNER)
        assert [d.render() for d in tools.change.diff()] == ['+ /1: "fetch"']
        wiring = await h.gateway.submit("wiring", "demo", {"engage": "mention"},
                                        requested_by=OWNER)
        assert [d.render() for d in wiring.change.diff()] == [
            '~ /engage: "pattern" -> "mention"']
        perms = await h.gateway.submit("permissions", "demo",
                                       {"grant": "admin", "member": "local:bob"},
                                       requested_by=OWNER)
        assert [d.render() for d in perms.change.diff()] == ['~ /grant: [] -> "admin"']


async def test_rbac_viewer_never_decides_and_approver_only_its_kinds(tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "host.db") as h:
        mounts = await h.gateway.submit("egress", "demo", {"hosts": ["api.example.com"]},
                                        requested_by=OWNER)
        persona = await h.gateway.submit("persona", "demo", {"soul": "calm"},
                                         requested_by=OWNER)
        for outcome in ("approve", "reject"):
            with pytest.raises(Forbidden):
                await h.gateway.decide(persona.change.id, outcome, VIEWER)
        with pytest.raises(Forbidden):
            await h.gateway.submit("persona", "demo", {"soul": "x"}, requested_by=VIEWER)
        with pytest.raises(Forbidden):
            await h.gateway.decide(mounts.change.id, "approve", APPROVER)
        assert (await h.gateway.get(mounts.change.id)).status is ChangeStatus.PENDING
        rejected = await h.gateway.decide(mounts.change.id, "reject", APPROVER, "not today")
        assert rejected.status is ChangeStatus.REJECTED
        assert rejected.decision is not None and rejected.decision.decided_by == "april"
        assert (await h.gateway.decide(persona.change.id, "approve", APPROVER)).status is (
            ChangeStatus.APPLIED)
        assert h.audit.find("change.decision", persona.change.id)[0]["decided_by"] == "april"


async def test_granting_owner_needs_an_owner(tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "host.db") as h:
        stored = await h.gateway.submit("permissions", "demo",
                                        {"grant": "owner", "user": "local:bob"},
                                        requested_by=ADMIN)
        with pytest.raises(Forbidden):
            await h.gateway.decide(stored.change.id, "approve", ADMIN)
        assert (await h.gateway.decide(stored.change.id, "approve", OWNER)).status is (
            ChangeStatus.APPLIED)
        assert "local:bob" in await h.registry.owners()


async def test_unknown_ids_and_bad_input_are_typed(tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "host.db") as h:
        missing = "chg_" + "0" * 32
        with pytest.raises(NoSuchChange):
            await h.gateway.decide(missing, "approve", OWNER)
        with pytest.raises(NoSuchChange):
            await h.gateway.get(missing)
        with pytest.raises(NoSuchChange):
            await h.gateway.retry_apply(missing)
        with pytest.raises(InvalidChange):
            await h.gateway.submit("skill_install", "demo", {}, requested_by=OWNER)
        with pytest.raises(InvalidChange):
            await h.gateway.submit("persona", "../demo", {"soul": "x"}, requested_by=OWNER)
        with pytest.raises(InvalidChange):
            await h.gateway.submit("persona", "demo", {"soul": "x"}, requested_by="mallory")
        with pytest.raises(InvalidChange):
            await h.gateway.submit("persona", "demo", {"soul": "x"}, requested_by=OWNER,
                                   ttl_seconds=-1)
        with pytest.raises(InvalidChange):
            await h.gateway.decide(missing, "maybe", OWNER)
        with pytest.raises(InvalidChange):
            await h.gateway.submit("persona", "demo", {"soul": "x" * 300_000},
                                   requested_by=OWNER)
        assert await h.gateway.history() == []


async def test_a_pending_change_survives_a_restart_and_applies_when_approved(
        tmp_path: Path) -> None:
    path = tmp_path / "host.db"
    async with open_gateway(path) as h:
        stored = await h.gateway.submit("persona", "demo", {"soul": "brave"},
                                        requested_by=OWNER, ttl_seconds=3600)
    async with open_gateway(path, fresh=False) as h:
        assert [p.change.id for p in await h.gateway.pending()] == [stored.change.id]
        assert h.audit.entries[-1] == ("gateway.resume", {"pending": 1, "applied": 0})
        decided = await h.gateway.decide(stored.change.id, "approve", OWNER)
        assert decided.status is ChangeStatus.APPLIED
        assert (await h.registry.get_agent_group("demo")).persona.soul == "brave"


async def test_an_approved_but_unapplied_change_is_applied_on_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "host.db"
    real = apply_mod.mark_applied
    monkeypatch.setattr(apply_mod, "mark_applied", _crash)
    async with open_gateway(path) as h:
        stored = await h.gateway.submit("persona", "demo", {"soul": "brave"},
                                        requested_by=OWNER)
        assert (await h.gateway.decide(stored.change.id, "approve", OWNER)).status is (
            ChangeStatus.APPROVED)
    monkeypatch.setattr(apply_mod, "mark_applied", real)
    async with open_gateway(path, fresh=False) as h:
        assert (await h.gateway.get(stored.change.id)).status is ChangeStatus.APPLIED
        assert (await h.registry.get_agent_group("demo")).persona.soul == "brave"
        assert h.audit.entries[-1] == ("gateway.resume", {"pending": 0, "applied": 1})


def _crash(conn: object, change_id: str, at: int) -> None:
    raise RuntimeError("power cut")


async def test_a_crash_inside_apply_leaves_nothing_and_a_retry_applies_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def crash_after_registry_write(conn: object, change_id: str, at: int) -> None:
        row = conn.execute(  # type: ignore[attr-defined]
            "SELECT persona_instructions FROM agent_groups WHERE id = 'demo'").fetchone()
        seen.append(row[0])
        raise RuntimeError("power cut")

    real = apply_mod.mark_applied
    async with open_gateway(tmp_path / "host.db") as h:
        stored = await h.gateway.submit("persona", "demo", {"instructions": "be terse"},
                                        requested_by=OWNER)
        change_id = stored.change.id
        monkeypatch.setattr(apply_mod, "mark_applied", crash_after_registry_write)
        decided = await h.gateway.decide(change_id, "approve", OWNER)
        assert seen == ["be terse"]  # the registry write happened, inside the transaction
        assert decided.status is ChangeStatus.APPROVED
        assert (await h.registry.get_agent_group("demo")).persona.instructions == "be helpful"
        assert h.audit.kinds_for(change_id)[-1] == "change.apply_failed"
        assert h.respawner.calls == []

        monkeypatch.setattr(apply_mod, "mark_applied", real)
        assert (await h.gateway.retry_apply(change_id)).status is ChangeStatus.APPLIED
        assert (await h.gateway.retry_apply(change_id)).status is ChangeStatus.APPLIED
        assert (await h.registry.get_agent_group("demo")).persona.instructions == "be terse"
        assert len(h.audit.find("change.apply", change_id)) == 1
        assert len(h.respawner.calls) == 1


async def test_a_change_expires_after_its_ttl_and_the_requester_is_told(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    clock = TestClock()
    async with open_gateway(tmp_path / "host.db", clock=clock) as h:
        stored = await h.gateway.submit("persona", "demo", {"soul": "a"}, requested_by=OWNER,
                                        ttl_seconds=3600)
        change_id = stored.change.id
        await h.notifier.wait_for(change_id, ChangeStatus.EXPIRED)
        assert clock.now_us() >= stored.change.created_at + 3600 * 1_000_000
        expired = await h.gateway.get(change_id)
        assert expired.status is ChangeStatus.EXPIRED
        assert expired.decision is not None and expired.decision.decided_by == "expiry"
        assert h.audit.find("change.expire", change_id) == [{"change_id": change_id}]
        assert h.notifier.calls == [(change_id, ChangeStatus.EXPIRED, "olivia")]
        with pytest.raises(Conflict):
            await h.gateway.decide(change_id, "approve", OWNER)
        assert (await h.registry.get_agent_group("demo")).persona.soul == "curious"


async def test_a_change_is_pending_until_its_ttl_and_no_longer(
        tmp_path: Path, mock_clock: trio.testing.MockClock) -> None:
    async with open_gateway(tmp_path / "host.db") as h:
        stored = await h.gateway.submit("persona", "demo", {"soul": "a"}, requested_by=OWNER,
                                        ttl_seconds=30)
        decided = await h.gateway.submit("persona", "demo", {"identity": "b"},
                                         requested_by=OWNER, ttl_seconds=30)
        await h.gateway.decide(decided.change.id, "reject", OWNER)
        mock_clock.jump(29.9)
        await trio.testing.wait_all_tasks_blocked()
        assert (await h.gateway.get(stored.change.id)).status is ChangeStatus.PENDING
        mock_clock.jump(0.2)
        await h.notifier.wait_for(stored.change.id, ChangeStatus.EXPIRED)
        assert (await h.gateway.get(stored.change.id)).status is ChangeStatus.EXPIRED
        assert (await h.gateway.get(decided.change.id)).status is ChangeStatus.REJECTED
        assert h.audit.find("change.expire", decided.change.id) == []


async def test_ttl_timers_are_rearmed_after_a_restart(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    path = tmp_path / "host.db"
    clock = TestClock()
    async with open_gateway(path, clock=clock) as h:
        stored = await h.gateway.submit("persona", "demo", {"soul": "a"}, requested_by=OWNER,
                                        ttl_seconds=60)
    async with open_gateway(path, fresh=False, clock=clock) as h:
        await h.notifier.wait_for(stored.change.id, ChangeStatus.EXPIRED)
        assert stored.change.expires_at is not None
        assert clock.now_us() >= stored.change.expires_at
        assert [c[:2] for c in h.notifier.calls] == [(stored.change.id, ChangeStatus.EXPIRED)]


async def test_approval_is_refused_when_the_state_moved_since_submit(tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "host.db") as h:
        first = await h.gateway.submit("persona", "demo", {"soul": "a"}, requested_by=OWNER)
        second = await h.gateway.submit("persona", "demo", {"soul": "b"}, requested_by=OWNER)
        await h.gateway.decide(first.change.id, "approve", OWNER)
        with pytest.raises(StaleChange):
            await h.gateway.decide(second.change.id, "approve", OWNER)
        stale = await h.gateway.get(second.change.id)
        assert stale.status is ChangeStatus.REJECTED
        assert stale.decision is not None and stale.decision.decided_by == "verifier"
        assert (await h.registry.get_agent_group("demo")).persona.soul == "a"


async def test_auto_approval_covers_only_configured_low_risk_kinds(tmp_path: Path) -> None:
    config = GatewayConfig(mount_roots=CONFIG.mount_roots,
                           auto_approve={ChangeKind.PERSONA, ChangeKind.ENABLED_TOOLS})
    async with open_gateway(tmp_path / "host.db", config=config) as h:
        persona = await h.gateway.submit("persona", "demo", {"soul": "x"}, requested_by=OWNER)
        assert persona.status is ChangeStatus.APPLIED
        assert persona.decision is not None and persona.decision.decided_by == "policy"
        wiring = await h.gateway.submit("wiring", "demo", {"priority": 3}, requested_by=OWNER)
        assert wiring.status is ChangeStatus.PENDING
        sandbox = await h.gateway.submit_from_sandbox(
            session_id="ses_" + "a" * 16, agent_group_id="demo", kind="persona",
            payload='{"soul":"evil"}', reason=None, outbound_id="out-1")
        assert (await h.gateway.get(sandbox)).status is ChangeStatus.PENDING


@pytest.mark.parametrize("kind", sorted(
    ["create_agent", "mounts", "permissions", "egress", "access"]))
def test_config_refuses_auto_approval_of_privileged_kinds(kind: str) -> None:
    with pytest.raises(ValueError, match="never"):
        GatewayConfig(auto_approve={kind})


async def test_auto_approval_never_covers_privileged_kinds_even_if_forced(
        tmp_path: Path) -> None:
    config = GatewayConfig(mount_roots=CONFIG.mount_roots, auto_approve_from_sandbox=True)
    object.__setattr__(config, "auto_approve", frozenset(ChangeKind))  # bypass the check

    class PassEverything:
        name = "pass-everything"

        def verify(self, change: object) -> VerifierResult:
            return VerifierResult(self.name, Verdict.PASS, "fine")

    async with open_gateway(tmp_path / "host.db", config=config,
                            extra_verifiers=[PassEverything()]) as h:
        for kind, after in [
                ("create_agent", {"name": "Spy", "folder": "spy"}),
                ("permissions", {"grant": "admin", "user": "local:mallory"}),
                ("egress", {"hosts": ["example.com"]}),
                ("access", {"user": "local:mallory", "member_of": ["demo"]})]:
            stored = await h.gateway.submit(kind, "demo", after, requested_by=OWNER)
            assert stored.status is ChangeStatus.PENDING, kind
        assert (await h.gateway.submit("persona", "demo", {"soul": "x"},
                                       requested_by=OWNER)).status is ChangeStatus.APPLIED


async def test_changes_store_rows_match_what_the_gateway_returns(tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "host.db") as h:
        stored = await h.gateway.submit("egress", "demo", {"hosts": ["api.example.com"]},
                                        requested_by=OWNER)
        assert await ChangeStore(h.store).get(stored.change.id) == stored


async def test_a_viewer_never_decides_whatever_the_mapping_says(tmp_path: Path) -> None:
    config = GatewayConfig(approvals={"viewer": set(ChangeKind), "owner": set(ChangeKind)})
    async with open_gateway(tmp_path / "host.db", config=config) as h:
        stored = await h.gateway.submit("persona", "demo", {"soul": "x"}, requested_by=OWNER)
        for outcome in ("approve", "reject"):
            with pytest.raises(Forbidden):
                await h.gateway.decide(stored.change.id, outcome, VIEWER)
        with pytest.raises(Forbidden):  # admin has no entry in this mapping
            await h.gateway.decide(stored.change.id, "approve", ADMIN)
        assert (await h.gateway.get(stored.change.id)).status is ChangeStatus.PENDING


@pytest.mark.parametrize(("name", "roles"), [
    ("verifier", {"owner"}), ("Policy", {"owner"}), ("expiry", {"admin"}),
    ("session:ses_1", {"owner"}), ("", {"owner"}), ("bob", {"root"}),
])
def test_principals_cannot_pose_as_the_system(name: str, roles: set[str]) -> None:
    with pytest.raises(ValueError):
        Principal(name, frozenset(roles))
