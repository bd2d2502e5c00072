"""Telegram files, both ways, end to end: a document in (getFile, then the download from
the Bot API's file endpoint), the agent reads it, and sends a file back (sendDocument),
once however often the delivery is retried."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from ironclaw.host.attachments import OutboundFile
from ironclaw.host.channels.base import OutboundDelivery
from tests.fakes.telegram import FakeTelegram, open_fake_telegram
from tests.support.channels import ChatWiring, open_channel_plane
from tests.support.files import ELF, PNG, enable_file_tools, stored_path, workspace_file

from .test_telegram import ALICE, settings_for


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with open_fake_telegram() as fake:
        yield fake


async def test_a_document_in_is_read_by_the_agent_and_a_file_goes_back(
        fake: FakeTelegram, tmp_path: Path) -> None:
    chat = fake.private_chat(ALICE)
    wiring = ChatWiring("telegram", str(chat["id"]))
    with trio.fail_after(60):
        async with open_channel_plane(tmp_path, [settings_for(fake)], [wiring]) as plane:
            await enable_file_tools(plane)
            fake.message(chat, ALICE, "hello", document=("../notes.txt", "image/png",
                                                          b"the secret is 42\n"))
            (sent,) = await fake.wait_sent(1)
            assert sent.text.startswith("echo: hello\n\n[attachments]\n")
            path = stored_path(sent.text, "text/plain", 17)
            assert path.endswith("/notes.txt")  # no "../", and the declared type ignored
            host_file = await workspace_file(plane, path)
            assert host_file.read_bytes() == b"the secret is 42\n"

            fake.message(chat, ALICE, "tool:read_file " + json.dumps({"path": path}))
            await fake.wait_sent(2)
            assert fake.sent[1].text == "tool result: the secret is 42\n"

            (host_file.parent / "chart.bin").write_bytes(PNG)
            chart = str(Path(path).parent / "chart.bin")
            fake.message(chat, ALICE, "tool:send_file " + json.dumps(
                {"path": chart, "caption": "your chart"}))
            await fake.wait_for(lambda: len(fake.documents) == 1)
            (document,) = fake.documents
            assert (document.chat_id, document.caption, document.filename,
                    document.media_type, document.data) == (
                ALICE["id"], "your chart", "chart.bin.png", "image/png", PNG)


async def test_a_disguised_executable_never_lands(fake: FakeTelegram, tmp_path: Path) -> None:
    chat = fake.private_chat(ALICE)
    with trio.fail_after(60):
        async with open_channel_plane(tmp_path, [settings_for(fake)],
                                      [ChatWiring("telegram", str(chat["id"]))]) as plane:
            fake.message(chat, ALICE, "", document=("cat.png", "image/png", ELF))
            (sent,) = await fake.wait_sent(1)
            assert sent.text == ('echo: [attachments]\n- refused "cat.png": its type '
                                 "(application/x-executable) is not allowed")
            workspaces = plane.config.state_dir / "workspaces"
            assert not [p for p in workspaces.rglob("*") if p.is_file()]


async def test_a_file_resent_after_a_lost_receipt_is_posted_once(
        fake: FakeTelegram, tmp_path: Path) -> None:
    chat = fake.private_chat(ALICE)
    with trio.fail_after(60):
        async with open_channel_plane(tmp_path, [settings_for(fake)]) as plane:
            delivery = OutboundDelivery("dk-file-1", "telegram", "", str(chat["id"]), None,
                                        "caption", OutboundFile("a.png", "image/png", PNG))
            first = await plane.channels.deliver(delivery)
            again = await plane.channels.deliver(delivery)
            assert (first.duplicate, again.duplicate) == (False, True)
            assert len(fake.documents) == 1
