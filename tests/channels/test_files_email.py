"""Email files, both ways, against the real Dovecot and OpenSMTPD: a MIME attachment in
lands in the workspace (its declared type ignored), and ``send_file`` answers with a
reply that carries the file as an attachment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from tests.fakes.mailserver import MailServers
from tests.support.channels import ChatWiring, open_channel_plane
from tests.support.files import PNG, enable_file_tools, stored_path, workspace_file

from .test_email import (
    ALICE,
    UNAVAILABLE,
    body,
    compose,
    replies_to,
    send,
    settings,
    wait_up,
)
from .test_email import mail as mail

pytestmark = pytest.mark.skipif(UNAVAILABLE is not None, reason=UNAVAILABLE or "")



async def test_an_attachment_in_and_a_file_back(mail: MailServers, tmp_path: Path) -> None:
    with trio.fail_after(90):
        async with open_channel_plane(tmp_path, [settings(mail)],
                                      [ChatWiring("email", ALICE)]) as plane:
            await enable_file_tools(plane)
            await wait_up(plane)
            message = compose(ALICE, "Chart", "here is the chart", "<f1@a.test>")
            message.add_attachment(PNG, maintype="application", subtype="msword",
                                   filename="../chart.doc")
            await send(mail, message)
            (first,) = await replies_to(mail, "alice", 1)
            path = stored_path(body(first), "image/png", len(PNG))
            assert path.endswith("/chart.doc.png")
            assert (await workspace_file(plane, path)).read_bytes() == PNG

            await send(mail, compose(ALICE, "Back", "tool:send_file " + json.dumps(
                {"path": path, "caption": "as promised"}), "<f2@a.test>"))
            replies = await replies_to(mail, "alice", 3)  # the file, then the tool result
            with_file = [m for m in replies if any(True for _ in m.iter_attachments())]
            assert len(with_file) == 1
            (attachment,) = with_file[0].iter_attachments()
            assert (attachment.get_filename(), attachment.get_content_type(),
                    attachment.get_payload(decode=True)) == (
                "chart.doc.png", "image/png", PNG)
            assert body(with_file[0]) == "as promised"
