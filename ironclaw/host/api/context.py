"""What every route needs, and the access levels routes declare.

Routes are closures over one :class:`ApiContext`; each declares its access level
with :func:`access` (read by the auth hook in :mod:`.app`). The principal of the
request is always the one its token names (:func:`principal`), never anything the
body says.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import attrs
from quart import g

from ironclaw.host.gateway import Principal
from ironclaw.host.gateway.rbac import ADMIN, DECIDER_ROLES, OWNER
from ironclaw.runtime.ratelimit import KeyedRateLimiter

from .errors import ApiError
from .metrics import ApiMetrics
from .principals import Principals
from .settings import ApiSettings

if TYPE_CHECKING:
    from ironclaw.host.app import ControlPlaneHandles

F = TypeVar("F", bound=Callable[..., object])
ACCESS_ATTR = "_ironclaw_access"


class Access(enum.Enum):
    PUBLIC = "public"  # no token: /healthz, /readyz and the console's static files
    READ = "read"  # any principal, viewers included
    WRITE = "write"  # owner, admin or approver (the gateway checks each kind itself)


def access(level: Access) -> Callable[[F], F]:
    def mark(fn: F) -> F:
        setattr(fn, ACCESS_ATTR, level)
        return fn
    return mark


def access_of(view: object) -> Access:
    """A route that declares nothing needs a token (the safe default)."""
    level = getattr(view, ACCESS_ATTR, Access.READ)
    return level if isinstance(level, Access) else Access.READ


@attrs.frozen
class ApiContext:
    handles: ControlPlaneHandles
    settings: ApiSettings
    principals: Principals
    limiter: KeyedRateLimiter
    metrics: ApiMetrics
    # Messages posted through the chat websocket, per principal (one HTTP upgrade
    # passes ``limiter`` once, then carries any number of messages).
    chat_limiter: KeyedRateLimiter = attrs.field(default=attrs.Factory(
        lambda self: KeyedRateLimiter(self.settings.ws_chat_rate_per_second,
                                      self.settings.ws_chat_burst), takes_self=True))


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def principal() -> Principal:
    found = g.get("principal")
    if not isinstance(found, Principal):
        raise ApiError(401, "not authenticated")
    return found


def may_write(who: Principal) -> bool:
    return bool(who.roles & DECIDER_ROLES)


def is_operator(who: Principal) -> bool:
    """Owners and admins: may speak as any local-channel sender."""
    return bool(who.roles & {OWNER, ADMIN})
