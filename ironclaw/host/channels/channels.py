"""The Channels actor: one supervised :class:`ChannelActor` per configured adapter.

It owns the actors (their tasks live in its nursery, so cancelling it stops every receive
loop and answers every queued delivery) and routes each
:class:`~ironclaw.host.channels.base.OutboundDelivery` to the actor for its
``(channel, instance)``. Deliveries to different channels never wait for each other: each
actor has its own mailbox and executes it in its own task.

The router mailbox is borrowed, not owned: every actor sends into it and none closes it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs
import trio

from ironclaw.host.channels.base import (
    ChannelAdapter,
    ChannelKey,
    ChannelUnavailable,
    Deliver,
    DeliveryReceipt,
    InboundEvent,
    OutboundDelivery,
)
from ironclaw.host.channels.channel_actor import (
    DEFAULT_DELIVER_TIMEOUT,
    DEFAULT_MAILBOX_SIZE,
    DEFAULT_STARTUP_TIMEOUT,
    ChannelActor,
    ChannelStatus,
)
from ironclaw.runtime import BackoffPolicy, EventSink

__all__ = ["Channels"]


class Channels:
    """Start with ``nursery.start(channels.run)``; single use."""

    def __init__(
        self,
        adapters: Iterable[ChannelAdapter],
        router: trio.MemorySendChannel[InboundEvent],
        *,
        events: EventSink | None = None,
        policy: BackoffPolicy | None = None,
        mailbox_size: int = DEFAULT_MAILBOX_SIZE,
        deliver_timeout: float = DEFAULT_DELIVER_TIMEOUT,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
    ) -> None:
        self._actors: dict[ChannelKey, ChannelActor] = {}
        for adapter in adapters:
            actor = ChannelActor(
                adapter,
                router,
                events=events,
                policy=policy,
                mailbox_size=mailbox_size,
                deliver_timeout=deliver_timeout,
                startup_timeout=startup_timeout,
            )
            if actor.key in self._actors:
                raise ValueError(f"two adapters configured for channel {actor.label}")
            self._actors[actor.key] = actor

    @property
    def keys(self) -> list[ChannelKey]:
        return list(self._actors)

    def status(self) -> Mapping[ChannelKey, ChannelStatus]:
        return {key: actor.status for key, actor in self._actors.items()}

    def actor(self, channel: str, instance: str = "") -> ChannelActor:
        """The actor for ``(channel, instance)``; :class:`ChannelUnavailable` if none."""
        instance = _canonical_instance(channel, instance)
        try:
            return self._actors[(channel, instance)]
        except KeyError:
            name = f"{channel}/{instance or 'default'}"
            raise ChannelUnavailable(f"no channel {name} is configured") from None

    async def submit(self, message: Deliver) -> None:
        """Queue ``message`` on its channel's mailbox; the outcome answers its reply."""
        delivery = _canonical(message.delivery)
        await self.actor(delivery.channel, delivery.instance).submit(
            attrs.evolve(message, delivery=delivery))

    async def deliver(self, delivery: OutboundDelivery) -> DeliveryReceipt:
        """Deliver and wait for the receipt. Raises ``ChannelUnavailable`` for a channel
        that is not configured or stopped, ``DeliveryFailed`` when the adapter failed."""
        delivery = _canonical(delivery)
        return await self.actor(delivery.channel, delivery.instance).deliver(delivery)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start every actor (concurrently, so one slow connect does not delay the others),
        report started, and keep them running until cancelled."""
        async with trio.open_nursery() as nursery:
            async with trio.open_nursery() as starting:
                for actor in self._actors.values():
                    starting.start_soon(nursery.start, actor.run)
            task_status.started()
            await trio.sleep_forever()


def _canonical_instance(channel: str, instance: str) -> str:
    """The registry names a channel type's default instance after the type itself
    (``local``/``local``); the channel layer calls it ``""``. Both spellings mean it."""
    return "" if instance == channel else instance


def _canonical(delivery: OutboundDelivery) -> OutboundDelivery:
    instance = _canonical_instance(delivery.channel, delivery.instance)
    return delivery if instance == delivery.instance else attrs.evolve(delivery,
                                                                        instance=instance)
