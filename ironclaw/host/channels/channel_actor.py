"""One actor per adapter: a supervised receive loop and a deliver mailbox.

Inbound path: the adapter's ``serve`` runs under :class:`ironclaw.runtime.Supervisor`
(restart with exponential backoff, park after repeated failures). Each attempt gets a
fresh clone of a zero-capacity *intake* channel; a forwarder task, which lives as long as
the actor and not as long as one attempt, takes each event, stamps it with this actor's
``(channel, instance)`` (the actor, not the adapter, is the authority on where an event
came from) and sends it to the router mailbox.

Back-pressure, by design: nothing here buffers or drops platform events. When the router
mailbox is full the forwarder waits in ``send``, so the adapter waits in its own
``events.send`` and stops reading from the platform; the platform holds the backlog. An
event the adapter has handed over is never lost to a crash of its receive loop, because
the forwarder holding it is not part of the attempt that crashed.

Outbound path: :class:`~ironclaw.host.channels.base.Deliver` messages arrive on a bounded
mailbox and are executed one at a time, in order (replies within a conversation must not
overtake each other), each bounded by ``deliver_timeout``. A slow adapter therefore
delays only its own channel. Every message is answered exactly once, including those
still queued when the actor stops (``DeliveryFailed(retryable=True)``; a retry is safe
because delivery is idempotent). Deliveries are attempted whatever the state of the
receive loop, parked included: many platforms send over a separate API, and the adapter
knows best; when it cannot send it raises ``DeliveryFailed``.

Events published: ``channel.up``, ``channel.down`` (with a log-safe reason and the retry
delay), ``channel.parked``, ``channel.resumed``. The supervisor's own events are
translated rather than forwarded, and what it catches from a failed attempt is a
stand-in carrying only :func:`~ironclaw.host.channels.base.safe_reason`: an adapter's raw
exception text (an HTTP error naming a URL with a bot token in it) must reach neither the
event stream nor the logs.
"""

from __future__ import annotations

import enum
import logging

import attrs
import trio

from ironclaw.host.channels.base import (
    ChannelAdapter,
    ChannelError,
    ChannelKey,
    ChannelUnavailable,
    Deliver,
    DeliveryFailed,
    DeliveryReceipt,
    InboundEvent,
    OutboundDelivery,
    safe_reason,
)
from ironclaw.host.channels.events import ChannelDown, ChannelParked, ChannelResumed, ChannelUp
from ironclaw.host.channels.files import without_file
from ironclaw.runtime import (
    BackoffPolicy,
    ChildFailed,
    ChildParked,
    ChildResumed,
    ChildStarted,
    DiscardEvents,
    Event,
    EventSink,
    Mailbox,
    MailboxClosed,
    Supervisor,
)

__all__ = ["ChannelActor", "ChannelStatus"]

logger = logging.getLogger(__name__)

DEFAULT_MAILBOX_SIZE = 64
DEFAULT_DELIVER_TIMEOUT = 60.0
DEFAULT_STARTUP_TIMEOUT = 10.0


class ChannelStatus(enum.Enum):
    STARTING = "starting"
    UP = "up"
    DOWN = "down"
    PARKED = "parked"
    STOPPED = "stopped"


class _ReceiveLoopLost(ChannelError):
    """What the supervisor sees when a receive loop fails or returns: only a log-safe
    reason, because the supervisor logs and publishes the text of what it catches."""


class _SupervisorEvents:
    """The sink handed to the supervisor: turns its events into channel events."""

    def __init__(self, actor: ChannelActor) -> None:
        self._actor = actor

    def publish(self, event: Event) -> None:
        self._actor._on_supervisor_event(event)


