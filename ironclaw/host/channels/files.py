"""Files on channels: which adapters carry them, and what the others get instead.

An adapter that uploads files says so with a ``carries_files = True`` attribute and
handles :attr:`OutboundDelivery.file` in its ``deliver``. For every other adapter (IRC,
the local channel), the channel actor replaces the file with a text notice before the
adapter sees the delivery (:func:`without_file`), so no adapter drops a file silently.
The notice carries the caption, the file's name, type and size; there is no link to
the bytes, because the control plane serves no files to the outside.
"""

from __future__ import annotations

import attrs

from .base import OutboundDelivery

__all__ = ["carries_files", "file_notice", "without_file"]


def carries_files(adapter: object) -> bool:
    return getattr(adapter, "carries_files", False) is True


def file_notice(delivery: OutboundDelivery) -> str:
    """The text that stands for the delivery's file where it cannot go."""
    assert delivery.file is not None
    file = delivery.file
    line = (f"[file {file.name} ({file.media_type}, {file.size} bytes): this channel "
            "cannot carry files]")
    return f"{delivery.text}\n\n{line}" if delivery.text.strip() else line


def without_file(delivery: OutboundDelivery, adapter: object) -> OutboundDelivery:
    if delivery.file is None or carries_files(adapter):
        return delivery
    return attrs.evolve(delivery, text=file_notice(delivery), file=None)
