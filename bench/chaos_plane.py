"""The control plane the chaos suite kills: ``python -m bench.chaos_plane SETUP.json``.

A production control plane (dev mode: mock model, demo agent) in its own process, with
the webhook channel listening on loopback and replying to the harness's receiver, and
the chaos chats wired to the demo agent. Prints ``ready`` once serving. SIGTERM or
SIGINT stops it cleanly (sandboxes stopped and reaped); SIGKILL is the point.

The setup file holds ``state``, ``keys``, ``runtime``, ``listen``, ``url``, ``chats``,
``image_cache`` and the two webhook secrets (a file, not arguments: secrets do not
belong in a process list).
"""

from __future__ import annotations

import hashlib
import json
import signal
import sys
from pathlib import Path
from typing import Any

import attrs
import trio

from ironclaw.contract.enums import EngageMode, UnknownSenderPolicy
from ironclaw.host.app import ControlPlane, ControlPlaneHandles
from ironclaw.host.channels.settings import ChannelSettings
from ironclaw.host.config import ControlPlaneConfig
from ironclaw.host.config.devseed import DEMO_GROUP
from ironclaw.host.modelproxy import Credentials, ProxyLimits
from ironclaw.host.registry import Wiring
from ironclaw.runtime import BackoffPolicy

FAST = BackoffPolicy(initial=0.05, cap=0.5, max_failures=None, healthy_after=0.5)
# The per-session model rate cap guards a provider budget; a backlog would hit it here.
LIFTED = ProxyLimits(rate=100_000.0, burst=100_000)
# How quickly the sweeper calls a silent agent stuck (and how long it then leaves the
# session alone: a restarted sandbox needs that long to beat again on a loaded host),
# and prunes finished inbound rows.
STUCK_AFTER_S = 10.0
STUCK_COOLDOWN_S = 30.0
INBOUND_RETENTION_S = 1.0


def plane_config(setup: dict[str, Any]) -> ControlPlaneConfig:
    webhook = ChannelSettings("webhook", "", {"listen": setup["listen"], "url": setup["url"],
                                             "accept_timeout": 5.0},
                              environ={"IRONCLAW_WEBHOOK_SECRET": setup["secret"],
                                       "IRONCLAW_WEBHOOK_OUTBOUND_SECRET":
                                           setup["outbound_secret"]})
    return ControlPlaneConfig(
        state_dir=Path(setup["state"]), dev=True, runtime=setup["runtime"],
        key_dir=Path(setup["keys"]), idle_timeout_s=3600, safety_poll_s=0.3,
        heartbeat_interval_s=0.5, sweep_interval_s=0.3, stuck_heartbeat_s=STUCK_AFTER_S,
        stuck_stop_cooldown_s=STUCK_COOLDOWN_S, inbound_retention_s=INBOUND_RETENTION_S,
        sandbox_backoff=FAST, channel_backoff=FAST, model_limits=LIFTED,
        image_cache_dir=Path(setup["image_cache"]) if setup.get("image_cache") else None,
        channels=(webhook,))


async def wire(plane: ControlPlaneHandles, chat: str) -> None:
    """Test setup, not the subject: production wiring goes through the gateway."""
    group = await plane.registry.ensure_messaging_group("webhook", chat, "")
    await plane.registry.put_messaging_group(attrs.evolve(
        group, unknown_sender_policy=UnknownSenderPolicy.PUBLIC))
    digest = hashlib.sha256(chat.encode()).hexdigest()[:12]
    await plane.registry.put_wiring(Wiring(
        id=f"w-chaos-{digest}", messaging_group_id=group.id, agent_group_id=DEMO_GROUP,
        engage_mode=EngageMode.PATTERN, pattern="."))


async def serve(setup: dict[str, Any]) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            plane = await nursery.start(ControlPlane(plane_config(setup),
                                                     credentials=Credentials()).run)
            for chat in setup["chats"]:
                await wire(plane, chat)
            print("ready", flush=True)
            async for _ in signals:
                break
            nursery.cancel_scope.cancel()


def main() -> None:
    trio.run(serve, json.loads(Path(sys.argv[1]).read_text()))


if __name__ == "__main__":
    main()
