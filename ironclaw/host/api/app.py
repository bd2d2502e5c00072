"""The quart-trio application: hooks that hold for every route, then the routes.

Every HTTP request passes, in order:

1. body size: a declared ``Content-Length`` over the limit is refused with 413 (a
   chunked body is cut off at the limit when read, also 413);
2. authentication: ``Authorization: Bearer <token>`` on everything except the probes
   and the console's static files under ``/ui/`` (401 otherwise, with
   ``WWW-Authenticate``); unknown paths need a token too, so nobody can map the API
   without one;
3. the rate limit: a token bucket per principal, or per client address for requests
   that failed to authenticate (429 with ``Retry-After``);
4. the route's access level: viewers may read, never write (403).

Websockets authenticate in their own handlers (see :mod:`.wsauth`): a browser cannot
set an ``Authorization`` header on one.
"""

from __future__ import annotations

from quart import Response, g, request
from quart_trio import QuartTrio

from ironclaw import __version__

from . import console, openapi
from .context import Access, ApiContext, access, access_of, bearer_token, may_write
from .errors import ApiError, error_response, install_error_handlers, rate_limited, unauthorized
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .readiness import Readiness
from .routes import (
    audit,
    changes,
    chat_approvals,
    local,
    mcp,
    principals,
    quarantine,
    registry,
    sessions,
    tasks,
)
from .ws import chat, events


def create_app(ctx: ApiContext) -> QuartTrio:
    app = QuartTrio("ironclaw.api")
    app.config.update(MAX_CONTENT_LENGTH=ctx.settings.max_body_bytes,
                      PROVIDE_AUTOMATIC_OPTIONS=False)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    install_error_handlers(app)

    @app.before_request
    async def _guard() -> Response | None:
        length = request.content_length
        if length is not None and length > ctx.settings.max_body_bytes:
            raise ApiError(413, f"the body is limited to {ctx.settings.max_body_bytes} bytes")
        level = access_of(app.view_functions.get(request.endpoint or ""))
        if level is Access.PUBLIC:
            return None
        who = await ctx.principals.authenticate(
            bearer_token(request.headers.get("Authorization")) or "")
        if who is None:
            wait = ctx.limiter.take("addr:" + (request.remote_addr or "?"))
            raise rate_limited(wait) if wait else unauthorized()
        wait = ctx.limiter.take("principal:" + who.name)
        if wait:
            raise rate_limited(wait)
        g.principal = who
        if level is Access.WRITE and not may_write(who):
            raise ApiError(403, f"{who.name} may only read")
        rule = request.url_rule.rule if request.url_rule is not None else None
        unknown = set(request.args) - openapi.query_parameters().get(rule or "", frozenset())
        if rule is not None and unknown:
            raise ApiError(400, f"unknown query parameter {sorted(unknown)[0]!r:.40}")
        return None

    @app.after_request
    async def _count(response: Response) -> Response:
        ctx.metrics.request(request.method, response.status_code)
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    @app.get("/healthz")
    @access(Access.PUBLIC)
    async def healthz() -> dict[str, object]:
        return {"status": "ok", "version": __version__}

    ready_probe = Readiness(ctx.handles)

    @app.get("/readyz")
    @access(Access.PUBLIC)
    async def readyz() -> tuple[dict[str, object], int]:
        checks = await ready_probe.check()
        ready = all(ok for ok, _ in checks.values())
        shown = {name: {"ok": ok} if detail is None else {"ok": ok, "detail": detail}
                 for name, (ok, detail) in checks.items()}
        return {"status": "ready" if ready else "not ready", "checks": shown}, \
            200 if ready else 503

    @app.get("/metrics")
    @access(Access.READ)
    async def metrics() -> Response:
        body = await ctx.metrics.render(ctx.handles)
        return Response(body, status=200, content_type=METRICS_CONTENT_TYPE)

    @app.get("/v1/openapi.json")
    @access(Access.READ)
    async def openapi_document() -> Response:
        return Response(openapi.document_text(), status=200, content_type="application/json")

    @app.get("/v1/whoami")
    @access(Access.READ)
    async def whoami() -> dict[str, object]:
        who = g.principal
        return {"name": who.name, "roles": sorted(who.roles)}

    @app.get("/v1/status")
    @access(Access.READ)
    async def status() -> dict[str, object]:
        handles = ctx.handles
        return {"runtime": handles.runtime, "runtime_strength": handles.runtime_strength,
                "runtime_warning": handles.runtime_warning,
                "channels": [{"channel": channel, "instance": instance, "status": state.value}
                             for (channel, instance), state in sorted(
                                 handles.channels.status().items())]}

    changes.register(app, ctx)
    audit.register(app, ctx)
    local.register(app, ctx)
    registry.register(app, ctx)
    mcp.register(app, ctx)
    chat_approvals.register(app, ctx)
    quarantine.register(app, ctx)
    principals.register(app, ctx)
    tasks.register(app, ctx)
    sessions.register(app, ctx)
    events.register(app, ctx)
    chat.register(app, ctx)
    console.register(app, ctx)
    return app


__all__ = ["create_app", "error_response"]
