"""Files both ways with the agent in a real gVisor sandbox running the sealed image: a
file sent to the webhook lands in the workspace the sandbox owns (written by the host,
readable by the sandbox uid), the agent reads it (a mock-model tool directive), and
sends a file back, which the host reads out of the workspace and posts."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import httpx
import pytest
import trio

from ironclaw.host.app import ControlPlane
from ironclaw.host.channels.settings import ChannelSettings
from ironclaw.host.config import ControlPlaneConfig
from ironclaw.host.isolation.image import SandboxImage, pin_image
from ironclaw.host.isolation.runtimes import RuntimeKind
from ironclaw.host.modelproxy import Credentials
from ironclaw.runtime import BackoffPolicy
from tests.fakes.ngircd import free_port
from tests.fakes.webhook_receiver import open_webhook_receiver
from tests.support.channels import ChatWiring, wire
from tests.support.files import enable_file_tools, stored_path, workspace_file
from tests.support.sandbox import require_runtime

from ..channels.test_webhook import OUT_SECRET, SECRET, URL_TOKEN, Sender, event

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="OCI runtimes need root here"),
              pytest.mark.runsc]


async def test_a_file_in_read_by_the_sandboxed_agent_and_one_back(
        sandbox_tmp: Path, sandbox_image: SandboxImage) -> None:
    state = sandbox_tmp / "state"
    require_runtime(RuntimeKind.RUNSC, state)
    state.mkdir(mode=0o711)
    pin_image(state, sandbox_image)
    port = free_port()
    with trio.fail_after(240):
        async with open_webhook_receiver(OUT_SECRET.encode(), URL_TOKEN) as receiver, \
                trio.open_nursery() as nursery, httpx.AsyncClient(timeout=60) as client:
            channel = ChannelSettings("webhook", "", {
                "listen": f"127.0.0.1:{port}", "url": receiver.url,
                "max_body_bytes": 1 << 20}, environ={
                "IRONCLAW_WEBHOOK_SECRET": SECRET,
                "IRONCLAW_WEBHOOK_OUTBOUND_SECRET": OUT_SECRET})
            config = ControlPlaneConfig(
                state_dir=state, dev=True, runtime="runsc", key_dir=sandbox_tmp / "keys",
                safety_poll_s=0.5, heartbeat_interval_s=0.5, channels=(channel,),
                sandbox_backoff=BackoffPolicy(initial=0.05, cap=0.5, max_failures=None,
                                              healthy_after=0.5))
            plane = await nursery.start(ControlPlane(config, credentials=Credentials()).run)
            assert plane.runtime == "runsc"
            await wire(plane, ChatWiring("webhook", "chat-1"))
            await enable_file_tools(plane)
            sender = Sender(port, client)
            # The sandbox runs before the file comes: the file must be the sandbox's
            # as written, not only after the launch gives it the workspace.
            await sender.post(event("f-0", "hello"))
            await receiver.wait_for(lambda post: post.body["text"] == "echo: hello")

            data = b"from outside the wall\n"
            answer = await sender.post(event("f-1", "a note", files=[
                {"name": "note.txt", "data": base64.b64encode(data).decode()}]))
            assert answer.status_code == 200
            [reply] = await receiver.wait_for(
                lambda post: post.body["text"].startswith("echo: a note"))
            path = stored_path(reply.body["text"], "text/plain", len(data))
            host_file = await workspace_file(plane, path)

            await sender.post(event("f-2", "tool:read_file " + json.dumps({"path": path})))
            [read] = await receiver.wait_for(
                lambda post: post.body["text"].startswith("tool result:"))
            assert read.body["text"] == "tool result: " + data.decode()

            # The agent's own file: written inside the sandbox, read by the host.
            await sender.post(event("f-3", "tool:write_file " + json.dumps(
                {"path": "out/made-inside.txt", "content": "made behind the wall"})))
            await receiver.wait_for(lambda post: "wrote" in post.body["text"])
            await sender.post(event("f-4", "tool:send_file " + json.dumps(
                {"path": "out/made-inside.txt", "caption": "from the agent"})))
            [sent] = await receiver.wait_for(lambda post: "file" in post.body)
            assert sent.body["text"] == "from the agent"
            assert base64.b64decode(sent.body["file"]["data"]) == b"made behind the wall"
            assert host_file.exists()
            nursery.cancel_scope.cancel()
