"""``/v1/chat-approvals`` over real HTTP: only an owner principal turns chat approvals
on or off, only for a registry owner, and every change is audited."""

from __future__ import annotations

from typing import Any

from ironclaw.host.config.devseed import DEV_OWNER
from ironclaw.host.registry import Role, RoleGrant
from tests.support.api import Api, default_settings, running_api  # noqa: F401

ROUTE = "/v1/chat-approvals"


async def test_only_an_owner_principal_may_turn_chat_approvals_on_or_off(api: Api) -> None:
    body = {"user_id": DEV_OWNER, "enabled": True}
    for who in ("viewer", "approver", "admin"):
        refused = await api.post(ROUTE, body, who=who)
        assert refused.status_code == 403, who
        assert refused.json()["error"] == "forbidden"
    unauthenticated = await api.client.post(api.url + ROUTE, json=body)
    assert unauthenticated.status_code == 401
    assert (await api.get(ROUTE)).json() == {"approvers": []}

    enabled = await api.post(ROUTE, body)
    assert enabled.status_code == 200
    assert enabled.json() == {"user_id": DEV_OWNER, "enabled": True, "changed": True}
    assert (await api.post(ROUTE, body)).json()["changed"] is False
    (listed,) = (await api.get(ROUTE, who="viewer")).json()["approvers"]
    assert (listed["user_id"], listed["enabled_by"], listed["owner"]) == \
        (DEV_OWNER, "owner", True)

    disabled = await api.post(ROUTE, {"user_id": DEV_OWNER, "enabled": False})
    assert disabled.json() == {"user_id": DEV_OWNER, "enabled": False, "changed": True}
    assert (await api.get(ROUTE)).json() == {"approvers": []}

    kinds = [(e["kind"], e["fields"]) for e in
             (await api.get("/v1/audit", params={"limit": 50})).json()["entries"]
             if e["kind"].startswith("chat.")]
    assert kinds == [("chat.approvals_enabled", {"user_id": DEV_OWNER, "by": "owner"}),
                     ("chat.approvals_disabled", {"user_id": DEV_OWNER, "by": "owner"})]


async def test_chat_approvals_are_for_registry_owners_only(api: Api) -> None:
    refused = await api.post(ROUTE, {"user_id": "telegram:12345", "enabled": True})
    assert refused.status_code == 422
    assert "not an owner" in refused.json()["detail"]
    # Turning it off for anyone is harmless, and changes nothing here.
    off = await api.post(ROUTE, {"user_id": "telegram:12345", "enabled": False})
    assert off.json() == {"user_id": "telegram:12345", "enabled": False, "changed": False}
    for bad in ({"user_id": "no-colon", "enabled": True},
                {"user_id": "Telegram:1", "enabled": True},
                {"user_id": DEV_OWNER},
                {"user_id": DEV_OWNER, "enabled": "yes"},
                {"user_id": DEV_OWNER, "enabled": True, "extra": 1}):
        assert (await api.post(ROUTE, bad)).status_code == 400, bad
    assert (await api.get(ROUTE)).json() == {"approvers": []}


async def test_ironctl_turns_chat_approvals_on_and_off(api: Api) -> None:
    from tests.support.ironctl import ironctl

    def run(*argv: str, who: str = "owner") -> Any:
        return ironctl(None, "--addr", api.url, "--timeout", "30", *argv,
                       token=api.tokens[who])

    result = await run("owners", "chat-approvals", "enable", DEV_OWNER)
    assert result.code == 0, result.err
    assert result.out == f"chat approvals are now on for {DEV_OWNER}\n"
    assert "docs/threat-model.md" in result.err
    listed = await run("owners", "chat-approvals", "list")
    assert DEV_OWNER in listed.out and "yes" in listed.out
    assert (await run("owners", "chat-approvals", "list", "--json")).json() == \
        (await api.get(ROUTE)).json()
    refused = await run("owners", "chat-approvals", "disable", DEV_OWNER, who="admin")
    assert refused.code == 3 and "only an owner" in refused.err
    stranger = await run("owners", "chat-approvals", "enable", "telegram:1")
    assert stranger.code == 1 and "not an owner" in stranger.err
    result = await run("owners", "chat-approvals", "disable", DEV_OWNER)
    assert result.out == f"chat approvals are now off for {DEV_OWNER}\n"
    assert "(chat approvals are off for every owner)" in \
        (await run("owners", "chat-approvals", "list")).out


async def test_chat_approvals_are_refused_where_nobody_authenticates_the_sender(
        api: Api) -> None:
    for user in ("irc:alice", "webhook:bob"):
        await api.handles.registry.grant_role(RoleGrant(user, Role.OWNER))
        refused = await api.post(ROUTE, {"user_id": user, "enabled": True})
        assert refused.status_code == 422, user
        assert "does not authenticate its senders" in refused.json()["detail"]
    assert (await api.get(ROUTE)).json() == {"approvers": []}


async def test_a_chat_command_is_posted_only_under_the_posters_own_name(api: Api) -> None:
    # An admin may post as any local sender, but not a command as the local owner:
    # that would decide a change as someone else (and pass a two-person rule alone).
    route = "/v1/channels/local/messages"
    body = {"agent_group": "demo", "sender": "operator", "text": "/pending"}
    refused = await api.post(route, body, who="admin")
    assert refused.status_code == 403 and "own name" in refused.json()["detail"]
    assert (await api.post(route, {**body, "text": "hello"}, who="admin")).status_code == 202
    own = await api.post(route, {**body, "sender": "admin"}, who="admin")
    assert own.status_code == 202
