"""The ``chat_policy`` and ``model`` kinds: what each refuses, and what it changes."""

from __future__ import annotations

from pathlib import Path

import attrs

from ironclaw.contract.enums import ChangeStatus, UnknownSenderPolicy
from ironclaw.host.modelproxy import Credentials
from ironclaw.host.modelproxy.credentials import Secret
from ironclaw.host.registry import Wiring
from tests.support.gateway import CONFIG, OWNER, open_gateway


async def test_a_chat_policy_change_sets_the_policy_of_a_chat_wired_to_the_group(
        tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "host.db") as h:
        after = {"messaging_group": h.messaging_group, "unknown_sender_policy": "public"}
        stored = await h.gateway.submit("chat_policy", "demo", after, requested_by=OWNER)
        assert stored.status is ChangeStatus.PENDING
        assert [d.render() for d in stored.change.diff()] == [
            '~ /unknown_sender_policy: "strict" -> "public"']
        await h.gateway.decide(stored.change.id, "approve", OWNER)
        chat = await h.registry.get_messaging_group(h.messaging_group)
        assert chat.unknown_sender_policy is UnknownSenderPolicy.PUBLIC
        assert h.respawner.calls == []  # the router reads it on the next message


async def test_a_chat_policy_change_is_refused_for_a_chat_of_another_group(
        tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "host.db") as h:
        elsewhere = await h.registry.ensure_messaging_group("local", "chat2")
        await h.registry.put_wiring(Wiring(id="w9", messaging_group_id=elsewhere.id,
                                           agent_group_id="other"))
        for group, after in [
                ("demo", {"messaging_group": elsewhere.id, "unknown_sender_policy": "public"}),
                ("demo", {"messaging_group": "mg_none", "unknown_sender_policy": "public"}),
                ("demo", {"messaging_group": h.messaging_group,
                          "unknown_sender_policy": "anyone"}),
                ("demo", {"messaging_group": h.messaging_group})]:
            stored = await h.gateway.submit("chat_policy", group, after, requested_by=OWNER)
            assert stored.status is ChangeStatus.REJECTED, after
        chat = await h.registry.get_messaging_group(elsewhere.id)
        assert chat.unknown_sender_policy is UnknownSenderPolicy.STRICT


async def test_a_model_change_moves_the_group_and_respawns_its_sandboxes(
        tmp_path: Path) -> None:
    config = attrs.evolve(CONFIG, providers=frozenset({"mock", "anthropic"}))
    async with open_gateway(tmp_path / "host.db", config=config) as h:
        stored = await h.gateway.submit("model", "demo", {"provider": "anthropic",
                                                          "model": "claude-sonnet-4"},
                                        requested_by=OWNER)
        assert stored.status is ChangeStatus.PENDING
        assert [d.render() for d in stored.change.diff()] == [
            '~ /model: "mock" -> "claude-sonnet-4"', '~ /provider: "mock" -> "anthropic"']
        await h.gateway.decide(stored.change.id, "approve", OWNER)
        group = await h.registry.get_agent_group("demo")
        assert (group.provider, group.model) == ("anthropic", "claude-sonnet-4")
        assert [g for g, _ in h.respawner.calls] == ["demo"]


async def test_a_model_change_to_a_provider_without_credentials_is_refused(
        tmp_path: Path) -> None:
    config = attrs.evolve(CONFIG, providers=frozenset({"mock"}))
    async with open_gateway(tmp_path / "host.db", config=config) as h:
        for after in [{"provider": "openai", "model": "gpt-4o"}, {"provider": "Bad Name"},
                      {"model": "two words"}, {}, {"provider": "mock", "temperature": 1}]:
            stored = await h.gateway.submit("model", "demo", after, requested_by=OWNER)
            assert stored.status is ChangeStatus.REJECTED, after
        refused = await h.gateway.submit("model", "demo", {"provider": "openai"},
                                         requested_by=OWNER)
        assert h.audit.find("change.verdict", refused.change.id)[0]["verifier"] == "model"
        assert (await h.registry.get_agent_group("demo")).provider == "mock"


def test_the_usable_providers_are_those_the_host_holds_credentials_for() -> None:
    assert Credentials(mock_model=False).usable_providers() == frozenset()
    assert Credentials(anthropic=Secret("k"), local_url="http://127.0.0.1:8080"
                       ).usable_providers() == {"anthropic", "local", "mock"}
    assert Credentials(openai=Secret("k"), openrouter=Secret("k"), mock_model=False
                       ).usable_providers() == {"openai", "openrouter"}
