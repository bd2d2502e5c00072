"""What the channel layer needs of host.db: run a function on its connection, alone or
in one transaction. :class:`ironclaw.host.store.HostStore` provides it; channels take it
through this protocol and never import the store."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

__all__ = ["Database"]

T = TypeVar("T")


class Database(Protocol):
    async def call(self, fn: Callable[..., T], *args: object) -> T: ...

    async def transaction(self, fn: Callable[..., T], *args: object) -> T: ...
