"""Files crossing a chat: attachments into a session's workspace, workspace files out.

* :mod:`.model`: what an adapter hands over and what the caps are;
* :mod:`.fetch`: byte sources, from the platform's own origins only;
* :mod:`.sniff` and :mod:`.names`: the type from the bytes, a name safe to create;
* :mod:`.inbox`: the streamed, capped, hardened write under ``inbox/``;
* :mod:`.render`: the block that tells the agent;
* :mod:`.outbox`: a workspace file read for ``send_file``;
* :mod:`.workspaces`: where an agent group's workspace is on the host.
"""

from __future__ import annotations

from .fetch import Origin, bytes_source, origin_of, platform_attachment, refused
from .inbox import INBOX_DIR, AttachmentInbox
from .model import (
    DEFAULT_ALLOWED_TYPES,
    AttachmentPolicy,
    AttachmentRefused,
    ByteSource,
    InboundAttachment,
    OutboundFile,
    StoredFile,
)
from .outbox import WorkspaceFiles
from .render import render_attachments
from .workspaces import GroupWorkspaces

__all__ = [
    "DEFAULT_ALLOWED_TYPES",
    "INBOX_DIR",
    "AttachmentInbox",
    "AttachmentPolicy",
    "AttachmentRefused",
    "ByteSource",
    "GroupWorkspaces",
    "InboundAttachment",
    "Origin",
    "OutboundFile",
    "StoredFile",
    "WorkspaceFiles",
    "bytes_source",
    "origin_of",
    "platform_attachment",
    "refused",
    "render_attachments",
]
