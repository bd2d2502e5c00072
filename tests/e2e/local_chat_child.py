"""A control plane in its own process that chats over the local channel, for the
restart test: ``python local_chat_child.py TMP N`` posts N messages to the demo
conversation, prints ``ready`` once every reply is in, and waits to be killed."""

from __future__ import annotations

import sys
from pathlib import Path

import trio

from ironclaw.host.app import ControlPlane
from ironclaw.host.config.devseed import DEMO_CONVERSATION
from ironclaw.host.modelproxy import Credentials
from tests.support.api import plane_config


async def chat(tmp_path: Path, count: int) -> None:
    async with trio.open_nursery() as nursery:
        plane = await nursery.start(ControlPlane(plane_config(tmp_path),
                                                 credentials=Credentials()).run)
        for i in range(count):
            mark = plane.local.cursor(DEMO_CONVERSATION)
            await plane.local.post(DEMO_CONVERSATION, "alice", f"m{i}")
            with trio.fail_after(60):
                await plane.local.wait_for_reply(DEMO_CONVERSATION, after_index=mark)
        print("ready", flush=True)
        await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(chat, Path(sys.argv[1]), int(sys.argv[2]))
