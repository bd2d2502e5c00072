"""A real control plane wired to remote chat platforms, for end-to-end channel tests.

The plane is the production one (``process`` runtime, mock model, the demo agent); only
the platforms are fakes from ``tests/fakes/`` that speak each platform's wire protocol.
Wiring a chat to the demo agent is done through the registry directly: it is test
setup, not the subject (production wiring goes through the gateway).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import attrs
import trio

from ironclaw.contract.enums import EngageMode, UnknownSenderPolicy
from ironclaw.host.app import ControlPlane, ControlPlaneHandles
from ironclaw.host.channels.settings import ChannelSettings
from ironclaw.host.config import ControlPlaneConfig
from ironclaw.host.config.devseed import DEMO_GROUP
from ironclaw.host.gateway import GatewayConfig
from ironclaw.host.modelproxy import Credentials
from ironclaw.host.registry import MessagingGroup, Wiring
from ironclaw.runtime import BackoffPolicy

# Reconnects are the subject of several tests: retry quickly and never park.
FAST_BACKOFF = BackoffPolicy(initial=0.05, cap=0.5, max_failures=None, healthy_after=0.5)


@attrs.frozen
class ChatWiring:
    """Connect one platform chat to the demo agent."""

    channel: str
    platform_id: str
    instance: str = ""
    engage_mode: EngageMode = EngageMode.PATTERN  # PATTERN "." answers everything
    pattern: str = "."
    unknown_sender_policy: UnknownSenderPolicy = UnknownSenderPolicy.PUBLIC


def plane_config(tmp_path: Path, channels: Sequence[ChannelSettings],
                 gateway: GatewayConfig | None = None) -> ControlPlaneConfig:
    return ControlPlaneConfig(
        state_dir=tmp_path / "state", dev=True, runtime="process", key_dir=tmp_path / "keys",
        safety_poll_s=0.5, heartbeat_interval_s=0.5, sweep_interval_s=0.2,
        sandbox_backoff=FAST_BACKOFF, channel_backoff=FAST_BACKOFF,
        channels=tuple(channels), gateway=gateway or GatewayConfig())


async def wire(plane: ControlPlaneHandles, chat: ChatWiring) -> MessagingGroup:
    group = await plane.registry.ensure_messaging_group(chat.channel, chat.platform_id,
                                                        chat.instance)
    group = await plane.registry.put_messaging_group(attrs.evolve(
        group, unknown_sender_policy=chat.unknown_sender_policy))
    # Deterministic, so wiring again after a restart replaces instead of adding.
    digest = hashlib.sha256(f"{chat.instance}\0{chat.platform_id}".encode()).hexdigest()
    wiring_id = f"w-{chat.channel}-{digest[:12]}"
    await plane.registry.put_wiring(Wiring(
        id=wiring_id, messaging_group_id=group.id, agent_group_id=DEMO_GROUP,
        engage_mode=chat.engage_mode, pattern=chat.pattern))
    return group


@contextlib.asynccontextmanager
async def open_channel_plane(tmp_path: Path, channels: Sequence[ChannelSettings],
                             wirings: Sequence[ChatWiring] = (), *,
                             gateway: GatewayConfig | None = None
                             ) -> AsyncIterator[ControlPlaneHandles]:
    """Start the plane with ``channels`` configured, wire ``wirings``, yield, stop.

    Reuse ``tmp_path`` across two calls to test a restart: the state directory (and
    with it every cursor and seen id) survives.
    """
    async with trio.open_nursery() as nursery:
        handles: ControlPlaneHandles = await nursery.start(
            ControlPlane(plane_config(tmp_path, channels, gateway),
                         credentials=Credentials()).run)
        for chat in wirings:
            await wire(handles, chat)
        yield handles
        nursery.cancel_scope.cancel()
