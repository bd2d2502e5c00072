"""Conversation history: what survives between turns, and how it is kept small.

It lives in the outbound ``session_state`` under one key and is committed in the same
transaction as the turn's reply, so a crash can never leave a reply without its
history or the reverse. It is bounded by message count and by encoded size; whole
turns are dropped from the oldest end, because half a turn (a tool call without its
result) is a transcript no provider accepts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from ironclaw.contract.jsonvalue import JSONRejected, parse_json
from ironclaw.contract.rows import MAX_STATE_VALUE_BYTES

from .messages import (
    Message,
    ToolResult,
    ToolResults,
    TranscriptInvalid,
    UserMessage,
    message_to_json,
    transcript_from_json,
    transcript_to_json,
)

log = logging.getLogger(__name__)

HISTORY_KEY = "history"
HISTORY_VERSION = 1
# Tool output is often large (a whole file) and is worth little a turn later; keeping
# a head of it preserves the gist and leaves room for the conversation itself.
MAX_STORED_TOOL_RESULT_CHARS = 8 * 1024
# The envelope and JSON escaping need a little room under the state value cap.
_STATE_SLACK_BYTES = 16 * 1024


def encoded_size(message: Message) -> int:
    return len(json.dumps(message_to_json(message), ensure_ascii=False).encode())


def split_turns(messages: Sequence[Message]) -> list[list[Message]]:
    """Group a transcript into turns, each opened by a user message. Anything before
    the first user message cannot be sent to a provider and is dropped."""
    turns: list[list[Message]] = []
    for message in messages:
        if isinstance(message, UserMessage):
            turns.append([message])
        elif turns:
            turns[-1].append(message)
    return turns


def bound_history(messages: Sequence[Message], *, max_messages: int,
                  max_bytes: int) -> list[Message]:
    """Drop the oldest whole turns until both bounds hold. If the newest turn alone
    breaks a bound, nothing is kept: a truncated turn would be worse than none."""
    max_bytes = min(max_bytes, MAX_STATE_VALUE_BYTES - _STATE_SLACK_BYTES)
    turns = [[_compact(m) for m in turn] for turn in split_turns(messages)]
    sizes = [sum(encoded_size(m) for m in turn) for turn in turns]
    count = sum(len(turn) for turn in turns)
    total = sum(sizes)
    start = 0
    while start < len(turns) and (count > max_messages or total > max_bytes):
        count -= len(turns[start])
        total -= sizes[start]
        start += 1
    return [m for turn in turns[start:] for m in turn]


def _compact(message: Message) -> Message:
    if not isinstance(message, ToolResults):
        return message
    return ToolResults(tuple(
        ToolResult(r.call_id, _head(r.content), r.is_error) for r in message.results))


def _head(text: str) -> str:
    if len(text) <= MAX_STORED_TOOL_RESULT_CHARS:
        return text
    dropped = len(text) - MAX_STORED_TOOL_RESULT_CHARS
    return text[:MAX_STORED_TOOL_RESULT_CHARS] + f"\n[... {dropped} characters not kept]"


def encode_history(messages: Sequence[Message]) -> str:
    return json.dumps({"version": HISTORY_VERSION, "messages": transcript_to_json(messages)},
                      ensure_ascii=False, separators=(",", ":"))


def decode_history(stored: str | None) -> list[Message]:
    """Stored history is our own writing, but it may come from another build of the
    agent; anything unreadable means starting a fresh conversation, never a crash."""
    if stored is None:
        return []
    try:
        raw = parse_json(stored, max_bytes=MAX_STATE_VALUE_BYTES)
        if not isinstance(raw, dict) or raw.get("version") != HISTORY_VERSION:
            raise TranscriptInvalid("unknown history version")
        messages = transcript_from_json(raw.get("messages"))
    except (JSONRejected, TranscriptInvalid) as exc:
        log.warning("stored history unreadable, starting afresh: %s", type(exc).__name__)
        return []
    # Re-split so that a transcript that starts mid-turn is repaired, not sent.
    return [m for turn in split_turns(messages) for m in turn]

