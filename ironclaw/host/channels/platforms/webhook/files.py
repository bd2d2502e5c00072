"""Files in the webhook's JSON, both ways: base64 parts, never URLs.

Inbound, a request may carry ``"files": [{"name", "type"?, "data"}]`` with ``data`` the
file's bytes in standard base64; the whole request stays within ``max_body_bytes``, so
an operator who wants files raises that cap. There is no URL form: the control plane
fetches nothing a webhook sender names. Outbound, a ``send_file`` delivery carries
``"file": {"name", "type", "size", "data"}`` beside its ``text`` (the caption).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from ironclaw.host.attachments import InboundAttachment, OutboundFile, bytes_source, refused

__all__ = ["MAX_FILES", "file_part", "parse_files"]

MAX_FILES = 10
_MAX_NAME_CHARS = 255


class FilesRejected(ValueError):
    """The ``files`` field is not of the documented shape (answered 400)."""


def parse_files(value: object) -> tuple[InboundAttachment, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_FILES:
        raise FilesRejected(f"files must be a list of at most {MAX_FILES}")
    return tuple(_one(item) for item in value)


def _one(item: Any) -> InboundAttachment:
    if not isinstance(item, dict):
        raise FilesRejected("each file must be an object")
    name, data, declared = item.get("name"), item.get("data"), item.get("type")
    if not isinstance(name, str) or not 0 < len(name) <= _MAX_NAME_CHARS:
        raise FilesRejected(f"a file's name must be a string of 1 to {_MAX_NAME_CHARS} "
                            "characters")
    if declared is not None and not isinstance(declared, str):
        raise FilesRejected("a file's type must be a string")
    if not isinstance(data, str):
        raise FilesRejected("a file's data must be a base64 string")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return refused(name, "its data is not valid base64", declared)
    return InboundAttachment(name, declared, source=bytes_source(raw))


def file_part(file: OutboundFile) -> dict[str, Any]:
    return {"name": file.name, "type": file.media_type, "size": file.size,
            "data": base64.b64encode(file.data).decode("ascii")}
