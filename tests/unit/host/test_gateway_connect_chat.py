"""The ``connect_chat`` kind: one change that creates, wires, grants and sets a policy,
shown as one diff, and refused with a clear reason when it cannot apply."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from ironclaw.contract.enums import ChangeStatus, EngageMode, UnknownSenderPolicy
from ironclaw.host.gateway.kinds.connect_chat import parse_connect_chat, wiring_id
from ironclaw.host.gateway.payloads import PayloadError
from ironclaw.host.registry import AccessLevel, Wiring
from tests.support.gateway import CONFIG, OWNER, open_gateway

CHANNELS = attrs.evolve(CONFIG, channels=frozenset({("local", "local"),
                                                    ("webhook", "webhook")}))
CONNECT = {"channel": "webhook", "chat": "ops", "members": ["alice", "webhook:bob"],
           "unknown_sender_policy": "request_approval"}


def test_the_payload_defaults_to_every_message_and_namespaces_members() -> None:
    parsed = parse_connect_chat(CONNECT)
    assert (parsed.instance, parsed.engage, parsed.pattern) == (
        "webhook", EngageMode.PATTERN, ".")
    assert parsed.members == ("webhook:alice", "webhook:bob")
    assert parsed.policy is UnknownSenderPolicy.REQUEST_APPROVAL
    assert parse_connect_chat({"channel": "irc", "chat": "#a", "engage": "mention-sticky"}
                              ).engage is EngageMode.MENTION_STICKY


@pytest.mark.parametrize(("payload", "error"), [
    ({"channel": "webhook", "chat": "ops", "engage": "pattern"}, "needs a pattern"),
    ({"channel": "webhook", "chat": "ops", "engage": "mention", "pattern": "x"},
     "not mention"),
    ({"channel": "webhook", "chat": "ops", "pattern": "(unclosed"}, "not a valid RE2"),
    ({"channel": "webhook", "chat": "ops", "engage": "sometimes"}, "engage is one of"),
    ({"channel": "webhook", "chat": "ops", "members": ["irc:mallory"]}, "not a user of"),
    ({"channel": "webhook", "chat": "ops", "members": ["a", "a"]}, "twice"),
    ({"channel": "webhook", "chat": "ops", "unknown_sender_policy": "open"}, "one of"),
    ({"channel": "webhook"}, "missing 'chat'"),
    ({"channel": "webhook", "chat": "  "}, "empty"),
    ({"channel": "web hook", "chat": "ops"}, "channel: invalid"),
    ({"channel": "webhook", "chat": "ops", "wiring": "w1"}, "unknown key"),
])
def test_a_malformed_connect_says_what_is_wrong(payload: dict[str, object],
                                                error: str) -> None:
    with pytest.raises(PayloadError, match=error):
        parse_connect_chat(payload)


async def test_a_chat_that_never_wrote_is_connected_in_one_approval(tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "host.db", config=CHANNELS) as h:
        stored = await h.gateway.submit("connect_chat", "demo", CONNECT, requested_by=OWNER)
        assert stored.status is ChangeStatus.PENDING
        assert [d.render() for d in stored.change.diff()] == [
            '+ /channel: "webhook"', '+ /chat: "ops"',
            '+ /members: ["alice","webhook:bob"]',
            '+ /unknown_sender_policy: "request_approval"']
        assert await h.registry.find_messaging_group("webhook", "ops") is None
        decided = await h.gateway.decide(stored.change.id, "approve", OWNER)
        assert decided.status is ChangeStatus.APPLIED
        chat = await h.registry.find_messaging_group("webhook", "ops")
        assert chat is not None
        assert chat.unknown_sender_policy is UnknownSenderPolicy.REQUEST_APPROVAL
        (wiring,) = await h.registry.wirings_for(chat.id)
        assert (wiring.id, wiring.agent_group_id, wiring.pattern) == (
            wiring_id(chat.id, "demo"), "demo", ".")
        for user in ("webhook:alice", "webhook:bob"):
            assert await h.registry.access_level(user, "demo") is AccessLevel.MEMBER
        assert await h.registry.access_level("webhook:carol", "demo") is AccessLevel.NONE
        # The router's first message from the chat finds the connected group.
        assert (await h.registry.ensure_messaging_group("webhook", "ops")).id == chat.id


async def test_connecting_again_updates_the_one_wiring_and_shows_what_changes(
        tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "host.db", config=CHANNELS) as h:
        first = await h.gateway.submit("connect_chat", "demo", CONNECT, requested_by=OWNER)
        await h.gateway.decide(first.change.id, "approve", OWNER)
        again = {**CONNECT, "engage": "mention", "members": ["alice", "carol"]}
        stored = await h.gateway.submit("connect_chat", "demo", again, requested_by=OWNER)
        assert [d.render() for d in stored.change.diff()] == [
            '~ /engage: "pattern" -> "mention"', '+ /members/1: "carol"']
        await h.gateway.decide(stored.change.id, "approve", OWNER)
        chat = await h.registry.find_messaging_group("webhook", "ops")
        assert chat is not None
        (wiring,) = await h.registry.wirings_for(chat.id)
        assert wiring.engage_mode is EngageMode.MENTION


async def test_a_connect_the_host_cannot_honour_is_refused(tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "host.db", config=CHANNELS) as h:
        shared = await h.registry.ensure_messaging_group("webhook", "shared")
        await h.registry.put_wiring(Wiring(id="w9", messaging_group_id=shared.id,
                                           agent_group_id="other"))
        for group, payload, why in [
                ("demo", {**CONNECT, "channel": "slack", "members": ["al"]},
                 "unknown channel 'slack'"),
                ("demo", {**CONNECT, "instance": "ops"}, "unknown channel 'webhook:ops'"),
                ("nobody", CONNECT, "no agent group"),
                ("demo", {**CONNECT, "chat": "shared"}, "also wired to another"),
                ("demo", {**CONNECT, "pattern": "[z-a]"}, "not a valid RE2")]:
            stored = await h.gateway.submit("connect_chat", group, payload,
                                            requested_by=OWNER)
            assert stored.status is ChangeStatus.REJECTED, payload
            assert stored.decision is not None
            assert why in (stored.decision.reason or ""), stored.decision.reason
        assert await h.registry.find_messaging_group("slack", "ops") is None
        assert (await h.registry.wirings_for(shared.id))[0].agent_group_id == "other"
