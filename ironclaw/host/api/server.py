"""Serving the API: hypercorn on Trio, inside the caller's nursery.

``await nursery.start(serve_api, handles, settings, token_key=...)`` returns the bound
addresses once the socket listens; cancelling the nursery stops it, and
``shutdown`` (a ``trio.Event``), when given and set, stops it gracefully (in-flight
requests get ``graceful_timeout`` seconds).

The listening socket carries ``TCP_USER_TIMEOUT`` (``stall_timeout``): hypercorn's
writes are shielded from cancellation, so without it a client that stops reading
would pin a task (and delay shutdown) for as long as it keeps its window shut; with
it, the kernel aborts such a connection.
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING

import trio
from hypercorn.config import Config, Sockets
from hypercorn.trio import serve

from ironclaw.runtime.ratelimit import KeyedRateLimiter

from .app import create_app
from .context import ApiContext
from .metrics import ApiMetrics
from .principals import Principals
from .settings import ApiSettings, exposure_warning

if TYPE_CHECKING:
    from ironclaw.host.app import ControlPlaneHandles

log = logging.getLogger("ironclaw.api")



class _Config(Config):
    """Hypercorn's config, with a send timeout on every accepted connection."""

    stall_timeout_ms: int = 30_000

    def create_sockets(self) -> Sockets:
        sockets = super().create_sockets()
        option = getattr(socket, "TCP_USER_TIMEOUT", None)
        if option is not None:
            for sock in sockets.insecure_sockets:
                sock.setsockopt(socket.IPPROTO_TCP, option, self.stall_timeout_ms)
        return sockets


def hypercorn_config(settings: ApiSettings) -> Config:
    config = _Config()
    config.bind = [settings.bind]
    config.accesslog = None
    config.errorlog = logging.getLogger("ironclaw.api.hypercorn")
    config.graceful_timeout = settings.graceful_timeout
    config.include_server_header = False
    config.websocket_max_message_size = settings.ws_max_message_bytes
    config.websocket_ping_interval = 20.0
    config.h11_max_incomplete_size = 16 * 1024
    config.stall_timeout_ms = round(settings.stall_timeout * 1000)
    return config


def build_context(handles: ControlPlaneHandles, settings: ApiSettings, token_key: bytes
                  ) -> ApiContext:
    return ApiContext(
        handles=handles, settings=settings,
        principals=Principals(handles.store, token_key, audit=handles.audit),
        limiter=KeyedRateLimiter(settings.rate_per_second, settings.rate_burst),
        metrics=ApiMetrics(handles.loop_lag))


async def serve_api(handles: ControlPlaneHandles, settings: ApiSettings, *,
                    token_key: bytes, shutdown: trio.Event | None = None,
                    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
                    ) -> None:
    """Serve the API until cancelled (or ``shutdown`` is set). ``token_key`` is
    ``KeyStore.subkey(Purpose.API_TOKEN_HASH)``. Started value: the bound URLs."""
    settings.check_bind()
    if not settings.loopback:
        log.warning(exposure_warning(settings))
    ctx = build_context(handles, settings, token_key)
    if await ctx.principals.active_count() == 0:
        log.warning("the API has no principal yet: nobody can use it until one is "
                    "bootstrapped (bootstrap_owner)")
    app = create_app(ctx)
    config = hypercorn_config(settings)
    async with trio.open_nursery() as nursery:
        await nursery.start(ctx.metrics.run, handles.events)

        async def stop() -> None:
            if shutdown is None:
                await trio.sleep_forever()
            await shutdown.wait()

        async def run_server(*, task_status: trio.TaskStatus[list[str]]) -> None:
            await serve(app, config, shutdown_trigger=stop, task_status=task_status)
            nursery.cancel_scope.cancel()  # stopped gracefully: so does the rest

        binds: list[str] = await nursery.start(run_server)
        log.info("API listening on %s (web console at %s/ui/)", ", ".join(binds), binds[0])
        task_status.started(binds)
