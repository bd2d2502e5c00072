"""The inbound writer's byte cap, on real SQLCipher files."""

from __future__ import annotations

import os

import pytest

from ironclaw.contract.cipher import SessionKeys
from ironclaw.contract.enums import AckStatus, MessageKind
from ironclaw.contract.ids import new_message_id
from ironclaw.contract.layout import QueuePaths
from ironclaw.contract.queue import InboundReader, InboundWriter, QueueFull
from ironclaw.contract.rows import NewInboundMessage, ProcessingAck

CAP = 1024 * 1024
ROW_TEXT = "x" * (32 * 1024)


def task_row(text: str = ROW_TEXT) -> NewInboundMessage:
    return NewInboundMessage(id=new_message_id(), kind=MessageKind.TASK, content=text)


def fill(writer: InboundWriter) -> list[str]:
    """Enqueue rows until the writer refuses one; return the ids that were written."""
    written = []
    for _ in range(1000):
        try:
            written.append(writer.enqueue(task_row()).id)
        except QueueFull:
            return written
    raise AssertionError("the cap never refused a row")


def test_a_full_inbound_refuses_rows_and_never_passes_its_cap(
        queues: QueuePaths, keys: SessionKeys) -> None:
    with InboundWriter(queues.inbound_db, keys.inbound, max_bytes=CAP) as writer:
        written = fill(writer)
        assert len(written) >= 20  # about 1 MiB of 32 KiB rows fits
        assert os.stat(queues.inbound_db).st_size <= CAP
        assert writer.used_bytes() <= CAP
        with pytest.raises(QueueFull) as refused:
            writer.enqueue_many([task_row("small") for _ in range(3)] + [task_row()])
        assert refused.value.cap_bytes == CAP and refused.value.used_bytes > CAP
        assert os.stat(queues.inbound_db).st_size <= CAP
    # Nothing of a refused batch reached the file: the reader sees only what was written.
    poll = InboundReader(queues.inbound_db, keys.inbound).poll(limit=10_000)
    assert [m.id for m in poll.messages] == written


def test_acks_still_apply_when_full_and_pruning_makes_room(
        queues: QueuePaths, keys: SessionKeys) -> None:
    with InboundWriter(queues.inbound_db, keys.inbound, max_bytes=CAP) as writer:
        written = fill(writer)
        size_when_full = os.stat(queues.inbound_db).st_size
        acks = [ProcessingAck(message_id=m, status=AckStatus.COMPLETED, status_changed=1)
                for m in written]
        assert writer.apply_acks(acks, now=1_000) == len(written)
        with pytest.raises(QueueFull):
            writer.enqueue(task_row())  # completed rows take room until pruned
        assert writer.prune(finished_before=2_000) == len(written)
        again = fill(writer)
        # Freed pages are reused: about as many rows fit again, and the file did not grow.
        assert len(again) >= len(written) - 1
        assert os.stat(queues.inbound_db).st_size <= max(size_when_full, CAP)


def test_without_a_cap_the_writer_never_refuses_for_size(
        queues: QueuePaths, keys: SessionKeys) -> None:
    with InboundWriter(queues.inbound_db, keys.inbound) as writer:
        for _ in range(40):
            writer.enqueue(task_row())
        assert writer.used_bytes() > CAP
