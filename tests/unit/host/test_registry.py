"""The registry on a real SQLCipher host.db, through the store actor."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ironclaw.contract.enums import SessionMode, UnknownSenderPolicy
from ironclaw.host.registry import (
    AccessLevel,
    AccessRequestStatus,
    AgentGroup,
    ContainerStatus,
    NotFound,
    Persona,
    Registry,
    RegistryError,
    Role,
    RoleGrant,
    User,
    Wiring,
    namespace_user,
)
from ironclaw.host.store import StoreError, open_host_store

KEY = secrets.token_bytes(32)


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    async with open_host_store(tmp_path / "host.db", KEY) as store:
        yield Registry(store)


async def _groups(registry: Registry) -> tuple[str, str]:
    await registry.put_agent_group(AgentGroup(id="g1", name="One", folder="one"))
    await registry.put_agent_group(AgentGroup(id="g2", name="Two", folder="two"))
    mg = await registry.ensure_messaging_group("slack", "C1")
    return "g1", mg.id


@pytest.mark.parametrize(("channel", "handle", "expected"), [
    ("slack", "alice", "slack:alice"),
    ("discord", "bob#1234", "discord:bob#1234"),
    ("slack", "other:owner", "slack:other"),
    ("slack", "a:b:c", "slack:a"),
    (" slack ", "  alice ", "slack:alice"),
    ("slack", "", "slack:"),
])
def test_identity_namespacing(channel: str, handle: str, expected: str) -> None:
    assert namespace_user(channel, handle) == expected


async def test_state_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "host.db"
    async with open_host_store(path, KEY) as store:
        reg = Registry(store)
        await reg.put_agent_group(AgentGroup(
            id="g1", name="Helper", folder="helper", provider="anthropic", model="m",
            persona=Persona("I am", "calm", "be brief"), enabled_tools=("read_file",)))
        mg = await reg.ensure_messaging_group("slack", "C1", "work")
        await reg.put_wiring(Wiring(id="w1", messaging_group_id=mg.id, agent_group_id="g1"))
        await reg.put_user(User("slack:alice", "Alice"))
        await reg.grant_role(RoleGrant("slack:alice", Role.ADMIN, "g1"))
        await reg.add_member("slack:bob", "g1")
        session = await reg.resolve_session("g1", mg.id, None, SessionMode.SHARED)
        await reg.set_container_status(session.id, ContainerStatus.RUNNING)
        await reg.revoke_role(RoleGrant("slack:alice", Role.ADMIN, "g1"))
    async with open_host_store(path, KEY) as store:
        reg = Registry(store)
        group = await reg.get_agent_group("g1")
        assert group.persona == Persona("I am", "calm", "be brief")
        assert group.enabled_tools == ("read_file",)
        assert [w.id for w in await reg.wirings_for(mg.id)] == ["w1"]
        assert (await reg.get_user("slack:alice")).display_name == "Alice"
        assert await reg.access_level("slack:alice", "g1") is AccessLevel.NONE  # revoke kept
        assert await reg.access_level("slack:bob", "g1") is AccessLevel.MEMBER
        restored = await reg.get_session(session.id)
        assert restored.container_status is ContainerStatus.RUNNING
    with pytest.raises(StoreError):
        async with open_host_store(path, secrets.token_bytes(32)):
            pass
    assert b"Helper" not in path.read_bytes()


async def test_access_precedence(registry: Registry) -> None:
    await _groups(registry)
    await registry.grant_role(RoleGrant("x:owner", Role.OWNER))
    await registry.grant_role(RoleGrant("x:gadmin", Role.ADMIN))
    await registry.grant_role(RoleGrant("x:sadmin", Role.ADMIN, "g1"))
    await registry.grant_role(RoleGrant("x:other", Role.ADMIN, "g2"))
    await registry.add_member("x:member", "g1")
    await registry.add_member("x:gadmin", "g1")  # a higher role wins over membership
    levels = {u: await registry.access_level(u, "g1") for u in (
        "x:owner", "x:gadmin", "x:sadmin", "x:other", "x:member", "x:nobody")}
    assert levels == {"x:owner": AccessLevel.OWNER, "x:gadmin": AccessLevel.GLOBAL_ADMIN,
                      "x:sadmin": AccessLevel.SCOPED_ADMIN, "x:other": AccessLevel.NONE,
                      "x:member": AccessLevel.MEMBER, "x:nobody": AccessLevel.NONE}
    assert await registry.access_level("x:owner", "never-seen") is AccessLevel.OWNER
    # Granting twice and adding twice are no-ops; revoke and remove act at once.
    await registry.grant_role(RoleGrant("x:sadmin", Role.ADMIN, "g1"))
    assert len(await registry.roles_of("x:sadmin")) == 1
    await registry.revoke_role(RoleGrant("x:sadmin", Role.ADMIN, "g1"))
    await registry.remove_member("x:member", "g1")
    assert await registry.access_level("x:sadmin", "g1") is AccessLevel.NONE
    assert await registry.access_level("x:member", "g1") is AccessLevel.NONE
    with pytest.raises(RegistryError):
        await registry.grant_role(RoleGrant("x:a", Role.OWNER, "g1"))


async def test_session_resolution_by_mode(registry: Registry) -> None:
    g1, m1 = await _groups(registry)
    m2 = (await registry.ensure_messaging_group("slack", "C2")).id
    shared = SessionMode.SHARED
    a = await registry.resolve_session(g1, m1, "t1", shared)
    assert (await registry.resolve_session(g1, m1, "t2", shared)).id == a.id
    per = SessionMode.PER_THREAD
    t1 = await registry.resolve_session(g1, m1, "t1", per)
    t2 = await registry.resolve_session(g1, m1, "t2", per)
    assert t1.id != t2.id and t1.thread_id == "t1"
    assert (await registry.resolve_session(g1, m1, "t1", per)).id == t1.id
    ags = SessionMode.AGENT_SHARED
    x = await registry.resolve_session(g1, m1, "t1", ags)
    assert (await registry.resolve_session(g1, m2, "t2", ags)).id == x.id
    assert (await registry.resolve_session("g2", m1, "t1", ags)).id != x.id
    assert a.thread_id is None and x.thread_id is None  # thread kept only per-thread


async def test_find_never_creates(registry: Registry) -> None:
    g1, m1 = await _groups(registry)
    assert await registry.find_session(g1, m1, None, SessionMode.SHARED) is None
    assert await registry.list_sessions() == []
    made = await registry.resolve_session(g1, m1, None, SessionMode.SHARED)
    assert made.container_status is ContainerStatus.NEW and made.id.startswith("ses_")
    assert (await registry.find_session(g1, m1, None, SessionMode.SHARED)) == made
    with pytest.raises(RegistryError):
        await registry.resolve_session(g1, "", None, SessionMode.SHARED)


async def test_messaging_groups_get_or_create(registry: Registry) -> None:
    a = await registry.ensure_messaging_group("slack", "C1")
    assert a.instance == "slack" and a.unknown_sender_policy is UnknownSenderPolicy.STRICT
    assert (await registry.ensure_messaging_group("slack", "C1", "slack")).id == a.id
    other = await registry.ensure_messaging_group("slack", "C1", "work")
    assert other.id != a.id and a.id.startswith("mg_")


async def test_wiring_order_and_references(registry: Registry) -> None:
    _, mg = await _groups(registry)
    for wid, ag, prio in (("w-b", "g1", 1), ("w-a", "g2", 1), ("w-c", "g2", 5)):
        await registry.put_wiring(Wiring(id=wid, messaging_group_id=mg, agent_group_id=ag,
                                         priority=prio))
    assert [w.id for w in await registry.wirings_for(mg)] == ["w-c", "w-a", "w-b"]
    with pytest.raises(NotFound):
        await registry.put_wiring(Wiring(id="w-x", messaging_group_id=mg,
                                         agent_group_id="missing"))


async def test_access_requests_are_idempotent_and_grant_membership(registry: Registry) -> None:
    g1, mg = await _groups(registry)
    await registry.put_wiring(Wiring(id="w1", messaging_group_id=mg, agent_group_id=g1))
    first, new = await registry.request_access(mg, "slack:eve")
    again, new_again = await registry.request_access(mg, "slack:eve")
    assert new and not new_again and again.id == first.id
    granted = await registry.decide_access_request(first.id, grant=True,
                                                   decided_by="slack:owner")
    assert granted.status is AccessRequestStatus.GRANTED
    assert await registry.access_level("slack:eve", g1) is AccessLevel.MEMBER
    with pytest.raises(RegistryError):
        await registry.decide_access_request(first.id, grant=False, decided_by="x")
    assert await registry.list_access_requests(AccessRequestStatus.PENDING) == []


@pytest.mark.parametrize("bad", [
    {"id": "../x", "name": "n", "folder": "f"},
    {"id": "g", "name": "", "folder": "f"},
    {"id": "g", "name": "n", "folder": "../etc"},
    {"id": "g", "name": "n", "folder": "f", "enabled_tools": ("rm -rf",)},
])
def test_agent_group_validation(bad: dict[str, object]) -> None:
    with pytest.raises(RegistryError):
        AgentGroup(**bad)  # type: ignore[arg-type]
