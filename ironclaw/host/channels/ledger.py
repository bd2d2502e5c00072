"""Idempotent delivery: remember what was delivered, so a retry sends nothing twice.

The delivery pipeline retries (a crash, a timeout, a lost reply all look the same to it),
so every adapter's ``deliver`` must be idempotent by ``outbound_id``.
:class:`IdempotentDelivery` does the bookkeeping for an adapter around a
:class:`DeliveryLedger`, which is where receipts live: :class:`MemoryDeliveryLedger` here,
a durable one from the host store when the process must survive restarts without
re-sending.

What this can and cannot promise: a receipt is recorded *after* the platform accepted the
message, so a crash in between (or a ledger write that fails) leaves a window where a
retry sends again. Closing that window needs the platform's help: an adapter whose
platform accepts a client-chosen id should pass ``outbound_id`` to it as well.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Protocol

import attrs
import trio

from ironclaw.host.channels.base import DeliveryReceipt, OutboundDelivery

__all__ = ["DeliveryLedger", "IdempotentDelivery", "MemoryDeliveryLedger"]

logger = logging.getLogger(__name__)

DEFAULT_LEDGER_ENTRIES = 10_000
# A receipt is written after the send succeeded; give the write this long even when the
# caller is being cancelled, because losing it means a duplicate message later.
_RECORD_GRACE_SECONDS = 5.0


class DeliveryLedger(Protocol):
    """Receipts of completed deliveries, keyed by ``outbound_id``.

    Implementations may forget old entries to stay bounded; a retry older than the
    retention would then be sent again.
    """

    async def get(self, outbound_id: str) -> DeliveryReceipt | None: ...

    async def put(self, receipt: DeliveryReceipt) -> None: ...


class MemoryDeliveryLedger:
    """The last ``max_entries`` receipts, in memory; the oldest is forgotten first."""

    def __init__(self, max_entries: int = DEFAULT_LEDGER_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self._max_entries = max_entries
        self._receipts: OrderedDict[str, DeliveryReceipt] = OrderedDict()

    def __len__(self) -> int:
        return len(self._receipts)

    async def get(self, outbound_id: str) -> DeliveryReceipt | None:
        await trio.lowlevel.checkpoint()
        return self._receipts.get(outbound_id)

    async def put(self, receipt: DeliveryReceipt) -> None:
        await trio.lowlevel.checkpoint()
        self._receipts[receipt.outbound_id] = attrs.evolve(receipt, duplicate=False)
        self._receipts.move_to_end(receipt.outbound_id)
        while len(self._receipts) > self._max_entries:
            self._receipts.popitem(last=False)


class IdempotentDelivery:
    """Wraps an adapter's raw send with ledger lookups and in-flight de-duplication.

    ``send`` performs the platform call and returns the platform's message id. Two
    concurrent deliveries of one ``outbound_id`` never both send: the second waits for the
    first and then answers from the ledger (or sends, if the first failed).
    """

    def __init__(self, ledger: DeliveryLedger) -> None:
        self._ledger = ledger
        self._in_flight: dict[str, trio.Event] = {}

    async def deliver(
        self,
        delivery: OutboundDelivery,
        send: Callable[[OutboundDelivery], Awaitable[str]],
    ) -> DeliveryReceipt:
        key = delivery.outbound_id
        while (busy := self._in_flight.get(key)) is not None:
            await busy.wait()
        # Claim the key with no checkpoint since the check above.
        done = self._in_flight[key] = trio.Event()
        try:
            previous = await self._ledger.get(key)
            if previous is not None:
                return attrs.evolve(previous, duplicate=True)
            platform_message_id = await send(delivery)
            receipt = DeliveryReceipt(key, platform_message_id, duplicate=False)
            await self._record(receipt)
            return receipt
        finally:
            del self._in_flight[key]
            done.set()

    async def _record(self, receipt: DeliveryReceipt) -> None:
        # The message is out: report success even if remembering it fails, because the
        # caller re-sending on our error would certainly duplicate it.
        try:
            with trio.CancelScope(shield=True), trio.fail_after(_RECORD_GRACE_SECONDS):
                await self._ledger.put(receipt)
        except Exception:
            logger.exception(
                "delivered %s but could not record the receipt; a retry may duplicate it",
                receipt.outbound_id,
            )
