"""What every provider shares: the tool description it sends, and the defensive
decoding of ids and names that come back in a model's answer."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import attrs

from ..messages import Message, ModelReply

_SAFE_ID = re.compile(r"[A-Za-z0-9_\-]{1,128}")
MAX_TOOL_NAME = 64


@attrs.frozen
class ToolSpec:
    name: str
    description: str
    input_schema: Mapping[str, Any]


class Provider(Protocol):
    async def complete(self, system: str, messages: Sequence[Message],
                       tools: Sequence[ToolSpec]) -> ModelReply: ...


def bounded_id(value: object, index: int) -> str:
    """A tool call id echoes back to the provider in the result; keep it to a safe
    alphabet and length, and mint one if the answer had none."""
    if isinstance(value, str) and _SAFE_ID.fullmatch(value):
        return value
    return f"call_{index}"


def bounded_name(value: object) -> str:
    # An unknown or garbled name is answered with an error by the tool runner; here it
    # only has to be a short string.
    return value[:MAX_TOOL_NAME] if isinstance(value, str) else ""
