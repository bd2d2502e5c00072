"""Chat approvals only where the platform authenticates the sender: an IRC nick or a
webhook's ``sender`` field is anyone's to claim, so such an owner can neither be opted
in, nor keep an opt-in stored before that was refused, nor decide anything from chat.
And the table in docs/channels.md is the one the code keeps."""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from ironclaw.host.channels.adapters import ADAPTER_TYPES
from ironclaw.host.channels.base import DeliveryReceipt, InboundEvent, OutboundDelivery
from ironclaw.host.channels.trust import SENDER_AUTHENTICATION, authenticates_senders
from ironclaw.host.chatops import ChatApprovers, ChatCommands, UnauthenticatedChannel
from ironclaw.host.chatops import commands as cmd
from ironclaw.host.chatops import store as q
from ironclaw.host.registry import Registry, Role, RoleGrant
from ironclaw.host.store import HostStore, open_host_store

DOCS = Path(__file__).resolve().parents[3] / "docs" / "channels.md"
CLAIMABLE = ("irc:alice", "webhook:bob")


class Audit:
    def __init__(self) -> None:
        self.entries: list[tuple[str, dict[str, Any]]] = []

    async def append(self, kind: str, /, **fields: Any) -> int:
        await trio.lowlevel.checkpoint()
        self.entries.append((kind, fields))
        return len(self.entries)


class Replies:
    def __init__(self) -> None:
        self.sent: list[OutboundDelivery] = []
        self.first = trio.Event()

    async def deliver(self, delivery: OutboundDelivery) -> DeliveryReceipt:
        await trio.lowlevel.checkpoint()
        self.sent.append(delivery)
        self.first.set()
        return DeliveryReceipt(delivery.outbound_id, "m1", False)


class NoGateway:
    """Nothing from an unauthenticated channel may get this far."""

    async def pending(self, limit: int = 1000) -> list[Any]:
        raise AssertionError("the gateway was consulted")

    async def get(self, change_id: str) -> Any:
        raise AssertionError("the gateway was consulted")

    async def decide(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the gateway was consulted")


@attrs.define
class World:
    store: HostStore
    approvers: ChatApprovers
    audit: Audit


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with open_host_store(tmp_path / "host.db", secrets.token_bytes(32)) as store:
        registry = Registry(store)
        for user in (*CLAIMABLE, "telegram:42"):
            await registry.grant_role(RoleGrant(user, Role.OWNER))
        audit = Audit()
        yield World(store, ChatApprovers(store, registry, audit), audit)  # type: ignore[arg-type]


async def test_an_owner_on_a_channel_that_authenticates_nobody_cannot_be_opted_in(
        world: World) -> None:
    for user in CLAIMABLE:
        with pytest.raises(UnauthenticatedChannel) as refused:
            await world.approvers.enable(user, by="owner")
        # The error says why, and where chat approvals do work.
        assert "does not authenticate its senders" in str(refused.value)
        assert "telegram" in str(refused.value)
    assert await world.approvers.list() == []
    assert await world.approvers.enable("telegram:42", by="owner")
    assert [kind for kind, _ in world.audit.entries] == ["chat.approvals_enabled"]


async def test_a_stored_opt_in_is_dropped_at_start_and_commands_are_refused(
        world: World) -> None:
    # Opt-ins written before the refusal existed (the row, as the old code wrote it).
    for user in CLAIMABLE:
        await world.store.transaction(q.enable_approver, user, "owner", 1)
    await world.approvers.enable("telegram:42", by="owner")
    replies = Replies()
    commands = ChatCommands(approvers=world.approvers, gateway=NoGateway(),  # type: ignore[arg-type]
                            channels=replies, audit=world.audit)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(commands.run)
        assert [a.user_id for a in await world.approvers.list()] == ["telegram:42"]
        dropped = [f for kind, f in world.audit.entries if kind == "chat.approvals_disabled"]
        assert sorted(f["user_id"] for f in dropped) == sorted(CLAIMABLE)
        # Even with the opt-in put back behind its back, a claimed nick decides nothing.
        await world.store.transaction(q.enable_approver, "irc:alice", "owner", 1)
        event = InboundEvent(channel="irc", instance="", platform_id="alice",
                             sender_handle="alice", text="/approve chg_x 12345678",
                             direct=True)
        assert await commands.intercept(event)
        with trio.fail_after(10):
            await replies.first.wait()
        nursery.cancel_scope.cancel()
    assert [r.text for r in replies.sent] == [cmd.REFUSED_UNAUTHENTICATED]
    (refusal,) = [f for kind, f in world.audit.entries if kind == "chat.command_refused"]
    assert (refusal["user_id"], refusal["reason"]) == ("irc:alice", "unauthenticated_channel")


def test_every_channel_is_classified_and_the_docs_table_matches() -> None:
    assert set(SENDER_AUTHENTICATION) == {"local", *ADAPTER_TYPES}
    assert not authenticates_senders("irc") and not authenticates_senders("webhook")
    assert not authenticates_senders("fax")  # unknown: vouches for nobody
    section = DOCS.read_text().split("## Who the platform vouches for", 1)[1]
    rows = dict(re.findall(r"^\| `(\w+)` \| (yes|no) \|", section, re.MULTILINE))
    assert rows == {name: "yes" if trust.authenticated else "no"
                    for name, trust in SENDER_AUTHENTICATION.items()}
