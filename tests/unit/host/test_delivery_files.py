"""send_file rows through the real delivery actor: the host reads the workspace file
itself and hands it to the target's channel (here the local channel, which carries no
files and so gets a notice); a file it will not send, or a target that is an agent,
settles the row as rejected, with the reason."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ironclaw.contract.actions import SendFile, render_system_action
from ironclaw.contract.enums import MessageKind
from ironclaw.host.attachments import GroupWorkspaces, WorkspaceFiles
from ironclaw.host.delivery import Delivery, DeliveryRejected
from tests.support.delivery import Harness, open_harness
from tests.support.files import PNG


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with open_harness(tmp_path) as harness:
        yield harness


def send_file(h: Harness, path: str, **fields: object):  # type: ignore[no-untyped-def]
    return h.row(render_system_action(SendFile(path, "the chart")), kind=MessageKind.SYSTEM,
                 **fields)


async def test_send_file_rows_are_read_by_the_host_and_delivered_or_rejected(
        h: Harness) -> None:
    state = h.tmp / "state"
    workspace = state / "workspaces" / "g1"
    workspace.mkdir(parents=True)
    (workspace / "chart.bin").write_bytes(PNG)
    (workspace / "link.png").symlink_to(h.tmp)
    delivery = Delivery(records=h.records, registry=h.registry, channels=h.channels,
                        inbox=h.inbox, progress=h.progress, gate=h.gate,
                        scheduler=h.scheduler, questions=h.questions, events=h.events,
                        clock=h.clock, files=WorkspaceFiles(GroupWorkspaces(state, h.registry)))
    await h.nursery.start(delivery.run)
    session = await h.session("g1", "chat-1")
    await h.grant("g1", "peer", type="agent", target_agent_group_id="g2")
    rows = [send_file(h, "chart.bin"), send_file(h, "missing.pdf"),
            send_file(h, "link.png"), send_file(h, "chart.bin", destination="peer")]
    await delivery.submit(h.batch(session, rows))
    await h.progress.wait_through(session.id, rows[-1].seq)
    assert h.local.texts("chat-1") == [
        f"the chart\n\n[file chart.bin.png (image/png, {len(PNG)} bytes): this channel "
        "cannot carry files]"]
    reasons = [e.reason for e in h.events.of(DeliveryRejected)]
    assert reasons == ["send_file: no such file in the workspace",
                       "send_file: not a regular file (a link, a folder or a device)",
                       "files go to chats, not to other agents"]
