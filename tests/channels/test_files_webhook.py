"""Webhook files, both ways: base64 parts in the signed JSON in, a base64 part beside
the caption out; a malformed part is refused. (The request's body cap bounds the files
in it; the inbox's caps are tested in tests/unit/host/test_attachments.py.)"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import trio

from tests.fakes.ngircd import free_port
from tests.fakes.webhook_receiver import open_webhook_receiver
from tests.support.channels import ChatWiring, open_channel_plane
from tests.support.files import PNG, enable_file_tools, stored_path, workspace_file

from .test_webhook import OUT_SECRET, URL_TOKEN, Sender, event, webhook_settings


def part(name: str, data: bytes, **extra: object) -> dict[str, object]:
    return {"name": name, "data": base64.b64encode(data).decode(), **extra}


async def test_files_in_and_out_as_base64_parts(tmp_path: Path) -> None:
    port = free_port()
    with trio.fail_after(60):
        async with open_webhook_receiver(OUT_SECRET.encode(), URL_TOKEN) as receiver, \
                open_channel_plane(tmp_path, [webhook_settings(port, receiver,
                                                               max_body_bytes=1 << 20)],
                                   [ChatWiring("webhook", "chat-1")]) as plane, \
                httpx.AsyncClient(timeout=20) as client:
            await enable_file_tools(plane)
            sender = Sender(port, client)
            bad = await sender.post(event("e-0", "x", files=[{"name": "a.txt"}]))
            assert bad.status_code == 400
            answer = await sender.post(event("e-2", "a picture", files=[
                part("../../pic.png", PNG, type="text/plain")]))
            assert answer.status_code == 200
            [reply] = await receiver.wait_for(
                lambda post: post.body["text"].startswith("echo: a picture"))
            path = stored_path(reply.body["text"], "image/png", len(PNG))
            assert path.endswith("/pic.png")
            assert (await workspace_file(plane, path)).read_bytes() == PNG

            await sender.post(event("e-3", "tool:send_file " + json.dumps(
                {"path": path, "caption": "here"})))
            [sent] = await receiver.wait_for(lambda post: "file" in post.body)
            assert sent.body["text"] == "here"
            assert sent.body["file"] == {"name": "pic.png", "type": "image/png",
                                         "size": len(PNG),
                                         "data": base64.b64encode(PNG).decode()}
            assert sent.idempotency_key == sent.body["id"]
