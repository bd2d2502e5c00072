"""Chat approvals, end to end through the real control plane and the local channel: an
owner who opted in lists, reads and approves a change from a direct chat, bound to the
digest shown; the audit names the chat. Everyone else, and every other way, is refused
with a reply and an audit entry, decides nothing and reaches no agent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from ironclaw.contract.enums import ChangeStatus
from ironclaw.host.app import ControlPlaneHandles
from ironclaw.host.chatops import commands as cmd
from ironclaw.host.chatops.render import code_of
from ironclaw.host.config.devseed import DEMO_CONVERSATION, DEV_OWNER
from ironclaw.host.gateway import Forbidden, GatewayConfig, Principal
from ironclaw.host.registry import Role, RoleGrant
from tests.support.channels import open_channel_plane

DM = "dm-operator"
API_OWNER = Principal("owner", frozenset({"owner"}))


@pytest.fixture
async def plane(tmp_path: Path) -> AsyncIterator[ControlPlaneHandles]:
    async with open_channel_plane(tmp_path, []) as handles:
        yield handles


async def say(plane: ControlPlaneHandles, conversation: str, sender: str, text: str, *,
              direct: bool = True) -> str:
    """Post and return the next reply in that conversation."""
    mark = plane.local.cursor(conversation)
    await plane.local.post(conversation, sender, text, direct=direct)
    with trio.fail_after(30):
        return (await plane.local.wait_for_reply(conversation, after_index=mark)).text


async def say_all(plane: ControlPlaneHandles, conversation: str, sender: str, text: str,
                  count: int) -> list[str]:
    """Post (direct) and return the next ``count`` replies."""
    mark = plane.local.cursor(conversation)
    await plane.local.post(conversation, sender, text, direct=True)
    replies = []
    with trio.fail_after(30):
        for _ in range(count):
            entry = await plane.local.wait_for_reply(conversation, after_index=mark)
            replies.append(entry.text)
            mark = entry.index
    return replies


async def persona_change(plane: ControlPlaneHandles, soul: str = "Curious.") -> str:
    stored = await plane.gateway.submit("persona", "demo", {"soul": soul},
                                        requested_by=API_OWNER, reason="be curious")
    assert stored.status is ChangeStatus.PENDING
    return stored.change.id


async def audit_entries(plane: ControlPlaneHandles, kind: str) -> list[dict[str, Any]]:
    return [dict(e.fields) for e in await plane.audit.tail(500) if e.kind == kind]


async def test_an_opted_in_owner_lists_reads_and_approves_bound_to_the_digest(
        plane: ControlPlaneHandles) -> None:
    assert await plane.chat_approvers.enable(DEV_OWNER, by="owner")
    change_id = await persona_change(plane)
    digest = (await plane.gateway.get(change_id)).change.digest()

    listing = await say(plane, DM, "operator", "/pending")
    assert change_id in listing and "persona" in listing

    view = await say(plane, DM, "operator", f"/show {change_id}")
    assert '~ /soul: "Helpful, brief, honest about what you cannot do." -> "Curious."' in view
    assert f"/approve {change_id} {code_of(digest)}" in view
    assert "reason: be curious" in view

    done = await say(plane, DM, "operator", f"/approve {change_id} {code_of(digest)}")
    assert done == f"Approved and applied: {change_id} (persona)."
    assert (await plane.registry.get_agent_group("demo")).persona.soul == "Curious."
    stored = await plane.gateway.get(change_id)
    assert stored.status is ChangeStatus.APPLIED
    assert stored.decision is not None
    assert stored.decision.decided_by == f"chat:{DEV_OWNER}"

    (decision,) = [e for e in await audit_entries(plane, "change.decision")
                   if e["change_id"] == change_id]
    assert decision == {"change_id": change_id, "outcome": "approve",
                        "decided_by": "chat:local:operator", "via_channel": "local",
                        "via_instance": None, "via_chat": DM, "digest": digest}
    assert await audit_entries(plane, "chat.approvals_enabled") == [
        {"user_id": DEV_OWNER, "by": "owner"}]


async def test_approve_first_shows_the_diff_and_decides_nothing(
        plane: ControlPlaneHandles) -> None:
    await plane.chat_approvers.enable(DEV_OWNER, by="owner")
    change_id = await persona_change(plane)
    digest = (await plane.gateway.get(change_id)).change.digest()
    # Straight to a coded approve, without having been shown it here: shown, not decided.
    first, view = await say_all(plane, DM, "operator",
                                f"/approve {change_id} {code_of(digest)}", 2)
    assert first == "Read it first; nothing was decided."
    assert "~ /soul:" in view
    assert (await plane.gateway.get(change_id)).status is ChangeStatus.PENDING
    # A short, unique prefix of the id works; a plain /approve shows it again.
    view = await say(plane, DM, "operator", f"/approve {change_id[:12]}")
    assert "~ /soul:" in view and code_of(digest) in view
    done = await say(plane, DM, "operator", f"/approve {change_id[:12]} {code_of(digest)}")
    assert done.startswith("Approved and applied")


async def test_a_stale_code_is_refused_and_audited(plane: ControlPlaneHandles) -> None:
    await plane.chat_approvers.enable(DEV_OWNER, by="owner")
    change_id = await persona_change(plane)
    await say(plane, DM, "operator", f"/show {change_id}")
    refused, again = await say_all(plane, DM, "operator", f"/approve {change_id} deadbeef", 2)
    assert refused.startswith("Refused: that code does not confirm the change")
    assert "~ /soul:" in again
    assert (await plane.gateway.get(change_id)).status is ChangeStatus.PENDING
    (entry,) = await audit_entries(plane, "chat.command_refused")
    assert entry["reason"] == "digest_mismatch" and entry["user_id"] == DEV_OWNER


async def test_the_gateway_refuses_a_decision_bound_to_another_digest(
        plane: ControlPlaneHandles) -> None:
    from ironclaw.host.gateway import ChatOrigin, Conflict

    change_id = await persona_change(plane)
    origin = ChatOrigin(user_id=DEV_OWNER, channel="local", instance="", platform_id=DM)
    chat_owner = Principal(f"chat:{DEV_OWNER}", frozenset({"owner"}), via=origin)
    with pytest.raises(Conflict):
        await plane.gateway.decide(change_id, "approve", chat_owner, digest="0" * 64)
    assert (await plane.gateway.get(change_id)).status is ChangeStatus.PENDING


async def test_a_non_owner_is_refused_audited_and_not_routed(
        plane: ControlPlaneHandles) -> None:
    await plane.chat_approvers.enable(DEV_OWNER, by="owner")
    change_id = await persona_change(plane)
    digest = (await plane.gateway.get(change_id)).change.digest()
    # In the demo conversation, which is wired to the agent and open to anyone.
    reply = await say(plane, DEMO_CONVERSATION, "mallory",
                      f"/approve {change_id} {code_of(digest)}")
    assert reply == cmd.REFUSED_OTHERS
    reply = await say(plane, "dm-mallory", "mallory", f"/approve {change_id} {code_of(digest)}")
    assert reply == cmd.REFUSED_OTHERS
    assert await say(plane, "dm-mallory", "mallory", "/pending") == cmd.REFUSED_OTHERS
    assert (await plane.gateway.get(change_id)).status is ChangeStatus.PENDING
    refused = await audit_entries(plane, "chat.command_refused")
    assert [(e["user_id"], e["command"], e["reason"], e["chat"]) for e in refused] == [
        ("local:mallory", "approve", "not_owner", DEMO_CONVERSATION),
        ("local:mallory", "approve", "not_owner", "dm-mallory"),
        ("local:mallory", "pending", "not_owner", "dm-mallory")]
    # The command never reached the agent: its next answer is to the next message.
    assert await say(plane, DEMO_CONVERSATION, "mallory", "hello", direct=False) == \
        "echo: hello"
    agent = [e.text for e in plane.local.transcript(DEMO_CONVERSATION) if e.role == "agent"]
    assert agent == [cmd.REFUSED_OTHERS, "echo: hello"]


async def test_an_owner_without_opt_in_is_refused(plane: ControlPlaneHandles) -> None:
    await plane.registry.grant_role(RoleGrant("local:second", Role.OWNER))
    change_id = await persona_change(plane)
    reply = await say(plane, "dm-second", "second", f"/show {change_id}")
    assert reply == cmd.REFUSED_NOT_ENABLED.format(user="local:second")
    (entry,) = await audit_entries(plane, "chat.command_refused")
    assert entry["reason"] == "not_enabled"
    # Opted in, then out again: refused again.
    await plane.chat_approvers.enable("local:second", by="owner")
    assert change_id in await say(plane, "dm-second", "second", "/pending")
    assert await plane.chat_approvers.disable("local:second", by="owner")
    assert await say(plane, "dm-second", "second", "/pending") == \
        cmd.REFUSED_NOT_ENABLED.format(user="local:second")
    # A revoked owner's opt-in counts for nothing.
    await plane.chat_approvers.enable("local:second", by="owner")
    await plane.registry.revoke_role(RoleGrant("local:second", Role.OWNER))
    assert await say(plane, "dm-second", "second", "/pending") == cmd.REFUSED_OTHERS


async def test_an_opted_in_owner_is_refused_outside_a_direct_chat(
        plane: ControlPlaneHandles) -> None:
    await plane.chat_approvers.enable(DEV_OWNER, by="owner")
    change_id = await persona_change(plane)
    reply = await say(plane, DEMO_CONVERSATION, "operator", f"/show {change_id}",
                      direct=False)
    assert reply == cmd.REFUSED_NOT_DIRECT
    (entry,) = await audit_entries(plane, "chat.command_refused")
    assert (entry["reason"], entry["chat"]) == ("not_direct", DEMO_CONVERSATION)
    # The owner's ordinary text still reaches the agent.
    assert await say(plane, DEMO_CONVERSATION, "operator", "hi", direct=False) == "echo: hi"


async def test_reject_from_chat_and_an_owner_grant_is_never_approved_from_chat(
        plane: ControlPlaneHandles) -> None:
    await plane.chat_approvers.enable(DEV_OWNER, by="owner")
    change_id = await persona_change(plane)
    assert await say(plane, DM, "operator", f"/reject {change_id} not today") == \
        f"Rejected: {change_id}."
    stored = await plane.gateway.get(change_id)
    assert stored.status is ChangeStatus.REJECTED
    assert stored.decision is not None and stored.decision.reason == "not today"

    grant = await plane.gateway.submit(
        "permissions", "demo", {"grant": "owner", "user": "local:mallory"},
        requested_by=API_OWNER)
    digest = grant.change.digest()
    await say(plane, DM, "operator", f"/show {grant.change.id}")
    reply = await say(plane, DM, "operator", f"/approve {grant.change.id} {code_of(digest)}")
    assert reply == cmd.REFUSED_OWNER_GRANT
    assert (await plane.gateway.get(grant.change.id)).status is ChangeStatus.PENDING


async def test_a_flood_of_commands_is_cut_off(plane: ControlPlaneHandles) -> None:
    burst = cmd.CommandPolicy().sender_burst
    async with plane.events.subscribe("chat.command") as seen:
        for _ in range(burst + 4):
            await plane.local.post("dm-flood", "flood", "/pending", direct=True)
        results: list[str] = []
        with trio.fail_after(30):
            while len(results) < burst + 4:
                results.append((await seen.receive()).event.result)  # type: ignore[union-attr]
    assert results.count("refused:not_owner") == burst
    assert results.count("dropped") == 4
    assert len(await audit_entries(plane, "chat.command_refused")) == burst


async def test_an_owner_grants_a_strangers_access_request_from_chat(tmp_path: Path) -> None:
    """The two features together: a stranger asks in a request_approval chat, the owner
    reads and approves the access change from a direct chat, the stranger is told and
    is heard."""
    from ironclaw.contract.enums import UnknownSenderPolicy
    from ironclaw.host.chatops.notices import TEXTS
    from ironclaw.host.chatops.store import NoticeKind
    from tests.support.channels import ChatWiring

    lobby = ChatWiring("local", "lobby",
                       unknown_sender_policy=UnknownSenderPolicy.REQUEST_APPROVAL)
    with trio.fail_after(120):
        async with open_channel_plane(tmp_path, [], [lobby]) as plane:
            await plane.chat_approvers.enable(DEV_OWNER, by="owner")
            assert await say(plane, "lobby", "stranger", "hi", direct=False) == \
                TEXTS[NoticeKind.REQUESTED]
            listing = await say(plane, DM, "operator", "/pending")
            (change,) = await plane.gateway.pending()
            assert change.change.id in listing and "access" in listing
            view = await say(plane, DM, "operator", f"/show {change.change.id}")
            assert '+ /member_of/0: "demo"' in view and '= /user: "local:stranger"' in view
            mark = plane.local.cursor("lobby")
            code = code_of(change.change.digest())
            assert (await say(plane, DM, "operator", f"/approve {change.change.id} {code}")
                    ).startswith("Approved and applied")
            with trio.fail_after(30):
                told = await plane.local.wait_for_reply("lobby", after_index=mark)
            assert told.text == TEXTS[NoticeKind.GRANTED]
            assert await say(plane, "lobby", "stranger", "hi", direct=False) == "echo: hi"
            (request,) = await plane.registry.list_access_requests()
            assert request.decided_by == f"chat:{DEV_OWNER}"


async def test_the_two_person_rule_holds_for_a_decision_from_chat(tmp_path: Path) -> None:
    # The chat path decides through the same gateway: under two_approvers the owner's
    # chat approval is the first of two, and a second principal completes it.
    rule = GatewayConfig(two_approvers={"persona"})
    async with open_channel_plane(tmp_path, [], gateway=rule) as plane:
        await plane.chat_approvers.enable(DEV_OWNER, by="owner")
        change_id = await persona_change(plane)
        digest = (await plane.gateway.get(change_id)).change.digest()
        await say(plane, DM, "operator", f"/show {change_id}")
        first = await say(plane, DM, "operator", f"/approve {change_id} {code_of(digest)}")
        assert "needs a second approver" in first
        assert (await plane.gateway.get(change_id)).status is ChangeStatus.PENDING
        (approval,) = await audit_entries(plane, "change.approval")
        assert (approval["approved_by"], approval["via_channel"]) == \
            (f"chat:{DEV_OWNER}", "local")
        # The API owner submitted it, so it may not be the second approver.
        with pytest.raises(Forbidden):
            await plane.gateway.decide(change_id, "approve", API_OWNER)
        done = await plane.gateway.decide(change_id, "approve",
                                          Principal("ada", frozenset({"admin"})))
        assert done.status is ChangeStatus.APPLIED
