"""Durable delivery receipts in host.db: the channel layer's ledger across restarts.

Without this, a control plane restarted between "the platform accepted it" and "the
sandbox's row is marked handled" would send the reply again.
"""

from __future__ import annotations

from typing import Any

from ironclaw.contract.clock import now_us

from ..channels.base import DeliveryReceipt
from .actor import HostStore


def _get(conn: Any, outbound_id: str) -> DeliveryReceipt | None:
    row = conn.execute("SELECT platform_message_id FROM delivery_records "
                       "WHERE outbound_id = ? AND status = 'delivered'", (outbound_id,)
                       ).fetchone()
    return None if row is None else DeliveryReceipt(outbound_id, row[0], duplicate=True)


def _put(conn: Any, receipt: DeliveryReceipt, session_id: str | None, at: int) -> None:
    conn.execute(
        "INSERT INTO delivery_records (outbound_id, session_id, status, platform_message_id, "
        "attempts, updated_at) VALUES (?, ?, 'delivered', ?, 1, ?) "
        "ON CONFLICT (outbound_id) DO UPDATE SET status = 'delivered', "
        "platform_message_id = excluded.platform_message_id, "
        "attempts = attempts + 1, updated_at = excluded.updated_at",
        (receipt.outbound_id, session_id, receipt.platform_message_id, at))


class DurableDeliveryLedger:
    """Implements the channel layer's ``DeliveryLedger`` on host.db."""

    def __init__(self, store: HostStore, session_id: str | None = None) -> None:
        self._store = store
        self._session_id = session_id

    async def get(self, outbound_id: str) -> DeliveryReceipt | None:
        return await self._store.call(_get, outbound_id)

    async def put(self, receipt: DeliveryReceipt) -> None:
        await self._store.transaction(_put, receipt, self._session_id, now_us())
