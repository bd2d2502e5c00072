"""A real control plane wired to remote chat platforms, for end-to-end channel tests.

The plane is the production one (``process`` runtime, mock model, the demo agent); only
the platforms are fakes from ``tests/fakes/`` that speak each platform's wire protocol.
Wiring a chat to the demo agent is done through the registry directly: it is test
setup, not the subject (production wiring goes through the gateway).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import attrs
import pytest
import trio

from ironclaw.contract.enums import EngageMode, SessionMode, UnknownSenderPolicy
from ironclaw.host.app import ControlPlane, ControlPlaneHandles
from ironclaw.host.channels.settings import ChannelSettings
from ironclaw.host.config import ControlPlaneConfig
from ironclaw.host.config.devseed import DEMO_GROUP
from ironclaw.host.gateway import GatewayConfig
from ironclaw.host.modelproxy import Credentials
from ironclaw.host.registry import MessagingGroup, Wiring
from tests.support.plane import FAST_BACKOFF, dev_plane_config


@attrs.frozen
class ChatWiring:
    """Connect one platform chat to the demo agent."""

    channel: str
    platform_id: str
    instance: str = ""
    engage_mode: EngageMode = EngageMode.PATTERN  # PATTERN "." answers everything
    pattern: str = "."
    unknown_sender_policy: UnknownSenderPolicy = UnknownSenderPolicy.PUBLIC
    session_mode: SessionMode = SessionMode.SHARED


def plane_config(tmp_path: Path, channels: Sequence[ChannelSettings],
                 gateway: GatewayConfig | None = None) -> ControlPlaneConfig:
    return dev_plane_config(tmp_path / "state", tmp_path / "keys",
                            channel_backoff=FAST_BACKOFF, channels=tuple(channels),
                            gateway=gateway or GatewayConfig())


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
        engage_mode=chat.engage_mode, pattern=chat.pattern, session_mode=chat.session_mode))
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


def assert_secret_absent(secret: str, caplog: pytest.LogCaptureFixture,
                         events: list[object]) -> None:
    """Neither a log record (message, exception text) nor a published event shows
    ``secret``."""
    formatter = logging.Formatter()
    for record in caplog.records:
        text = record.getMessage()
        if record.exc_info:
            text += formatter.formatException(record.exc_info)
        assert secret not in text, f"secret in log record from {record.name}"
    for event in events:
        assert secret not in repr(event), f"secret in event {type(event).__name__}"
