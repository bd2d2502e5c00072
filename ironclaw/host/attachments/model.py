"""What a file crossing a chat carries, in and out, and the caps that bound it.

Inbound, an adapter describes each attachment as an :class:`InboundAttachment`: the
name and type the sender declared (both hostile, neither trusted) and a
:data:`ByteSource` that streams its bytes through the adapter's own HTTP client, or
the reason it was refused before a byte was fetched (a URL off the platform). The
inbox (:mod:`.inbox`) decides what lands in the workspace.

Outbound, the host reads a workspace file the agent named into an
:class:`OutboundFile`, which an adapter uploads.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import attrs

__all__ = [
    "DEFAULT_ALLOWED_TYPES",
    "AttachmentPolicy",
    "AttachmentRefused",
    "ByteSource",
    "InboundAttachment",
    "OutboundFile",
    "StoredFile",
]

#: Opens the attachment's byte stream; the chunks are whatever the transport hands over.
ByteSource = Callable[[], AbstractAsyncContextManager[AsyncIterator[bytes]]]

DEFAULT_ALLOWED_TYPES = frozenset({
    "text/plain", "application/pdf", "image/png", "image/jpeg", "image/gif",
    "image/webp", "audio/ogg", "audio/mpeg"})


class AttachmentRefused(Exception):
    """A file was not taken or not sent; the text is safe to show the agent and logs."""


@attrs.frozen
class AttachmentPolicy:
    """The caps on files. ``allowed_types`` are sniffed media types, never declared ones."""

    max_file_bytes: int = 20 * 1024 * 1024
    session_quota_bytes: int = 100 * 1024 * 1024
    max_files_per_message: int = 10
    # For all of one message's files together: the router waits on the downloads.
    download_timeout_s: float = 60.0
    allowed_types: frozenset[str] = DEFAULT_ALLOWED_TYPES

    @classmethod
    def from_table(cls, table: object) -> AttachmentPolicy:
        """From the config file's ``[attachments]`` table; unknown keys and wrong types
        are errors, never ignored."""
        if not isinstance(table, dict):
            raise ValueError("attachments must be a table")
        numbers = ("max_file_bytes", "session_quota_bytes", "max_files_per_message")
        unknown = sorted(set(table) - {*numbers, "download_timeout_s", "allowed_types"})
        if unknown:
            raise ValueError(f"attachments: unknown key(s) {', '.join(unknown)}")
        values: dict[str, object] = {}
        for key in numbers:
            if key in table:
                if not isinstance(table[key], int) or isinstance(table[key], bool):
                    raise ValueError(f"attachments.{key} must be an integer")
                values[key] = table[key]
        if "download_timeout_s" in table:
            timeout = table["download_timeout_s"]
            if not isinstance(timeout, (int, float)) or isinstance(timeout, bool):
                raise ValueError("attachments.download_timeout_s must be a number")
            values["download_timeout_s"] = float(timeout)
        if "allowed_types" in table:
            types = table["allowed_types"]
            if not isinstance(types, list) or not all(
                    isinstance(t, str) and t.count("/") == 1 for t in types):
                raise ValueError("attachments.allowed_types must be a list of media types")
            values["allowed_types"] = frozenset(t.lower() for t in types)
        return cls(**values)  # type: ignore[arg-type]

    def __attrs_post_init__(self) -> None:
        if self.max_file_bytes < 1 or self.session_quota_bytes < 1:
            raise ValueError("file caps must be positive")
        if not 1 <= self.max_files_per_message <= 100:
            raise ValueError("max_files_per_message must be between 1 and 100")
        if not 0 < self.download_timeout_s <= 3600:
            raise ValueError("download_timeout_s must be between 0 and 3600")


@attrs.frozen
class InboundAttachment:
    """One file a platform message carries. Exactly one of ``source`` and ``refused``."""

    declared_name: str
    declared_type: str | None = None
    source: ByteSource | None = attrs.field(default=None, eq=False, repr=False)
    refused: str | None = None


@attrs.frozen
class StoredFile:
    """An attachment as it landed: ``path`` is relative to the workspace."""

    name: str
    path: str
    size: int
    media_type: str


@attrs.frozen
class OutboundFile:
    """A workspace file on its way to a chat: the name is sanitised, the type sniffed."""

    name: str
    media_type: str
    data: bytes = attrs.field(repr=False)

    @property
    def size(self) -> int:
        return len(self.data)
