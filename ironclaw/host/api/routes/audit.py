"""``/v1/audit``: the tamper-evident log's tail, its verification, and an NDJSON export.

Entries hold ids and counts only, so any principal may read them.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator

from quart import Response
from quart_trio import QuartTrio

from ironclaw.host.audit import MAX_TAIL

from .. import render
from ..context import Access, ApiContext, access
from ..validate import query_int

MAX_SEQ = 2**63 - 1
NDJSON = "application/x-ndjson"


def register(app: QuartTrio, ctx: ApiContext) -> None:
    audit = ctx.handles.audit

    @app.get("/v1/audit")
    @access(Access.READ)
    async def audit_tail() -> dict[str, object]:
        limit = query_int("limit", 100, 1, MAX_TAIL)
        return {"entries": [render.audit_entry(e) for e in await audit.tail(limit)]}

    @app.get("/v1/audit/verify")
    @access(Access.READ)
    async def audit_verify() -> dict[str, object]:
        report = await audit.verify()
        return {"ok": report.ok, "entries": report.entries,
                "problems": list(report.problems), "last_seq": report.last_seq}

    @app.get("/v1/audit/export")
    @access(Access.READ)
    async def audit_export() -> Response:
        after = query_int("after_seq", 0, 0, MAX_SEQ)
        chunks = audit.export(after)
        # Fetch the first chunk now, so an error is a proper response, not a cut stream.
        first = b""
        with contextlib.suppress(StopAsyncIteration):
            first = await chunks.__anext__()

        async def body() -> AsyncGenerator[bytes, None]:
            async with contextlib.aclosing(chunks):
                if first:
                    yield first
                async for chunk in chunks:
                    yield chunk

        response = Response(body(), status=200, content_type=NDJSON)
        response.timeout = None  # a long log may take longer than the default
        return response
