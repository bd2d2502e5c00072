"""A runsc control plane with a warm pool, in its own process, for the SIGKILL test:
``python pool_plane_child.py STATE KEYS`` has one conversation claim a warm sandbox,
waits until the pool has booted the next one, prints ``ready`` and runs until killed."""

from __future__ import annotations

import sys
from pathlib import Path

import trio

from ironclaw.host.app import ControlPlane, ControlPlaneHandles
from ironclaw.host.config import ControlPlaneConfig
from ironclaw.host.config.devseed import DEMO_CONVERSATION
from ironclaw.host.isolation.pool import PoolSettings
from ironclaw.host.modelproxy import Credentials

POOL = PoolSettings(max_total=1, max_per_group=1, prewarm_groups=("demo",), tick_s=0.1,
                    memory_floor_bytes=0)


def config(state: Path, keys: Path, pool: PoolSettings = POOL) -> ControlPlaneConfig:
    return ControlPlaneConfig(state_dir=state, dev=True, runtime="runsc", key_dir=keys,
                              safety_poll_s=0.5, heartbeat_interval_s=0.5,
                              sandbox_pool=pool)


async def until_warm(plane: ControlPlaneHandles) -> None:
    assert plane.pool is not None
    await plane.pool.wait_warm("demo")


async def main(state: Path, keys: Path) -> None:
    async with trio.open_nursery() as nursery:
        plane = await nursery.start(ControlPlane(config(state, keys),
                                                 credentials=Credentials()).run)
        with trio.fail_after(120):
            await until_warm(plane)
            mark = plane.local.cursor(DEMO_CONVERSATION)
            await plane.local.post(DEMO_CONVERSATION, "operator", "hello")
            await plane.local.wait_for_reply(DEMO_CONVERSATION, after_index=mark)
            await until_warm(plane)
        print("ready", flush=True)
        await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main, Path(sys.argv[1]), Path(sys.argv[2]))
