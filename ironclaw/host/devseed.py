"""What --dev starts with: a demo agent on the mock model, reachable from the local
channel. Seeding is idempotent, so restarting in dev mode keeps what was there."""

from __future__ import annotations

from ironclaw.contract.enums import EngageMode, UnknownSenderPolicy

from .registry import (
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
DEMO_CONVERSATION = "demo"
DEV_OWNER = "local:operator"


async def seed_dev(registry: Registry) -> MessagingGroup:
    groups = {g.id for g in await registry.list_agent_groups()}
    if DEMO_GROUP not in groups:
        await registry.put_agent_group(AgentGroup(
            id=DEMO_GROUP, name="Demo", folder="demo", provider="mock", model="mock",
            persona=Persona(identity="You are Demo, IronClaw's demonstration agent.",
                            soul="Helpful, brief, honest about what you cannot do.",
                            instructions="Answer the user. Use tools when asked.")))
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
