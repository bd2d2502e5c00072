"""Every grant a human may approve takes effect: for each kind the gateway accepts,
applying one change moves what the enforcing part of the host reads (the registry
the router and session launcher consult, or the grants the egress and MCP brokers
read). A
kind with no such probe here, and not refused, fails the test: nothing may be
approved into nothing.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from ironclaw.contract.enums import ChangeKind, ChangeStatus
from ironclaw.host.gateway import Grants
from ironclaw.host.gateway.kinds import CHANGE_KINDS
from ironclaw.host.mcp import (
    McpBroker,
    McpCatalogEntry,
    McpConfig,
    McpServerEntry,
    ProcessLauncher,
)
from sandbox_agent.tools.host_requests import REQUESTABLE_KINDS, UNAVAILABLE_KINDS
from tests.support.gateway import OWNER, Harness, open_gateway

Probe = Callable[[Harness], Awaitable[object]]


async def _group_or_none(h: Harness, group: str) -> object:
    try:
        return await h.registry.get_agent_group(group)
    except LookupError:
        return None


async def _persona(h: Harness) -> object:
    return (await h.registry.get_agent_group("demo")).persona


async def _tools(h: Harness) -> object:
    return (await h.registry.get_agent_group("demo")).enabled_tools


async def _chat_policy(h: Harness) -> object:
    return (await h.registry.get_messaging_group(h.messaging_group)).unknown_sender_policy


async def _model(h: Harness) -> object:
    group = await h.registry.get_agent_group("demo")
    return group.provider, group.model


async def _mcp_broker_grant(h: Harness) -> object:
    """What the MCP broker offers the group: whether it serves mcp.sock at all, and the
    allowlist it holds each call to (read through the same Grants as production)."""
    broker = McpBroker(Grants(h.store), ProcessLauncher(), config=McpConfig(servers=(
        McpCatalogEntry(McpServerEntry(name="github", command="mcp-server-github")),)))
    return await broker.granted("demo"), await Grants(h.store).mcp_access("demo")


# kind -> (agent group, payload (or how to make it), what the enforcing side reads)
EFFECTS: dict[ChangeKind, tuple[str, Any, Probe]] = {
    ChangeKind.PERSONA: ("demo", {"soul": "calm and brief"},
                         _persona),
    ChangeKind.ENABLED_TOOLS: ("demo", {"tools": ["fetch"]},
                               _tools),
    ChangeKind.WIRING: ("demo", {"engage": "mention"},
                        lambda h: h.registry.wirings_for(h.messaging_group)),
    ChangeKind.PERMISSIONS: ("demo", {"grant": "admin", "user": "local:bob"},
                             lambda h: h.registry.roles_of("local:bob")),
    ChangeKind.CREATE_AGENT: ("demo", {"name": "Research", "folder": "research"},
                              lambda h: _group_or_none(h, "research")),
    ChangeKind.EGRESS: ("demo", {"hosts": ["api.example.com"]},
                        lambda h: Grants(h.store).egress_hosts("demo")),
    ChangeKind.ACCESS: ("other", {"user": "local:carol", "member_of": ["other"]},
                        lambda h: h.registry.access_level("local:carol", "other")),
    ChangeKind.CHAT_POLICY: ("demo", lambda h: {"messaging_group": h.messaging_group,
                                                "unknown_sender_policy": "request_approval"},
                             _chat_policy),
    ChangeKind.MODEL: ("demo", {"provider": "mock", "model": "mock-large"},
                       _model),
    ChangeKind.MCP_ACCESS: ("demo", {"servers": {"github": ["search_issues"]}},
                            _mcp_broker_grant),
}


def test_every_kind_is_either_enforced_or_refused() -> None:
    refused = set(CHANGE_KINDS.refused())
    assert refused.isdisjoint(EFFECTS), "a refused kind has an effect: stop refusing it"
    assert set(EFFECTS) | refused == set(CHANGE_KINDS), (
        f"no probe proves these kinds take effect: "
        f"{sorted(set(CHANGE_KINDS) - refused - set(EFFECTS))}")


def test_an_agent_may_request_only_kinds_that_take_effect() -> None:
    refused = {k.value for k in CHANGE_KINDS.refused()}
    assert set(UNAVAILABLE_KINDS) == refused
    assert set(REQUESTABLE_KINDS) <= {k.value for k in EFFECTS}


@pytest.mark.parametrize("kind", sorted(EFFECTS), ids=str)
async def test_an_approved_change_moves_what_the_host_enforces(tmp_path: Path,
                                                               kind: ChangeKind) -> None:
    group, payload, probe = EFFECTS[kind]
    async with open_gateway(tmp_path / "host.db") as h:
        before = await probe(h)
        after = payload(h) if callable(payload) else payload
        stored = await h.gateway.submit(kind.value, group, after, requested_by=OWNER)
        assert stored.status is ChangeStatus.PENDING, stored
        decided = await h.gateway.decide(stored.change.id, "approve", OWNER)
        assert decided.status is ChangeStatus.APPLIED
        assert await probe(h) != before


def test_the_architecture_doc_lists_exactly_the_refused_kinds() -> None:
    text = (Path(__file__).resolve().parents[3] / "docs" / "architecture.md").read_text()
    section = text[text.index("The refused kinds:"):]
    section = section[:section.index("\n\n")]
    listed = set(re.findall(r"^- `([a-z_]+)`:", section, re.MULTILINE))
    assert listed == {k.value for k in CHANGE_KINDS.refused()}
