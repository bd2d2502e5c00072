"""How the agent learns of a message's files: a block at the end of its content.

The queue row keeps its shape (docs/contract.md, RFC-0012): the block is text the
host appends to the message, one line per file, so every model sees it and the agent
needs no parser. A line names the workspace path, the sniffed type and the size of a
stored file, or the (sanitised) name and the reason of a refused one::

    [attachments]
    - inbox/ses_…/in_…/report.pdf (application/pdf, 48213 bytes)
    - refused "setup.exe": its type (application/x-msdownload) is not allowed

A sender can type a look-alike block into a message; it names no file the agent could
not already read, so the agent trusts the block no more than the rest of the message.
"""

from __future__ import annotations

from collections.abc import Sequence

from .model import StoredFile
from .names import safe_name

__all__ = ["HEADER", "render_attachments"]

HEADER = "[attachments]"


def render_attachments(results: Sequence[StoredFile | tuple[str, str]], *,
                       skipped: int = 0) -> str:
    lines = [HEADER]
    for result in results:
        if isinstance(result, StoredFile):
            lines.append(f"- {result.path} ({result.media_type}, {result.size} bytes)")
        else:
            name, reason = result
            lines.append(f'- refused "{safe_name(name)}": {reason}')
    if skipped:
        lines.append(f"- {skipped} more file(s) not taken: too many in one message")
    return "\n".join(lines) if len(lines) > 1 else ""
