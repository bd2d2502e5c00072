"""Discord files, both ways, end to end against the fake: an attachment in from the CDN
(without the bot token), one on a foreign host refused without a request, and a file out
as a multipart message whose nonce makes a repeat harmless."""

from __future__ import annotations

import json
from pathlib import Path

import trio

from tests.fakes.discord import open_fake_discord
from tests.fakes.wsplatform import Reply, Request, open_http
from tests.support.channels import ChatWiring, open_channel_plane
from tests.support.files import PNG, enable_file_tools, stored_path, workspace_file

from .test_discord import DM, settings


async def test_an_attachment_in_a_foreign_url_refused_and_a_file_out(tmp_path: Path) -> None:
    foreign: list[Request] = []

    async def elsewhere(request: Request) -> Reply:
        foreign.append(request)
        return Reply(200, b"not for you")

    with trio.fail_after(60):
        async with open_fake_discord() as fake, open_http(elsewhere) as foreign_base:
            fake.add_dm(DM)
            async with open_channel_plane(tmp_path, [settings(fake)],
                                          [ChatWiring("discord", DM)]) as plane:
                await enable_file_tools(plane)
                await fake.until(lambda: fake.active is not None)
                fake.push_message(DM, "see", attachment=("graph.png", "image/png", PNG))
                await fake.until(lambda: len(fake.messages) == 1)
                path = stored_path(fake.messages[0]["content"], "image/png", len(PNG))
                assert (await workspace_file(plane, path)).read_bytes() == PNG

                fake.push_message(DM, "and", attachment=("x.png", "image/png", PNG),
                                  attachment_url=f"{foreign_base}/latest/meta-data")
                await fake.until(lambda: len(fake.messages) == 2)
                assert "its URL points outside the platform" in fake.messages[1]["content"]
                assert foreign == []

                fake.push_message(DM, "tool:send_file " + json.dumps(
                    {"path": path, "caption": "back to you"}))
                await fake.until(lambda: len(fake.uploaded) == 1)
                assert fake.uploaded == [(DM, "graph.png", "image/png", PNG)]
                sent = [m for m in fake.messages if m["content"] == "back to you"]
                assert len(sent) == 1
