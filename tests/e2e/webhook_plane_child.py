"""A control plane with the webhook channel, in its own process, to be killed with
SIGKILL: ``python webhook_plane_child.py CONFIG.json``. It starts the plane on the
given runtime, wires the named webhook chats to the demo agent (once: the wiring is
durable), prints ``ready`` and runs until it is killed or sent SIGTERM.

CONFIG holds ``state``, ``keys``, ``runtime``, ``listen``, ``url``, ``secret``,
``outbound_secret`` and ``chats`` (platform ids)."""

from __future__ import annotations

import json
import logging
import signal
import sys
from pathlib import Path

import trio

from ironclaw.host.app import ControlPlane
from ironclaw.host.channels.settings import ChannelSettings
from ironclaw.host.config import ControlPlaneConfig
from ironclaw.host.modelproxy import Credentials
from ironclaw.runtime import BackoffPolicy
from tests.support.channels import ChatWiring, wire

FAST = BackoffPolicy(initial=0.05, cap=0.5, max_failures=None, healthy_after=0.5)


def plane_config(spec: dict[str, object]) -> ControlPlaneConfig:
    channel = ChannelSettings(
        "webhook", "", {"listen": spec["listen"], "url": spec["url"], "accept_timeout": 5},
        environ={"IRONCLAW_WEBHOOK_SECRET": str(spec["secret"]),
                 "IRONCLAW_WEBHOOK_OUTBOUND_SECRET": str(spec["outbound_secret"])})
    return ControlPlaneConfig(
        state_dir=Path(str(spec["state"])), dev=True, runtime=str(spec["runtime"]),
        key_dir=Path(str(spec["keys"])), safety_poll_s=0.3, heartbeat_interval_s=0.5,
        sweep_interval_s=0.3, sandbox_backoff=FAST, channel_backoff=FAST,
        channels=(channel,))


async def serve(spec: dict[str, object]) -> None:
    state = Path(str(spec["state"]))
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            plane = await nursery.start(ControlPlane(plane_config(spec),
                                                     credentials=Credentials()).run)
            wired = state / "wired"
            if not wired.exists():
                for chat in spec["chats"]:  # type: ignore[attr-defined]
                    await wire(plane, ChatWiring("webhook", str(chat)))
                wired.touch()
            print("ready", flush=True)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s "
                        "%(levelname)s %(message)s")
    trio.run(serve, json.loads(Path(sys.argv[1]).read_text()))


if __name__ == "__main__":
    main()
