"""Requests that arrive from sandboxes and from the router: the CapabilityGate seam."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ironclaw.contract.enums import ChangeKind, ChangeStatus
from ironclaw.contract.jsonvalue import canonical_json
from ironclaw.host.gateway import Forbidden, GatewayConfig, TooManyPending, change_id_for
from ironclaw.host.mailboxes import CapabilityGate
from ironclaw.host.registry import AccessRequestStatus
from tests.support.gateway import ADMIN, APPROVER, CONFIG, OWNER, open_gateway

SESSION = "ses_" + "ab" * 8

# The wire payloads of the anchor's capability seam, verbatim, for the kinds the host
# enforces (packages, the anchor's other one, is refused).
SIX_KINDS = [
    ("persona", {"instructions": "be terse"}),
    ("enabled_tools", ["search", "fetch"]),
    ("wiring", {"engage": "mention", "pattern": "^hey"}),
    ("permissions", {"grant": "viewer", "member": "u42"}),
]


@pytest.mark.parametrize(("kind", "payload"), SIX_KINDS, ids=[k for k, _ in SIX_KINDS])
async def test_each_capability_kind_from_a_sandbox_becomes_one_pending_change(
        tmp_path: Path, kind: str, payload: object) -> None:
    async with open_gateway(tmp_path / "host.db") as h:
        gate: CapabilityGate = h.gateway
        wire = json.dumps(payload)
        first = await gate.submit_from_sandbox(
            session_id=SESSION, agent_group_id="demo", kind=kind, payload=wire,
            reason="needed for the task", outbound_id=f"cap-{kind}")
        again = await gate.submit_from_sandbox(
            session_id=SESSION, agent_group_id="demo", kind=kind, payload=wire,
            reason="needed for the task", outbound_id=f"cap-{kind}")
        assert first == again == change_id_for(SESSION, f"cap-{kind}")
        (pending,) = await h.gateway.pending()
        change = pending.change
        assert change.id == first
        assert change.kind is ChangeKind(kind)
        assert json.loads(change.after) == payload
        assert change.requested_by == f"session:{SESSION}"
        assert change.agent_group == "demo"
        assert change.reason == "needed for the task"
        assert CONFIG.request_ttl_seconds is not None
        assert change.expires_at == change.created_at + CONFIG.request_ttl_seconds * 10**6
        assert h.audit.kinds_for(first) == ["change.submit", "change.verdict"]
        assert h.audit.find("change.verdict", first)[0]["verdict"] == "require_human"


async def test_an_unknown_action_is_a_privileged_permissions_change(tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "host.db") as h:
        change_id = await h.gateway.submit_from_sandbox(
            session_id=SESSION, agent_group_id="demo", kind="skill_install",
            payload='{"skill":"curated-skill","version":"1.2.0"}', reason=None,
            outbound_id="cap-skill")
        stored = await h.gateway.get(change_id)
        assert stored.status is ChangeStatus.PENDING
        assert stored.change.kind is ChangeKind.PERMISSIONS
        assert json.loads(stored.change.after) == {
            "action": "skill_install",
            "payload": {"skill": "curated-skill", "version": "1.2.0"}}
        applied = await h.gateway.decide(change_id, "approve", OWNER)
        assert applied.status is ChangeStatus.APPLIED
        assert h.audit.find("change.apply", change_id)[0]["effects"] == 0


async def test_a_malformed_sandbox_payload_is_refused_and_nothing_is_stored(
        tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "host.db") as h:
        for payload in ('{"a":1,"a":2}', "not json", '{"x": NaN}'):
            with pytest.raises(ValueError):
                await h.gateway.submit_from_sandbox(
                    session_id=SESSION, agent_group_id="demo", kind="persona",
                    payload=payload, reason=None, outbound_id="bad")
        assert await h.gateway.history() == []


async def test_a_sandbox_cannot_rewire_another_agent_group(tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "host.db") as h:
        change_id = await h.gateway.submit_from_sandbox(
            session_id=SESSION, agent_group_id="other", kind="wiring",
            payload='{"wiring":"w1","pattern":"."}', reason=None, outbound_id="o1")
        stored = await h.gateway.get(change_id)
        assert stored.status is ChangeStatus.REJECTED
        assert stored.decision is not None and stored.decision.decided_by == "verifier"
        assert [w.pattern for w in await h.registry.wirings_for(h.messaging_group)] == ["^demo"]


async def test_a_sandbox_has_a_pending_quota(tmp_path: Path) -> None:
    config = GatewayConfig(max_pending_per_requester=3)
    async with open_gateway(tmp_path / "host.db", config=config) as h:
        for n in range(3):
            await h.gateway.submit_from_sandbox(
                session_id=SESSION, agent_group_id="demo", kind="persona",
                payload=json.dumps({"soul": str(n)}), reason=None, outbound_id=f"o{n}")
        with pytest.raises(TooManyPending):
            await h.gateway.submit_from_sandbox(
                session_id=SESSION, agent_group_id="demo", kind="persona",
                payload='{"soul":"x"}', reason=None, outbound_id="o3")
        # A re-delivery of one already stored is not a new request.
        await h.gateway.submit_from_sandbox(
            session_id=SESSION, agent_group_id="demo", kind="persona",
            payload='{"soul":"0"}', reason=None, outbound_id="o0")
        assert len(await h.gateway.pending()) == 3


async def test_the_routers_access_request_is_granted_through_the_gateway(
        tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "host.db") as h:
        request, _ = await h.registry.request_access(h.messaging_group, "local:bob")
        stored = await h.gateway.submit_access_request(request)
        again = await h.gateway.submit_access_request(request)
        assert again.change.id == stored.change.id
        assert stored.status is ChangeStatus.PENDING
        assert stored.change.kind is ChangeKind.ACCESS
        assert stored.change.requested_by == "system:router"
        assert [d.render() for d in stored.change.diff()] == ['+ /member_of/0: "demo"']
        assert await h.registry.access_level("local:bob", "demo") == 0
        with pytest.raises(Forbidden):
            await h.gateway.decide(stored.change.id, "approve", APPROVER)
        await h.gateway.decide(stored.change.id, "approve", ADMIN)
        assert await h.registry.access_level("local:bob", "demo") == 1
        (closed,) = await h.registry.list_access_requests()
        assert closed.status is AccessRequestStatus.GRANTED and closed.decided_by == "adam"


async def test_a_refused_access_request_is_closed_so_the_sender_may_ask_again(
        tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "host.db") as h:
        request, _ = await h.registry.request_access(h.messaging_group, "local:eve")
        stored = await h.gateway.submit_access_request(request)
        await h.gateway.decide(stored.change.id, "reject", OWNER)
        (closed,) = await h.registry.list_access_requests()
        assert closed.status is AccessRequestStatus.DENIED
        assert await h.registry.access_level("local:eve", "demo") == 0
        _, new = await h.registry.request_access(h.messaging_group, "local:eve")
        assert new


async def test_a_forged_access_change_cannot_hijack_a_pending_request(tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "host.db") as h:
        request, _ = await h.registry.request_access(h.messaging_group, "local:bob")
        forged = {"request": request.id, "user": "local:mallory", "member_of": ["demo"]}
        change_id = await h.gateway.submit_from_sandbox(
            session_id=SESSION, agent_group_id="demo", kind="access",
            payload=canonical_json(forged), reason=None, outbound_id="forge")
        stored = await h.gateway.get(change_id)
        assert stored.status is ChangeStatus.REJECTED
        assert (await h.registry.list_access_requests())[0].status is (
            AccessRequestStatus.PENDING)  # only the request's own change may close it
        assert await h.registry.access_level("local:mallory", "demo") == 0
