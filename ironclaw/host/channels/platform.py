"""What every remote-platform adapter needs and no platform does differently.

* :func:`split_text`: cut a reply that exceeds the platform's length limit, measured
  the platform's way (characters, UTF-16 code units, or UTF-8 bytes), preferring
  paragraph, line and word boundaries, never cutting inside a character.
* :func:`delivery_failure`: turn a platform's HTTP answer into the channel layer's
  :class:`DeliveryFailed`, honouring 429 and ``Retry-After`` (also the JSON forms
  Telegram and Discord use), so the delivery pipeline backs off and retries later.
* :func:`deliver_in_parts`: send the parts of a split reply, each idempotent under its
  own key, so a retry after a partial send sends only what is missing.
"""

from __future__ import annotations

import enum
import json
import logging
import math
from collections.abc import Awaitable, Callable, Sequence

import attrs
import httpx

from .base import DeliveryFailed, DeliveryReceipt, OutboundDelivery
from .ledger import IdempotentDelivery

__all__ = ["Measure", "deliver_in_parts", "delivery_failure", "retry_after_of", "split_text"]

MAX_RETRY_AFTER_S = 3600.0

# httpx logs every request's full URL at INFO ("HTTP Request: POST https://..."), and
# some platforms put the bot token in the URL (Telegram; a webhook URL may carry one).
# Every remote adapter imports this module: from then on those records need WARNING.
# Set on the loggers themselves, so a root logger at INFO or DEBUG does not reach them.
for _name in ("httpx", "httpcore"):
    if logging.getLogger(_name).level < logging.WARNING:  # NOTSET (0) included
        logging.getLogger(_name).setLevel(logging.WARNING)


class Measure(enum.Enum):
    CHARS = "chars"  # code points (Discord, Slack)
    UTF16 = "utf16"  # UTF-16 code units (Telegram)
    BYTES = "bytes"  # UTF-8 bytes (IRC, Matrix event size)


def _size(text: str, measure: Measure) -> int:
    if measure is Measure.CHARS:
        return len(text)
    if measure is Measure.UTF16:
        return len(text.encode("utf-16-le")) // 2
    return len(text.encode("utf-8"))


def _longest_prefix(text: str, limit: int, measure: Measure) -> int:
    """The largest number of code points from the start of ``text`` within ``limit``."""
    if measure is Measure.CHARS:
        return min(len(text), limit)
    low, high = 0, min(len(text), limit)
    while low < high:  # sizes grow monotonically with the prefix length
        middle = (low + high + 1) // 2
        if _size(text[:middle], measure) <= limit:
            low = middle
        else:
            high = middle - 1
    return low


def split_text(text: str, limit: int, measure: Measure = Measure.CHARS) -> list[str]:
    """``text`` in pieces of at most ``limit`` units each; one piece if it fits.

    A cut goes at the last blank line, else line break, else space in the second half
    of the window; failing those, at the limit itself. Whitespace at a cut is dropped.
    """
    if limit < 4:
        raise ValueError("limit must be at least 4")
    pieces: list[str] = []
    rest = text
    while _size(rest, measure) > limit:
        window = _longest_prefix(rest, limit, measure)
        cut = window
        for separator in ("\n\n", "\n", " "):
            at = rest.rfind(separator, 0, window)
            if at >= window // 2:
                cut = at
                break
        piece = rest[:cut].rstrip()
        if not piece:  # only whitespace before the cut: take the hard limit instead
            cut, piece = window, rest[:window]
        pieces.append(piece)
        rest = rest[cut:].lstrip()
    if rest or not pieces:
        pieces.append(rest)
    return pieces


def retry_after_of(response: httpx.Response) -> float | None:
    """How long the platform asked us to wait, in seconds, if it said."""
    header = response.headers.get("retry-after")
    candidates: list[object] = [header]
    try:
        body = json.loads(response.content[:65536]) if response.content else None
    except ValueError:
        body = None
    if isinstance(body, dict):
        candidates.append(body.get("retry_after"))  # Discord, Slack's Web API
        parameters = body.get("parameters")
        if isinstance(parameters, dict):
            candidates.append(parameters.get("retry_after"))  # Telegram
        candidates.append(body.get("retry_after_ms") and body["retry_after_ms"] / 1000)
    for candidate in candidates:
        try:
            seconds = float(candidate)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        if math.isfinite(seconds) and seconds >= 0:
            return min(seconds, MAX_RETRY_AFTER_S)
    return None


def delivery_failure(response: httpx.Response, what: str) -> DeliveryFailed | None:
    """None when ``response`` is a success; otherwise the failure to raise. The text
    names ``what`` and the status, never the URL (some platforms put tokens there)."""
    status = response.status_code
    if 200 <= status < 300:
        return None
    if status == 429:
        return DeliveryFailed(f"{what}: rate limited (429)", retryable=True,
                              retry_after=retry_after_of(response) or 1.0)
    if status >= 500 or status in (408, 425):
        return DeliveryFailed(f"{what}: platform error {status}", retryable=True,
                              retry_after=retry_after_of(response))
    if status in (401, 403):
        return DeliveryFailed(f"{what}: the platform refused our credentials ({status})",
                              retryable=False)
    return DeliveryFailed(f"{what}: rejected by the platform ({status})", retryable=False)


async def deliver_in_parts(
    idempotent: IdempotentDelivery,
    delivery: OutboundDelivery,
    parts: Sequence[str],
    send_part: Callable[[OutboundDelivery], Awaitable[str]],
) -> DeliveryReceipt:
    """Deliver ``parts`` in order, each under the key ``<outbound_id>#<n>`` (the plain
    ``outbound_id`` when there is one part). The receipt names the first part's
    platform message id; it is a duplicate only if every part was."""
    if not parts:
        raise ValueError("nothing to deliver")
    receipts: list[DeliveryReceipt] = []
    for index, part in enumerate(parts):
        key = delivery.outbound_id if len(parts) == 1 else f"{delivery.outbound_id}#{index}"
        receipts.append(await idempotent.deliver(
            attrs.evolve(delivery, outbound_id=key, text=part), send_part))
    return DeliveryReceipt(delivery.outbound_id, receipts[0].platform_message_id,
                           duplicate=all(receipt.duplicate for receipt in receipts))
