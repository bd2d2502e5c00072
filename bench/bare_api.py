"""The API's yardstick: a bare quart-trio hello-world on hypercorn.

The same framework, server and event loop as the control plane's API, with nothing
of ours in the request path: no authentication, no rate limit, no host.db. The api
suite loads it with the same load generator in the same run, so the plane's
saturation reads as a fraction of what the stack itself can serve here.
"""

from __future__ import annotations

import logging

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart_trio import QuartTrio

__all__ = ["serve_bare"]


def bare_app() -> QuartTrio:
    app = QuartTrio("bench-bare")

    @app.get("/")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    return app


async def serve_bare(*, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
                     ) -> None:
    """Serve on a free loopback port until cancelled; started value: the base URL."""
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = logging.getLogger("bench.bare_api")
    config.include_server_header = False

    async def started(*, task_status: trio.TaskStatus[list[str]]) -> None:
        await serve(bare_app(), config, task_status=task_status)

    async with trio.open_nursery() as nursery:
        (bind,) = await nursery.start(started)
        task_status.started(bind)
