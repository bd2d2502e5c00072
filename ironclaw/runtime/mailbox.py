"""An actor's mailbox, and the reply a message carries back to whoever sent it.

* :class:`Reply` is one answer to one message: the actor calls :meth:`Reply.ok` or
  :meth:`Reply.fail` exactly once (a second answer is a bug and raises), and the sender
  awaits :meth:`Reply.wait`, which returns the value or raises the failure.
* :class:`Mailbox` is the bounded memory channel an actor serves. When the actor
  stops it calls :meth:`Mailbox.close`, which hands every message still queued to an
  ``unanswered`` callback (the actor fails or settles its reply) before closing, so
  nobody waits forever on an actor that is gone, and a later :meth:`Mailbox.send`
  raises :class:`MailboxClosed` at once.

Messages themselves stay frozen ``attrs`` classes; a message that wants an answer holds
a ``Reply`` field (``attrs.field(factory=Reply, eq=False)``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Generic, TypeVar

import trio

__all__ = ["Mailbox", "MailboxClosed", "Reply", "drain"]

T = TypeVar("T")
M = TypeVar("M")


class MailboxClosed(RuntimeError):
    """The actor behind this mailbox has stopped."""


class Reply(Generic[T]):
    """A single-use answer slot."""

    def __init__(self) -> None:
        self._done = trio.Event()
        self._value: T | None = None
        self._error: BaseException | None = None

    @property
    def answered(self) -> bool:
        return self._done.is_set()

    def ok(self, value: T) -> None:
        self._answer()
        self._value = value
        self._done.set()

    def fail(self, error: BaseException) -> None:
        self._answer()
        self._error = error
        self._done.set()

    def _answer(self) -> None:
        if self._done.is_set():
            raise RuntimeError("this reply was already answered")

    async def wait(self) -> T:
        await self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]  # set by ok() before _done


def drain(receive: trio.MemoryReceiveChannel[M], unanswered: Callable[[M], None]) -> None:
    """Hand every message still queued in ``receive`` to ``unanswered``. No checkpoint:
    a caller that closes ``receive`` right after lets nothing slip in between."""
    while True:
        try:
            message = receive.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
            return
        unanswered(message)


class Mailbox(Generic[M]):
    """A bounded mailbox: senders :meth:`send`, the actor iterates it and, on its way
    out, :meth:`close`\\ s it (answering what is left through ``unanswered``)."""

    def __init__(self, size: int, *, what: str) -> None:
        self._send, self._receive = trio.open_memory_channel[M](size)
        self._what = what

    @property
    def sender(self) -> trio.MemorySendChannel[M]:
        """The raw send side, for a sender that must not wait (``send_nowait``)."""
        return self._send

    async def send(self, message: M) -> None:
        try:
            await self._send.send(message)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise MailboxClosed(f"{self._what} is not running") from None

    def __aiter__(self) -> AsyncIterator[M]:
        return self._receive.__aiter__()

    def close(self, unanswered: Callable[[M], None]) -> None:
        drain(self._receive, unanswered)
        self._receive.close()