class ChannelActor:
    """Runs one adapter. Start with ``nursery.start(actor.run)``; single use.

    ``run`` reports started once the first connection attempt has an outcome (up, or
    failed and backing off) or after ``startup_timeout`` seconds, whichever comes first,
    so a caller knows a healthy channel is serving when ``start`` returns.
    """

    def __init__(
        self,
        adapter: ChannelAdapter,
        router: trio.MemorySendChannel[InboundEvent],
        *,
        events: EventSink | None = None,
        policy: BackoffPolicy | None = None,
        mailbox_size: int = DEFAULT_MAILBOX_SIZE,
        deliver_timeout: float = DEFAULT_DELIVER_TIMEOUT,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
    ) -> None:
        if deliver_timeout <= 0 or startup_timeout < 0:
            raise ValueError("deliver_timeout must be > 0 and startup_timeout >= 0")
        self.adapter = adapter
        self.channel = adapter.name
        self.instance = adapter.instance
        self.label = f"{self.channel}/{self.instance or 'default'}"
        self._router = router
        self._events: EventSink = DiscardEvents() if events is None else events
        self._policy = BackoffPolicy() if policy is None else policy
        self._deliver_timeout = deliver_timeout
        self._startup_timeout = startup_timeout
        self._mailbox = Mailbox[Deliver](mailbox_size, what=f"channel {self.label}")
        self._intake_send, self._intake_receive = trio.open_memory_channel[InboundEvent](0)
        self._supervisor = Supervisor(
            f"channel:{self.label}",
            self._serve_once,
            policy=self._policy,
            events=_SupervisorEvents(self),
        )
        self._status = ChannelStatus.STARTING
        self._first_outcome = trio.Event()
        self._last_reason = "unknown"
        self._ran = False

    @property
    def key(self) -> ChannelKey:
        return (self.channel, self.instance)

    @property
    def status(self) -> ChannelStatus:
        return self._status

    @property
    def consecutive_failures(self) -> int:
        return self._supervisor.consecutive_failures

    def resume(self) -> bool:
        """Restart a parked receive loop now. False (and nothing done) if not parked."""
        return self._supervisor.resume()

    async def submit(self, message: Deliver) -> None:
        """Queue a delivery; its outcome answers ``message.reply``.

        Waits while the mailbox is full. Raises :class:`ChannelUnavailable` if the actor
        has stopped.
        """
        try:
            await self._mailbox.send(message)
        except MailboxClosed:
            raise ChannelUnavailable(f"channel {self.label} is stopped") from None

    async def deliver(self, delivery: OutboundDelivery) -> DeliveryReceipt:
        """Deliver through the mailbox and wait for the outcome; raise it if it failed.

        If the caller is cancelled while waiting, the delivery may still happen; a retry
        of the same ``outbound_id`` is then answered with a duplicate receipt.
        """
        message = Deliver(delivery)
        await self.submit(message)
        return await message.reply.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if self._ran:
            raise RuntimeError(f"channel actor {self.label} has already run")
        self._ran = True
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._forward_inbound)
                nursery.start_soon(self._serve_mailbox)
                await nursery.start(self._supervisor.run)
                with trio.move_on_after(self._startup_timeout) as waited:
                    await self._first_outcome.wait()
                if waited.cancelled_caught:
                    logger.warning("channel %s is still connecting", self.label)
                task_status.started()
        finally:
            was_up = self._status is ChannelStatus.UP
            self._status = ChannelStatus.STOPPED
            self._intake_receive.close()
            if was_up:
                self._publish(
                    ChannelDown(
                        self.channel, self.instance, "stopped", self.consecutive_failures, None
                    )
                )

    # -- inbound -------------------------------------------------------------------------

    async def _serve_once(self, *, task_status: trio.TaskStatus[None]) -> None:
        """One supervised attempt of the adapter's receive loop."""
        events = self._intake_send.clone()
        try:
            with events:
                await self.adapter.serve(events, task_status=task_status)
        except Exception as exc:
            self._last_reason = safe_reason(exc)
            raise _ReceiveLoopLost(self._last_reason) from None
        self._last_reason = "receive loop returned"
        raise _ReceiveLoopLost(self._last_reason)

    async def _forward_inbound(self) -> None:
        async for event in self._intake_receive:
            if (event.channel, event.instance) != self.key:
                logger.warning(
                    "channel %s emitted an event labelled %s/%s; relabelled",
                    self.label,
                    event.channel,
                    event.instance,
                )
                event = attrs.evolve(event, channel=self.channel, instance=self.instance)
            await self._router.send(event)

    def _on_supervisor_event(self, event: Event) -> None:
        if isinstance(event, ChildStarted):
            self._status = ChannelStatus.UP
            self._first_outcome.set()
            self._publish(ChannelUp(self.channel, self.instance, event.attempt))
        elif isinstance(event, ChildFailed):
            failures = event.consecutive_failures
            parked = self._policy.should_park(failures)
            self._status = ChannelStatus.PARKED if parked else ChannelStatus.DOWN
            self._first_outcome.set()
            retry_in = None if parked else self._policy.delay(failures)
            self._publish(
                ChannelDown(self.channel, self.instance, self._last_reason, failures, retry_in)
            )
        elif isinstance(event, ChildParked):
            logger.error("channel %s parked: %s", self.label, self._last_reason)
            self._publish(
                ChannelParked(
                    self.channel, self.instance, event.consecutive_failures, self._last_reason
                )
            )
        elif isinstance(event, ChildResumed):
            self._status = ChannelStatus.STARTING
            self._publish(ChannelResumed(self.channel, self.instance))

    def _publish(self, event: Event) -> None:
        try:
            self._events.publish(event)
        except Exception:  # a sink must not raise; if one does, it must not stop us
            logger.exception("event sink failed on %s", event.type)

    # -- outbound ------------------------------------------------------------------------

    async def _serve_mailbox(self) -> None:
        current: Deliver | None = None
        try:
            async for message in self._mailbox:
                current = message
                outcome = await self._execute(message.delivery)
                current = None
                self._answer(message, outcome)
        finally:
            # Runs without a checkpoint: nothing new can slip in between drain and close.
            stopped = f"channel {self.label} stopped"
            if current is not None:
                self._answer(current, DeliveryFailed(stopped, retryable=True))
            self._mailbox.close(lambda queued: self._answer(
                queued, DeliveryFailed(stopped, retryable=True)))

    async def _execute(self, delivery: OutboundDelivery) -> DeliveryReceipt | DeliveryFailed:
        if (delivery.channel, delivery.instance) != self.key:
            return DeliveryFailed(
                f"delivery for {delivery.channel}/{delivery.instance} reached {self.label}",
                retryable=False,
            )
        try:
            with trio.fail_after(self._deliver_timeout):
                receipt = await self.adapter.deliver(without_file(delivery, self.adapter))
        except DeliveryFailed as exc:
            return exc
        except trio.TooSlowError:
            return DeliveryFailed(
                f"channel {self.label} did not deliver within {self._deliver_timeout:g} s",
                retryable=True,
            )
        except Exception as exc:
            reason = safe_reason(exc)
            logger.warning("channel %s failed a delivery: %s", self.label, reason)
            logger.debug("delivery failure detail", exc_info=exc)
            return DeliveryFailed(reason, retryable=True)
        if receipt.outbound_id != delivery.outbound_id:
            return DeliveryFailed(
                f"channel {self.label} answered with a receipt for another delivery",
                retryable=False,
            )
        return receipt

    def _answer(self, message: Deliver, outcome: DeliveryReceipt | DeliveryFailed) -> None:
        if isinstance(outcome, DeliveryFailed):
            if outcome.outbound_id is None:
                outcome.outbound_id = message.delivery.outbound_id
            message.reply.fail(outcome)
        else:
            message.reply.ok(outcome)
