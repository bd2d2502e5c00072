"""What --dev starts with: a demo agent with a small tool set on the mock model (or the
provider and model ``--provider`` and ``--model`` name), reachable from the local
channel. Seeding is
idempotent, so restarting in dev mode keeps what was there; only a provider or model
named explicitly replaces the demo agent's."""

from __future__ import annotations

from typing import Any, cast

import attrs

from ironclaw.contract.enums import EngageMode, UnknownSenderPolicy
from ironclaw.host.registry import (
    AgentGroup,
    MessagingGroup,
    Persona,
    Registry,
    Role,
    RoleGrant,
    User,
    Wiring,
)

DEMO_GROUP = "demo"
# A small set, so that a capability asked for through the gateway (read_file, say) is
# one the demo really lacks; request_capability_change and ask_user_question are
# always there.
DEMO_TOOLS = ("send_message", "list_dir", "read_persona", "schedule_task", "list_tasks",
              "cancel_task")
DEMO_CONVERSATION = "demo"
DEV_OWNER = "local:operator"


async def seed_dev(registry: Registry, *, provider: str = "mock",
                   model: str = "mock") -> MessagingGroup:
    groups = {g.id: g for g in await registry.list_agent_groups()}
    demo = groups.get(DEMO_GROUP)
    if demo is None:
        await registry.put_agent_group(AgentGroup(
            id=DEMO_GROUP, name="Demo", folder="demo", provider=provider, model=model,
            enabled_tools=cast(Any, DEMO_TOOLS),
            persona=Persona(identity="You are Demo, IronClaw's demonstration agent.",
                            soul="Helpful, brief, honest about what you cannot do.",
                            instructions="Answer the user. Use tools when asked.")))
    elif (provider, model) != ("mock", "mock") and (demo.provider, demo.model) != (
            provider, model):
        await registry.put_agent_group(attrs.evolve(demo, provider=provider, model=model))
    await registry.put_user(User(DEV_OWNER, "Operator"))
    await registry.grant_role(RoleGrant(DEV_OWNER, Role.OWNER))
    group = await registry.ensure_messaging_group("local", DEMO_CONVERSATION)
    if group.unknown_sender_policy is not UnknownSenderPolicy.PUBLIC:
        group = await registry.put_messaging_group(MessagingGroup(
            id=group.id, channel=group.channel, platform_id=group.platform_id,
            instance=group.instance, unknown_sender_policy=UnknownSenderPolicy.PUBLIC,
            name="Demo conversation", created_at=group.created_at))
    if not await registry.wirings_for(group.id):
        await registry.put_wiring(Wiring(id="demo-local", messaging_group_id=group.id,
                                         agent_group_id=DEMO_GROUP,
                                         engage_mode=EngageMode.PATTERN, pattern="."))
    return group
