"""Slack files, both ways, end to end against the fake: a shared file in (downloaded with
the bot token from the file's private URL), a file URL off Slack refused without a
request, and a file out through the three-call external upload."""

from __future__ import annotations

import json
from pathlib import Path

import trio

from tests.fakes.slack import open_fake_slack
from tests.fakes.wsplatform import Reply, Request, open_http
from tests.support.channels import ChatWiring, open_channel_plane
from tests.support.files import PNG, enable_file_tools, stored_path, workspace_file

from .test_slack import settings


async def test_a_file_in_a_foreign_url_refused_and_a_file_out(tmp_path: Path) -> None:
    foreign: list[str] = []

    async def elsewhere(request: Request) -> Reply:
        foreign.append(request.path)
        return Reply(200, b"not for you")

    with trio.fail_after(60):
        async with open_fake_slack() as fake, open_http(elsewhere) as foreign_base, \
                open_channel_plane(tmp_path, [settings(fake)],
                                   [ChatWiring("slack", "D0DIRECT")]) as plane:
            await enable_file_tools(plane)
            fake.push_file("D0DIRECT", "U0ALICE", "look", "chart.png", "image/png", PNG)
            await fake.until(lambda: len(fake.posts) == 1)
            path = stored_path(str(fake.posts[0]["text"]), "image/png", len(PNG))
            assert (await workspace_file(plane, path)).read_bytes() == PNG
            assert len(fake.downloads) == 1

            fake.push_file("D0DIRECT", "U0ALICE", "and this", "x.png", "image/png", PNG,
                           url=f"{foreign_base}/metadata")
            await fake.until(lambda: len(fake.posts) == 2)
            assert 'refused "x.png": its URL points outside the platform' in str(
                fake.posts[1]["text"])
            assert foreign == []

            fake.push_message("D0DIRECT", "U0ALICE", "tool:send_file " + json.dumps(
                {"path": path, "caption": "yours <back>"}), channel_type="im")
            await fake.until(lambda: len(fake.shared_files) == 1)
            (shared,) = fake.shared_files
            assert (shared["name"], shared["data"], shared["channel"],
                    shared["initial_comment"]) == ("chart.png", PNG, "D0DIRECT",
                                                   "yours &lt;back&gt;")
